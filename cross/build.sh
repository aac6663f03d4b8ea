#!/usr/bin/env bash
# cross/build.sh TARGET [--demo] [--profile NAME]
#
# Builds a size-tuned polegate binary for TARGET on a plain Debian host (no docker) and
# prints its path as the last line of output. Installs what is missing when it can:
#   - the Rust standard library for TARGET   (rustup target add)
#   - a C cross compiler for `ring`           (Debian gcc-<triple> + libc6-dev-<arch>-cross)
# and fails with exit 2 and a message naming what is missing otherwise.
#
# Targets:
#   aarch64-unknown-linux-musl       static, runs on any aarch64 Linux      (preferred)
#   armv7-unknown-linux-musleabihf   static, runs on any armv7 hard-float Linux
#   aarch64-unknown-linux-gnu        needs glibc >= 2.34 (as armv7, x86_64; not built here)
#   armv7-unknown-linux-gnueabihf    needs glibc >= 2.34 (measured; Debian 11 has 2.31)
#   x86_64-unknown-linux-gnu         native
#   <gnu target>.2.28                 glibc floor 2.28 through `cargo zigbuild` (PyPI ziglang,
#                                     crates.io cargo-zigbuild; no Debian cross gcc needed),
#                                     e.g. armv7-unknown-linux-gnueabihf.2.28
# Static musl is preferred: binaries linked against Debian 12's cross glibc need glibc of
# Debian 12, newer than many gateway images.
#
# Options:
#   --demo           add the embedded broker and simulators (`polegate demo`, for trying
#                    the binary under qemu); a cabinet build leaves them out, as
#                    `cargo build --profile cabinet --no-default-features` does. The tests'
#                    fault-injection points (feature `failpoints`) are always left out.
#   --no-demo        the default (accepted for older scripts)
#   --profile NAME   cargo profile (default: cabinet = opt-level z, fat LTO, strip)
# Environment: CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "cross/build.sh: $*" >&2; exit 2; }

target="${1:-}"
[ -n "$target" ] || die "usage: cross/build.sh TARGET [--demo] [--profile NAME]"
shift
profile=cabinet
# Never the tests' fault-injection points (the `failpoints` default feature).
features=(--no-default-features)
demo="no demo"
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) features=(--no-default-features --features demo); demo="with demo" ;;
    --no-demo) features=(--no-default-features); demo="no demo" ;;
    --profile) profile="${2:?--profile needs a name}"; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done

# A ".X.Y" suffix on a gnu target asks for that glibc floor through cargo zigbuild.
glibc=""
rust_target="$target"
if [[ "$target" =~ ^(.*-gnu[a-z]*)\.([0-9]+\.[0-9]+)$ ]]; then
  rust_target="${BASH_REMATCH[1]}"
  glibc="${BASH_REMATCH[2]}"
fi

# target -> gcc triple, Debian packages for the compiler and the libc headers
case "$rust_target" in
  aarch64-unknown-linux-musl|aarch64-unknown-linux-gnu)
    gcc=aarch64-linux-gnu-gcc; pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
  armv7-unknown-linux-musleabihf|armv7-unknown-linux-gnueabihf)
    gcc=arm-linux-gnueabihf-gcc; pkgs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
  x86_64-unknown-linux-gnu)
    gcc=""; pkgs=() ;;
  *) die "unsupported target $target (see the list at the top of this script)" ;;
esac

# 1. The Rust standard library for the target.
if ! rustup target list --installed | grep -qx "$rust_target"; then
  echo "cross/build.sh: installing the Rust standard library for $rust_target (rustup)" >&2
  if ! rustup target add "$rust_target" >&2; then
    die "the Rust standard library for $rust_target is missing and 'rustup target add $rust_target' \
failed (see above: static.rust-lang.org must serve rust-std for $(rustc --version | cut -d' ' -f2)). \
Install it from another mirror (RUSTUP_DIST_SERVER) or build another target."
  fi
fi

# 2. zig as C compiler and linker (glibc floor), or a Debian C cross compiler (ring
#    compiles C and assembly) that also links the binary.
if [ -n "$glibc" ]; then
  gcc=""
  if ! command -v zig >/dev/null 2>&1 && ! python3 -m ziglang version >/dev/null 2>&1; then
    echo "cross/build.sh: installing zig (pip install ziglang)" >&2
    python3 -m pip install -q ziglang >&2 \
      || die "zig is missing and 'pip install ziglang' failed"
  fi
  if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    echo "cross/build.sh: installing cargo-zigbuild (cargo install)" >&2
    cargo install --locked cargo-zigbuild >&2 \
      || die "cargo-zigbuild is missing and 'cargo install cargo-zigbuild' failed"
  fi
fi
if [ -n "$gcc" ] && ! command -v "$gcc" >/dev/null 2>&1; then
  echo "cross/build.sh: installing ${pkgs[*]} (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    die "$gcc is missing; install: apt-get install ${pkgs[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2 || true
  $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 \
    || die "$gcc is missing and 'apt-get install ${pkgs[*]}' failed"
fi

if [ -n "$gcc" ]; then
  tvar="$(echo "$rust_target" | tr 'a-z-' 'A-Z_')"
  export "CC_${rust_target//-/_}=$gcc"
  export "CARGO_TARGET_${tvar}_LINKER=$gcc"
fi

build=(build)
[ -z "$glibc" ] || build=(zigbuild)
start=$(date +%s)
cargo "${build[@]}" --locked --profile "$profile" --target "$target" "${features[@]}" >&2
elapsed=$(( $(date +%s) - start ))

out_dir="${CARGO_TARGET_DIR:-target}/$rust_target/$profile"
bin="$out_dir/polegate"
[ -x "$bin" ] || die "cargo reported success but $bin is missing"
size=$(stat -c %s "$bin")
echo "cross/build.sh: $target ($profile, $demo): $size bytes in ${elapsed}s" >&2
if command -v file >/dev/null 2>&1; then file "$bin" >&2; fi
echo "$bin"
