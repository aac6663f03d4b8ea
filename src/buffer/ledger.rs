//! The ledger: one sled value, rewritten once per flush (never per PUBACK), that lets open
//! skip reading the log.
//!
//! ```text
//! version u8 (= 1) | watermark u64 | events u64 | bytes u64 | last_block u64 | reserved u64
//! | exact u8 | acked_len u32 | acked_len × seq u64 | crc32 u32 (all BE)
//! ```
//! - `watermark`: every event with seq ≤ it is gone (acknowledged or evicted); blocks
//!   whose last seq is ≤ it are garbage that open removes.
//! - `events`, `bytes`: the running totals of the live blocks this ledger counted.
//! - `last_block`: the key of the newest block counted; open reads only the blocks after
//!   it (those a crash left written but not counted).
//! - `reserved`: every seq below it may have been handed out. `exact` (a clean stop): it
//!   is the next seq; otherwise the next run starts [`SEQ_FAR`] above it.
//!
//! [`SEQ_FAR`]: super::SEQ_FAR
//! - `acked`: acknowledged seqs inside live blocks (out of order, or a block partly
//!   drained), so that neither a clean restart nor a crash publishes them again. At most
//!   [`MAX_ACKED`]; beyond that, the rest may be published again after a restart.

pub(crate) const KEY: &[u8] = b"ledger";
const VERSION: u8 = 1;
/// The fixed part: version, five fields, `exact`, the acked count.
const FIXED: usize = 1 + 5 * 8 + 1 + 4;
/// Acknowledged seqs kept in the ledger (32 KiB).
pub(crate) const MAX_ACKED: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ledger {
    pub watermark: u64,
    pub events: u64,
    pub bytes: u64,
    pub last_block: u64,
    pub reserved: u64,
    pub exact: bool,
    pub acked: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("{0} bytes, not a ledger")]
    Length(usize),
    #[error("unknown ledger version {0}")]
    Version(u8),
    #[error("checksum mismatch")]
    Crc,
}

impl Ledger {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let acked = &self.acked[..self.acked.len().min(MAX_ACKED)];
        let mut out = Vec::with_capacity(FIXED + 8 * acked.len() + 4);
        out.push(VERSION);
        for v in [
            self.watermark,
            self.events,
            self.bytes,
            self.last_block,
            self.reserved,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.push(u8::from(self.exact));
        out.extend_from_slice(&(acked.len() as u32).to_be_bytes());
        for s in acked {
            out.extend_from_slice(&s.to_be_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Ledger, LedgerError> {
        if bytes.len() < FIXED + 4 {
            return Err(LedgerError::Length(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(LedgerError::Version(bytes[0]));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let mut c = [0; 4];
        c.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_be_bytes(c) {
            return Err(LedgerError::Crc);
        }
        let field = |i: usize| {
            let mut a = [0; 8];
            a.copy_from_slice(&body[1 + 8 * i..9 + 8 * i]);
            u64::from_be_bytes(a)
        };
        let mut n = [0; 4];
        n.copy_from_slice(&body[FIXED - 4..FIXED]);
        let n = u32::from_be_bytes(n) as usize;
        if n > MAX_ACKED || body.len() != FIXED + 8 * n || body[FIXED - 5] > 1 {
            return Err(LedgerError::Length(bytes.len()));
        }
        let acked = body[FIXED..]
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0; 8];
                a.copy_from_slice(c);
                u64::from_be_bytes(a)
            })
            .collect();
        Ok(Ledger {
            watermark: field(0),
            events: field(1),
            bytes: field(2),
            last_block: field(3),
            reserved: field(4),
            exact: body[FIXED - 5] == 1,
            acked,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Proves the ledger round-trips and that damage is detected, never misread.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_ledger_round_trips(w: u64, e: u64, b: u64, l: u64, r: u64, exact: bool,
                                acked in proptest::collection::vec(any::<u64>(), 0..50)) {
            let led = Ledger { watermark: w, events: e, bytes: b, last_block: l, reserved: r, exact, acked };
            prop_assert_eq!(Ledger::decode(&led.encode()), Ok(led));
        }

        #[test]
        fn any_flipped_bit_is_an_error(i in 0usize..FIXED + 20, bit in 0u8..8) {
            let led = Ledger { watermark: 5, events: 2, bytes: 300, last_block: 4, reserved: 1029, exact: true, acked: vec![7, 9] };
            let mut bytes = led.encode();
            bytes[i] ^= 1 << bit;
            prop_assert!(Ledger::decode(&bytes).is_err());
        }
    }
}
