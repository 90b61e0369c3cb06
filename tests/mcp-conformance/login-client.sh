#!/usr/bin/env bash
# `codepilot mcp login` end to end, run by the conformance suite against one of its authorization servers: the
# server is listed as needing a login, `mcp login` prints the URL, a "browser" (Python following the redirects back
# to the loopback listener) approves, the tokens land in a 0600 file, and the server is ready with them.
# Usage (by scripts/mcp-conformance.sh): login-client.sh URL   (CODEPILOT_BIN: the binary)
set -euo pipefail
url="${*: -1}"
bin="${CODEPILOT_BIN:?CODEPILOT_BIN names the binary}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$dir"
printf 'name: login-test\nmodel: {provider: scripted, name: s}\nmcp_servers:\n  - name: remote\n    url: %s\n' "$url" >agent.yaml
export CODEPILOT_HOME="$dir/home"
if "$bin" mcp list -c agent.yaml >list.out 2>&1; then
    echo "login-client: the server was ready before any login" >&2
    exit 1
fi
grep -q 'needs login' list.out || { cat list.out >&2; echo "login-client: no \"needs login\"" >&2; exit 1; }
"$bin" mcp login remote -c agent.yaml >login.out 2>login.err &
pid=$!
for _ in $(seq 100); do [ -s login.out ] && break; sleep 0.1; done
python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' "$(head -n1 login.out)"
wait "$pid" || { cat login.err >&2; exit 1; }
tokens=(home/mcp-auth/remote-*.json)
[ "$(stat -c %a "${tokens[0]}")" = 600 ] || { echo "login-client: the token file is not 0600" >&2; exit 1; }
! grep -q "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_response"]["access_token"])' "${tokens[0]}")" login.out login.err list.out \
    || { echo "login-client: a token was printed" >&2; exit 1; }
"$bin" mcp list -c agent.yaml >&2
