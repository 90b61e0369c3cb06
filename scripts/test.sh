#!/usr/bin/env bash
# The test command from the README: every crate's unit, integration, example and doc tests, then the Python
# package's (scripts/test-python.sh: a fresh venv, `pip install ./python`, pytest) and the JavaScript side's
# (scripts/test-node.sh: the VS Code extension and the web UI in headless Chromium). Arguments go to `cargo test`
# and skip the others.
# Postgres-backed store tests need CODEPILOT_TEST_PG_URL (`.ci/postgres.sh` prints one); without it they are
# skipped with a notice (and fail under CI=true, so CI never skips them silently). The snapshot tests run moto's
# S3 server, installed here from PyPI (scripts/moto.sh) unless CODEPILOT_TEST_MOTO names one; the MCP tests run
# servers from PyPI and npm (scripts/mcp-fixtures.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CODEPILOT_TEST_MCP_PYTHON:-}" ] || [ -z "${CODEPILOT_TEST_MCP_FS:-}" ]; then
    mapfile -t mcp < <(bash scripts/mcp-fixtures.sh | tail -n 2)
    export CODEPILOT_TEST_MCP_PYTHON="${mcp[0]}" CODEPILOT_TEST_MCP_FS="${mcp[1]}"
fi
if [ -z "${CODEPILOT_TEST_MOTO:-}" ]; then
    CODEPILOT_TEST_MOTO="$(bash scripts/moto.sh | tail -n 1)"
    export CODEPILOT_TEST_MOTO
fi
cargo test --workspace --locked "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/test-python.sh
    bash scripts/test-node.sh
fi
