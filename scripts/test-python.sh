#!/usr/bin/env bash
# The Python package's tests: builds the wheel, installs it with `pip install ./python` into a fresh venv (with the
# test dependencies from PyPI), and runs pytest against the installed package and the scripted model server.
# Tests that need a service (Postgres: CODEPILOT_TEST_PG_URL; MCP: CODEPILOT_TEST_MCP_PYTHON) are skipped without it,
# each skip listed with its reason at the end and added to the skip log CODEPILOT_SKIP_LOG names (scripts/test.sh
# counts them); under CI (`CI` set and not empty, 0 or false, as in the Rust testkit) they fail instead.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Never let maturin fetch a Rust toolchain; build a dev-profile wheel (fast to build, fine to test).
export MATURIN_NO_INSTALL_RUST=1
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev --locked}"

echo "== python: the scripted model server (codepilot-testkit)"
cargo build -q --locked -p codepilot-testkit
profile_dir=debug
export CODEPILOT_TESTKIT="$CARGO_TARGET_DIR/$profile_dir/codepilot-testkit"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== python: a fresh venv, test dependencies, and pip install ./python (builds the wheel)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "./python[test]"
"$work/venv/bin/python" -c 'import codepilot, sys; print("installed codepilot", codepilot.__version__, "at", codepilot.__file__)'

echo "== python: pytest"
# Run from outside python/ so `import codepilot` is the installed wheel, not the source folder.
cd "$work"
"$work/venv/bin/python" -m pytest "$repo/python/tests" -q -rs -p no:cacheprovider "$@"
