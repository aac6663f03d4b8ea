//! Build script (`build` in Cargo.toml): lays the daemon's code out so that what a running
//! cabinet executes is contiguous.
//!
//! A process's resident memory counts every page of the binary it maps, and the kernel maps
//! a binary's code 64 KiB at a time around each page it runs ("fault-around"). Left to the
//! compiler's order, the ~2 MB of functions a gateway really runs (start-up, the Modbus,
//! OCPP and MQTT paths, the queue) are spread over all 5.8 MB of `.text`, and nearly every
//! 64 KiB window of it becomes resident. `cross/order/<target>.txt` lists those functions,
//! hottest first, as measured by `cross/order.sh` (valgrind on the cabinet build: idle,
//! polling 200 Modbus TCP devices, serving 50 OCPP chargers); the linker puts them first.
//! Idle and steady-state RSS fall by about 3 MB (BENCHMARKS.md, "Code layout"). Names the
//! list has and the binary does not (another build's hashes, code that changed) are
//! skipped: a stale list costs locality, never correctness.
//!
//! Only for the size-tuned builds (opt-level "z" or "s": the `cabinet` profile) and where
//! the linker is known to be LLD: Rust's own for x86_64-unknown-linux-gnu, with no linker
//! chosen by hand (a linker set in a cargo config file is not visible here: set
//! `POLEGATE_LINK_ORDER=0` with one that is not LLD or mold).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=cross/link_order.rs");
    println!("cargo:rerun-if-env-changed=POLEGATE_LINK_ORDER");
    let target = env::var("TARGET").unwrap_or_default();
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let list = Path::new(&manifest)
        .join("cross")
        .join("order")
        .join(format!("{target}.txt"));
    println!("cargo:rerun-if-changed={}", list.display());
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    println!("cargo:rerun-if-env-changed={linker_var}");
    let off = env::var("POLEGATE_LINK_ORDER").is_ok_and(|v| v == "0")
        || !env::var("OPT_LEVEL").is_ok_and(|o| o == "z" || o == "s");
    let own_lld = target == "x86_64-unknown-linux-gnu"
        && env::var_os(&linker_var).is_none()
        && !env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
    if off || !own_lld || !list.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
