#!/usr/bin/env bash
# Runs each fuzz target for a bounded time: `bash scripts/fuzz.sh [SECONDS]` (default 60 each).
# libFuzzer through libfuzzer-sys, built with stable Rust's sanitizer-coverage flags (what `cargo fuzz --sanitizer
# none` passes), so neither nightly nor cargo-fuzz is needed. A crash leaves its input in fuzz/artifacts/ and fails.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
target="${CARGO_TARGET_DIR:-$HOME/.cache/codepilot-target}/fuzz"
# An explicit --target keeps RUSTFLAGS (the coverage instrumentation) away from build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --locked --bins --target "$host" --target-dir "$target"
mkdir -p artifacts corpus/parse corpus/interpreter oversize
# Answers larger than any context budget (a runaway generation of 20,000 lines around a block, one refused for two
# blocks, one 300 KB line): run through the parse target whole, every time, before fuzzing. They stay out of the
# corpus, where their size would set libFuzzer's max_len and slow every mutation a hundredfold. The first byte is
# the target's chunk size.
python3 - <<'PY'
lines = lambda tag, n: "".join(f"{tag} line {i} of a runaway generation\n" for i in range(n))
seeds = {
    "runaway": lines("before", 10000) + "```codepilot\nprint(1)\n```\n" + lines("after", 10000),
    "refused": lines("refused", 20000) + "```codepilot\nprint(1)\n```\n```codepilot\nprint(2)\n```\n",
    "one-line": "w" * 300000 + "\n```codepilot\nprint(3)\n```\n```completion\n" + "z" * 100000 + "\n```\n",
}
for name, text in seeds.items():
    with open(f"oversize/{name}", "wb") as f:
        f.write(b"\x07" + text.encode())
PY
echo "== the parse target on answers over the budget"
"$target/$host/release/parse" -artifact_prefix=artifacts/ oversize/runaway oversize/refused oversize/one-line 2>&1 | grep -E "Executed|ERROR|panicked"
for t in parse interpreter; do
    dict=()
    [ "$t" = parse ] && dict=(-dict=parse.dict)
    echo "== fuzzing $t for ${seconds}s"
    "$target/$host/release/$t" "corpus/$t" "${dict[@]}" -artifact_prefix=artifacts/ \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 2>&1 | tail -n 15
done
