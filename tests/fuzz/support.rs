//! What every target shares: mutations of valid inputs (bit flips, boundary bytes in
//! length fields, truncation, insertion, splicing from another valid input), the
//! proptest configuration (`PROPTEST_CASES` respected, 256 by default), the shipped
//! profiles (`tests/common/profiles.rs`), and a paused-clock runtime for the targets that drive async code.

pub use crate::profiles::{plugins_dir, profile};
use proptest::prelude::*;
use proptest::sample::Index;

/// Proptest's defaults (256 cases, `PROPTEST_CASES` overrides them), without writing
/// regression files into the source tree from the long run: a failure prints its
/// minimal input, which goes into a named regression test.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit of a byte string. Indexes scale to the current length.
#[derive(Debug, Clone)]
pub enum Op {
    Flip(Index, u8),
    /// A value that length and count fields get wrong: 0, 1, 0x7f, 0x80, 0xfe, 0xff.
    Boundary(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, Index),
    /// Bytes of another valid input (a donor) inserted here.
    Splice(Index, Index, Index),
    /// A run of the input repeated (duplicated fields, frames back to back).
    Repeat(Index, Index),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Op::Flip(i, b)),
        2 => (any::<Index>(), 0u8..6).prop_map(|(i, b)| Op::Boundary(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Op::Set(i, b)),
        1 => any::<Index>().prop_map(Op::Truncate),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Op::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Op::Remove(i, n)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(i, d, r)| Op::Splice(i, d, r)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Op::Repeat(i, n)),
    ]
}

/// Up to eight edits; none at all keeps the valid input (the deep path is taken too).
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 0..8)
}

const BOUNDARY: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];

/// Applies `ops` to `seed`; `donors` are other valid inputs to splice from.
pub fn mutate(seed: &[u8], ops: &[Op], donors: &[&[u8]]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for op in ops {
        let n = v.len();
        match op {
            Op::Flip(i, b) if n > 0 => v[i.index(n)] ^= 1 << b,
            Op::Boundary(i, b) if n > 0 => v[i.index(n)] = BOUNDARY[usize::from(*b)],
            Op::Set(i, b) if n > 0 => v[i.index(n)] = *b,
            Op::Truncate(i) => v.truncate(i.index(n + 1)),
            Op::Insert(i, bytes) => {
                let at = i.index(n + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Op::Remove(i, k) if n > 0 => {
                let at = i.index(n);
                let len = k.index(n - at) + 1;
                v.drain(at..at + len);
            }
            Op::Splice(i, d, r) if !donors.is_empty() => {
                let donor = donors[d.index(donors.len())];
                let from = r.index(donor.len() + 1);
                let at = i.index(n + 1);
                v.splice(at..at, donor[from..].iter().copied());
            }
            Op::Repeat(i, k) if n > 0 => {
                let at = i.index(n);
                let len = k.index(n - at) + 1;
                let run = v[at..at + len].to_vec();
                v.splice(at..at, run);
            }
            _ => {}
        }
    }
    v
}

/// Text mutated as bytes, made valid UTF-8 again (lossy) for the text parsers.
pub fn mutate_text(seed: &str, ops: &[Op], donors: &[&str]) -> String {
    let donors: Vec<&[u8]> = donors.iter().map(|d| d.as_bytes()).collect();
    String::from_utf8_lossy(&mutate(seed.as_bytes(), ops, &donors)).into_owned()
}

/// A current-thread runtime whose clock is paused: timeouts fire as soon as every task
/// waits, so a target that ends in a timeout costs no wall time.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}
