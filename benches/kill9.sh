#!/usr/bin/env bash
# The full kill -9 loop (issue 11 item 3): the cabinet build of the daemon killed with
# SIGKILL at 100 random moments while the broker goes up and down; after every kill the
# queue must open undamaged and no seq may carry two events. Prints the figures that go
# to BENCHMARKS.md. Usage: benches/kill9.sh [cycles] (default 100); POLEGATE_KILL_SEED
# repeats a run.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-100}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --profile cabinet --no-default-features
POLEGATE_KILL_CYCLES="$cycles" POLEGATE_KILL_BIN="$target/cabinet/polegate" \
  cargo test --test integration kill_loop:: -- --nocapture 2>&1 | grep -E '^kill loop|^test |panicked|result'
