#!/usr/bin/env bash
# The test command from the README: every crate's unit, integration, example and doc tests, then the Python
# package's (scripts/test-python.sh: a fresh venv, `pip install ./python`, pytest) and the JavaScript side's
# (scripts/test-node.sh: the VS Code extension and the web UI in headless Chromium), then the official MCP
# conformance suite's client scenarios against the binary (scripts/mcp-conformance.sh; Node 22 and the suite from
# npm). Arguments go to `cargo test` and skip the others.
# Postgres-backed store tests need CODEPILOT_TEST_PG_URL (`.ci/postgres.sh` prints one). The snapshot tests run
# moto's S3 server, installed here from PyPI (scripts/moto.sh) unless CODEPILOT_TEST_MOTO names one; the MCP tests
# run servers from PyPI and npm (scripts/mcp-fixtures.sh); the sandbox tests need user namespaces. A test whose
# service is missing is skipped with a notice on the terminal and counted at the end (the skip log,
# CODEPILOT_SKIP_LOG); under CI (CI set, not 0/false) it fails instead, so CI never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CODEPILOT_TEST_MCP_PYTHON:-}" ] || [ -z "${CODEPILOT_TEST_MCP_FS:-}" ]; then
    if ! mcp="$(bash scripts/mcp-fixtures.sh)"; then
        echo "scripts/test.sh: installing the MCP test servers failed (scripts/mcp-fixtures.sh, its error is above);" \
            "fix that, or set CODEPILOT_TEST_MCP_PYTHON and CODEPILOT_TEST_MCP_FS yourself" >&2
        exit 1
    fi
    CODEPILOT_TEST_MCP_PYTHON="$(tail -n 2 <<<"$mcp" | head -n 1)"
    CODEPILOT_TEST_MCP_FS="$(tail -n 1 <<<"$mcp")"
    export CODEPILOT_TEST_MCP_PYTHON CODEPILOT_TEST_MCP_FS
fi
if [ -z "${CODEPILOT_TEST_MOTO:-}" ]; then
    if ! moto="$(bash scripts/moto.sh)"; then
        echo "scripts/test.sh: installing moto's S3 server failed (scripts/moto.sh, its error is above);" \
            "fix that, or set CODEPILOT_TEST_MOTO to a moto_server yourself" >&2
        exit 1
    fi
    CODEPILOT_TEST_MOTO="$(tail -n 1 <<<"$moto")"
    export CODEPILOT_TEST_MOTO
fi
# Each skipped test adds a line here (codepilot_testkit::service); the list is printed at the end, pass or fail.
skip_log="$(realpath -m "${CODEPILOT_SKIP_LOG:-${CARGO_TARGET_DIR:-target}/codepilot-skipped.txt}")"
mkdir -p "$(dirname "$skip_log")"
: >"$skip_log"
export CODEPILOT_SKIP_LOG="$skip_log"
report_skips() {
    if [ -s "$skip_log" ]; then
        echo "== $(wc -l <"$skip_log") test(s) skipped because something they need is missing (each printed what to install):"
        sort "$skip_log" | sed 's/^/   /'
    else
        echo "== no test was skipped"
    fi
}
trap report_skips EXIT

cargo test --workspace --locked "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/test-python.sh
    bash scripts/test-node.sh
    # The official MCP conformance suite against the binary the cargo tests built.
    CODEPILOT_BIN="${CARGO_TARGET_DIR:-target}/debug/codepilot" bash scripts/mcp-conformance.sh
fi
