#!/usr/bin/env bash
# Code search (SPEC §22) on Django's sdist (PyPI) and on this repository: the index in process (cold build, warm start,
# one-edit update, query latency per mode, size), the same through the `codepilot` binary as a person uses it, aider's
# repo map (aider-chat from PyPI, in a venv of its own) and ripgrep on the same trees. The original's semantic_search
# (codepilot-ai 0.9.41) is not measured: it downloads a Go binary from GitHub when it starts and needs an embeddings
# API key. Prints Markdown tables (docs/benchmarks.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
cache="${CODEPILOT_BENCH_CACHE:-$HOME/.cache/codepilot-bench}"
mkdir -p "$cache"

if [ ! -d "$cache/Django-5.2" ]; then
    echo "== Django 5.2's sdist from PyPI" >&2
    python3 -m pip download -q --no-deps --no-binary :all: "django==5.2" -d "$cache"
    tar xzf "$cache/Django-5.2.tar.gz" -C "$cache"
fi
if [ ! -x "$cache/aider/bin/aider" ]; then
    echo "== aider-chat from PyPI" >&2
    python3 -m venv "$cache/aider"
    "$cache/aider/bin/python" -m pip install -q aider-chat
fi
command -v rg >/dev/null || { echo "ripgrep is needed: apt-get install ripgrep" >&2; exit 2; }

cargo build -q --locked --release -p codepilot-cli
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$cache/Django-5.2" "$work/django"
mkdir "$work/codepilot"
git archive HEAD | tar x -C "$work/codepilot"

echo "### In process (cargo bench -p codepilot-search --bench search)"
cargo bench -q --locked -p codepilot-search --bench search -- "$work/django" "$work/codepilot" 2>/dev/null | grep '^|'

python3 - "$CARGO_TARGET_DIR/release/codepilot" "$cache/aider/bin/aider" "$work" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time

cli, aider, work = sys.argv[1:4]
home = tempfile.mkdtemp()
env = dict(os.environ, CODEPILOT_HOME=home, NO_COLOR="1")

def timed(cmd, cwd=None, extra_env=None, runs=1, before=None, expect=None):
    """Wall seconds (median of runs) and the largest max RSS in MiB, via /usr/bin/time. `before` runs before each
    run (untimed); `expect` must be in the run's stdout, or the run does not count."""
    walls, rss = [], 0
    while len(walls) < runs:
        if before:
            before()
        t = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, env=dict(env, **(extra_env or {})),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - t
        if expect and expect not in out.stdout:
            print(f"(a run of {cmd[0]} gave no answer; again)", file=sys.stderr)
            continue
        walls.append(took)
        rss = max(rss, int(out.stderr.strip().splitlines()[-1]) // 1024)
    return statistics.median(walls), rss

print()
print("### Through the binary, beside aider and ripgrep")
print()
print("| tree | `codepilot index rebuild` s (MiB) | `codepilot search` ms (MiB) | `search --mode references` ms | `codepilot index map` ms | aider `--show-repo-map` cold s (MiB) | aider warm s | `rg -w` name ms | `rg` query words ms |")
print("|---|---|---|---|---|---|---|---|---|")
for name, query, ident in [("django", "validate user password", "get_queryset"), ("codepilot", "parse the agent file", "load_agent")]:
    tree = os.path.join(work, name)
    cold, cold_rss = timed([cli, "index", "rebuild", "--dir", tree])
    search, search_rss = timed([cli, "search", query, "--dir", tree], runs=9)
    refs, _ = timed([cli, "search", ident, "-m", "references", "--dir", tree], runs=9)
    cmap, _ = timed([cli, "index", "map", "--dir", tree], runs=9)
    # aider maps only files git tracks.
    mapped = os.path.join(work, name + "-aider")
    shutil.copytree(tree, mapped)
    subprocess.run(["git", "init", "-q"], cwd=mapped, check=True)
    subprocess.run(["git", "add", "-A"], cwd=mapped, check=True)
    subprocess.run(["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "tree"], cwd=mapped, check=True)
    args = [aider, "--model", "gpt-4o", "--show-repo-map", "--no-check-update", "--no-analytics", "--yes-always",
            "--no-gitignore", "--map-tokens", "1024"]
    key = {"OPENAI_API_KEY": "sk-unused"}
    drop_cache = lambda: shutil.rmtree(os.path.join(mapped, ".aider.tags.cache.v4"), ignore_errors=True)
    a_cold, a_rss = timed(args, cwd=mapped, extra_env=key, runs=3, before=drop_cache, expect="│")
    a_warm, _ = timed(args, cwd=mapped, extra_env=key, runs=3, expect="│")
    rg_name, _ = timed(["rg", "-n", "-w", ident, tree], runs=9)
    words = [w for w in query.split() if len(w) > 3]
    rg_q, _ = timed(["rg", "-n", "-i"] + sum((["-e", w] for w in words), []) + [tree], runs=9)
    print(f"| {name} | {cold:.2f} ({cold_rss}) | {search*1000:.0f} ({search_rss}) | {refs*1000:.0f} | {cmap*1000:.0f} | {a_cold:.1f} ({a_rss}) | {a_warm:.1f} | {rg_name*1000:.0f} | {rg_q*1000:.0f} |")
shutil.rmtree(home, ignore_errors=True)
PY
