#!/usr/bin/env bash
# The JavaScript side: the VS Code extension (types regenerated and checked against docs/protocol.schema.json,
# compiled, its client tested against a real `codepilot serve`, packaged as a .vsix) and the web UI in headless
# Chromium (Debian's chromium; nothing downloads a browser). npm packages come from the lockfiles (`npm ci`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

echo "== node: the codepilot binary and the scripted model server"
cargo build -q --locked -p codepilot-cli -p codepilot-testkit
export CODEPILOT_BIN="$CARGO_TARGET_DIR/debug/codepilot"
export CODEPILOT_TESTKIT="$CARGO_TARGET_DIR/debug/codepilot-testkit"

echo "== node: the VS Code extension"
(
    cd ide/vscode
    npm ci --no-audit --no-fund --loglevel=error
    npm run -s check-protocol
    npm run -s build
    npm test
    npx vsce package --no-dependencies -o "$CARGO_TARGET_DIR/codepilot-vscode.vsix"
)

echo "== node: the web UI in headless Chromium"
(
    cd server/tests/browser
    npm ci --no-audit --no-fund --loglevel=error
    ARTIFACTS_DIR="$CARGO_TARGET_DIR/artifacts" npm test
    echo "screenshot: $CARGO_TARGET_DIR/artifacts/web-ui.png"
)
