#!/usr/bin/env bash
# Installs moto's S3-compatible server (moto[server] from PyPI) into a venv under $HOME/.cache and prints the path
# of its `moto_server` on the last line. The snapshot tests start it (CODEPILOT_TEST_MOTO) on a loopback port it
# picks itself (`-p 0`, read from its startup line).
set -euo pipefail
venv="${CODEPILOT_MOTO_VENV:-$HOME/.cache/codepilot-moto-venv}"
version="5.2.5"
if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" >/dev/null 2>&1; then
    echo "installing moto[server]==$version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" >&2
fi
echo "$venv/bin/moto_server"
