#!/usr/bin/env bash
# The Python API's costs beside the original's, measured by one script (python/benches/compare.py):
#   - this package: a release wheel, `pip install ./python` into a fresh venv;
#   - the original: `pip install codepilot-ai==0.9.2` into another venv, with anthropic 0.125.0 (the last release
#     its provider works with: anthropic 1.0 dropped the `temperature` argument it passes).
# Both talk to the same scripted model server, as does the CLI (`codepilot run`, the engine without Python). Prints
# a Markdown table (see docs/benchmarks.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 MATURIN_NO_INSTALL_RUST=1
export MATURIN_PEP517_ARGS="--locked"

cargo build -q --locked --release -p codepilot-testkit -p codepilot-cli
cargo fetch --locked -q   # compare.py takes tiktoken's files for the original from the tiktoken-rs crate

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== this package (release wheel)" >&2
python3 -m venv "$work/rust"
"$work/rust/bin/python" -m pip install -q ./python
echo "== codepilot-ai 0.9.2 from PyPI" >&2
python3 -m venv "$work/original"
"$work/original/bin/python" -m pip install -q "codepilot-ai==0.9.2" "anthropic==0.125.0"

python3 python/benches/compare.py \
    --testkit "$CARGO_TARGET_DIR/release/codepilot-testkit" \
    --cli "codepilot run (CLI)=$CARGO_TARGET_DIR/release/codepilot" \
    --impl "codepilot (this repo)=$work/rust/bin/python" \
    --impl "codepilot-ai 0.9.2=$work/original/bin/python" \
    "$@"
