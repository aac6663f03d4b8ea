#!/usr/bin/env bash
# cross/order.sh [--check]
#
# Regenerates cross/order/x86_64-unknown-linux-gnu.txt, the functions the cabinet build
# runs, hottest first, that cross/link_order.rs hands to the linker (see there for why).
# Run it after a dependency upgrade, a toolchain upgrade or a large change of the
# daemon's paths; a stale list costs memory, never correctness.
#
# How: the cabinet build exactly as shipped (its own target dir, no list applied, plus the
# linker's map) runs under valgrind's callgrind as the daemon of the pipeline benchmark's
# parts I and B (idle, then 200 Modbus TCP devices every 1000 ms and 500 ms publishing to
# mosquitto) and of the OCPP benchmark (`--quick`: 50 chargers in transactions). Every
# function of the binary that executed is listed, by instructions executed, most first.
# The binary is stripped: callgrind gives the address of each instruction executed and the
# map tells which function it belongs to (this also counts functions reached by a jump,
# which callgrind folds into their caller). An unstripped build would not do: a profile
# setting such as `strip` changes the symbol names.
#
# --check: only report how many of the listed functions the current cabinet build has.
#
# Needs valgrind (installed with apt-get when run as root), python3, mosquitto (as the
# tests). Takes ~8 minutes on a 2-core machine, most of it the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "cross/order.sh: $*" >&2; exit 2; }

target=x86_64-unknown-linux-gnu
list="cross/order/$target.txt"
dir="${CARGO_TARGET_DIR:-target}/order"
map="$dir/polegate.map"
build() {
  POLEGATE_LINK_ORDER=0 CARGO_TARGET_DIR="$dir" cargo rustc --profile cabinet \
    --no-default-features --bin polegate -- -C "link-arg=-Wl,-Map=$PWD/$map" >&2
}
# The functions in the map: its input sections `.text.<mangled name>`.
functions() {
  grep -o '(\.text\.[^)]*)' "$map" | sed -E 's/^\(\.text\.((unlikely|hot|startup)\.)?//; s/\)$//' | sort -u
}

if [ "${1:-}" = --check ]; then
  build
  total=$(wc -l < "$list")
  found=$(sort -u "$list" | comm -12 - <(functions) | wc -l)
  echo "cross/order.sh: $found of $total listed functions are in the current cabinet build"
  exit 0
fi

if ! command -v valgrind >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "valgrind is missing; install: apt-get install valgrind"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >&2
fi
command -v python3 >/dev/null 2>&1 || die "python3 is missing"

build
out="$dir/callgrind"
rm -rf "$out"
mkdir -p "$out"
wrapper="$dir/valgrind-daemon"
cat > "$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --dump-instr=yes --dump-line=no --dump-every-bb=100000000 \
  --callgrind-out-file=$PWD/$out/callgrind.%p $PWD/$dir/cabinet/polegate "\$@"
EOF
chmod +x "$wrapper"
POLEGATE_BENCH_BIN="$PWD/$wrapper" cargo bench --bench pipeline -- --parts IB --secs 10 >&2
POLEGATE_BENCH_BIN="$PWD/$wrapper" cargo bench --bench ocpp -- --quick >&2

mkdir -p "$(dirname "$list")"
python3 cross/order_list.py "$out" "$map" "$list"
