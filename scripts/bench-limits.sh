#!/usr/bin/env bash
# Resource limits beside the original (python/benches/limits.py): a process storm and a huge allocation through
# `codepilot run` with limits and through `codepilot-ai` 0.9.2 (`pip install` into a fresh venv, as
# scripts/bench-python.sh does), then the cost of the limits per step through the CLI. Needs root on a host with
# writable cgroups for the limited figures (`codepilot sandbox check`). Prints Markdown tables (docs/benchmarks.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

cargo build -q --locked --release -p codepilot-testkit -p codepilot-cli
cargo fetch --locked -q   # limits.py takes tiktoken's files for the original from the tiktoken-rs crate

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== codepilot-ai 0.9.2 from PyPI" >&2
python3 -m venv "$work/original"
"$work/original/bin/python" -m pip install -q "codepilot-ai==0.9.2" "anthropic==0.125.0"

python3 python/benches/limits.py \
    --testkit "$CARGO_TARGET_DIR/release/codepilot-testkit" \
    --cli "$CARGO_TARGET_DIR/release/codepilot" \
    --original "$work/original/bin/python" "$@"
