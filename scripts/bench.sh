#!/usr/bin/env bash
# The runtime's budgets (SPEC §12), in one run: every row through the real binary (`cargo bench -p codepilot-cli
# --bench perf`: `codepilot run` against the scripted model server, fresh processes, slopes so process start
# cancels), then the same rows through the Python package (a release wheel, `pip install ./python` into a fresh venv;
# python/benches/perf.py). Prints Markdown tables (see docs/benchmarks.md). `RUNS=N` for more runs of each kind.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 MATURIN_NO_INSTALL_RUST=1
export MATURIN_PEP517_ARGS="--locked"
runs="${RUNS:-5}"

cargo build -q --locked --release -p codepilot-testkit -p codepilot-cli
echo "== codepilot run (release binary)" >&2
cargo bench -q --locked -p codepilot-cli --bench perf -- --runs "$runs"
echo

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== the Python package (release wheel)" >&2
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q ./python
python3 python/benches/perf.py --python "$work/venv/bin/python" \
    --testkit "$CARGO_TARGET_DIR/release/codepilot-testkit" --runs "$runs"
