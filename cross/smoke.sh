#!/usr/bin/env bash
# cross/smoke.sh TARGET BINARY
#
# Runs a cross-built binary under qemu-user: `polegate check` on config/example.toml and,
# when the binary has the demo feature, a 3-second `polegate demo`. Installs Debian's
# qemu-user when missing. Exit 0 when both pass.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "cross/smoke.sh: $*" >&2; exit 2; }
target="${1:?usage: cross/smoke.sh TARGET BINARY}"
bin="${2:?usage: cross/smoke.sh TARGET BINARY}"

case "$target" in
  aarch64-*) qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu ;;
  armv7-*)   qemu=qemu-arm;     sysroot=/usr/arm-linux-gnueabihf ;;
  x86_64-*)  qemu=""; sysroot="" ;;
  *) die "unsupported target $target" ;;
esac

if [ -n "$qemu" ] && ! command -v "$qemu" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "$qemu is missing; install: apt-get install qemu-user"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >&2 \
    || die "$qemu is missing and 'apt-get install qemu-user' failed"
fi

run() {
  if [ -n "$qemu" ]; then "$qemu" -L "$sysroot" "$bin" "$@"; else "$bin" "$@"; fi
}

echo "== $target: polegate check --config config/example.toml" >&2
run check --config config/example.toml >&2

echo "== $target: polegate demo --duration 3" >&2
rc=0
out=$(run demo --duration 3 2>&1) || rc=$?
if printf '%s\n' "$out" | grep -q 'built without the `demo` feature'; then
  echo "== $target: built without the demo feature; demo skipped" >&2
else
  [ "$rc" = 0 ] || { echo "$out" >&2; die "demo exited with $rc"; }
  lines=$(printf '%s\n' "$out" | grep -c 'polegate/' || true)
  printf '%s\n' "$out" | tail -3 >&2
  [ "$lines" -gt 0 ] || die "demo printed no MQTT message"
  echo "== $target: demo printed $lines topic lines" >&2
fi
echo "cross/smoke.sh: $target OK" >&2
