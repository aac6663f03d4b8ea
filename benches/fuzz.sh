#!/usr/bin/env bash
# The long fuzz run (issue 12 item 10): every target of tests/fuzz.rs on the build that
# ships (cabinet profile: opt-level "z", fat LTO, panic unwind so proptest catches and
# shrinks a panic; no `demo` feature, none needed), one target at a time so each gets
# its own figure. Prints cases, seconds and the verdict per target, and the machine load,
# for BENCHMARKS.md ("Fuzzing (issue 12 item 10)").
# Usage: benches/fuzz.sh [cases per target] [seconds per target] [name filter]
#   defaults 100000 cases, 600 s. Each target first runs 256 cases to time itself, then
#   as many cases as fit in its seconds (at most the cases given); a target still
#   running at twice its budget is stopped and reported as "budget".
# A failure prints proptest's minimal input: turn it into a named regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
budget="${2:-600}"
filter="${3:-}"
target="${CARGO_TARGET_DIR:-target}"
cargo test --profile cabinet --no-default-features --test fuzz --no-run 2>&1 | tail -1
bin=$(ls -t "$target"/cabinet/deps/fuzz-* | grep -v '\.d$' | head -1)
echo "binary $bin; $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for t in $("$bin" --list "$filter" 2>/dev/null | sed -n 's/: test$//p'); do
  start=$(date +%s.%N)
  PROPTEST_CASES=256 "$bin" --exact "$t" --test-threads 1 >/dev/null 2>&1 || true
  per=$(echo "($(date +%s.%N) - $start) / 256" | bc -l)
  n=$(echo "scale=0; x = $budget / ($per + 0.000001); if (x > $cases) x = $cases; x / 1" | bc -l)
  [ "$n" -ge 256 ] || n=256
  start=$(date +%s.%N)
  set +e
  out=$(PROPTEST_CASES="$n" timeout $((budget * 2)) "$bin" --exact "$t" --test-threads 1 2>&1)
  rc=$?
  set -e
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  case $rc in
    0) verdict="ok" ;;
    124) verdict="budget" ;;
    *) verdict="FAILED"; status=1; echo "$out" | grep -A30 'minimal failing input\|panicked' | head -60 ;;
  esac
  printf '%-100s %8s cases %7.1f s  %s\n' "$t" "$n" "$secs" "$verdict"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
