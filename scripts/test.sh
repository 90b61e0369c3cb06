#!/usr/bin/env bash
# The test command from the README: every crate's unit, integration, example and doc tests, then the Python
# package's (scripts/test-python.sh: a fresh venv, `pip install ./python`, pytest). Arguments go to `cargo test`
# and skip the Python tests.
# Postgres-backed store tests need CODEPILOT_TEST_PG_URL (`.ci/postgres.sh` prints one); without it they are
# skipped with a notice (and fail under CI=true, so CI never skips them silently).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/test-python.sh
fi
