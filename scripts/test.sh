#!/usr/bin/env bash
# The test command from the README: every crate's unit, integration, example and doc tests.
# Postgres-backed store tests need CODEPILOT_TEST_PG_URL (`.ci/postgres.sh` prints one); without it they are
# skipped with a notice (and fail under CI=true, so CI never skips them silently).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
