#!/usr/bin/env bash
# Installs the MCP servers the tests run against, from the registries: the official Python SDK (`mcp` from PyPI,
# into a venv under $HOME/.cache) and @modelcontextprotocol/server-filesystem from npm (with the committed
# lockfile, under $HOME/.cache). Prints two lines: the venv's python, then the filesystem server's entry script.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CODEPILOT_MCP_VENV:-$HOME/.cache/codepilot-mcp-venv}"
version="2.3.0"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$version')" >/dev/null 2>&1; then
    echo "installing mcp==$version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$version" >&2
fi
npm_dir="${CODEPILOT_MCP_NPM:-$HOME/.cache/codepilot-mcp-npm}"
mkdir -p "$npm_dir"
if ! cmp -s cli/tests/fixtures/mcp/npm/package-lock.json "$npm_dir/package-lock.json" \
    || [ ! -d "$npm_dir/node_modules/@modelcontextprotocol/server-filesystem" ]; then
    echo "installing @modelcontextprotocol/server-filesystem into $npm_dir" >&2
    cp cli/tests/fixtures/mcp/npm/package.json cli/tests/fixtures/mcp/npm/package-lock.json "$npm_dir/"
    (cd "$npm_dir" && npm ci --no-audit --no-fund --ignore-scripts >&2)
fi
echo "$venv/bin/python"
echo "$npm_dir/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
