//! The on-disk format of one block: the events of one flush window (or fewer, when the
//! window's events exceed [`BLOCK_MAX`]) in one sled value, keyed by its first seq.
//!
//! ```text
//! version u8 | count u32 BE | first u64 BE | last u64 BE | bytes u32 BE | crc32 u32 BE | body
//! entries: `count` × (seq u64 BE | len u32 BE | record (record.rs))
//! ```
//! Version 2 stores the body as the entries compressed with LZ4 (the block format, no
//! size prefix: the entries are `count × 12 + bytes` long); version 1 stores the entries
//! as they are, which the writer keeps when LZ4 would not make them smaller. Telemetry
//! compresses 3–4 × (the same topics and keys in every event), and sled keeps about as
//! many bytes resident as it has written: compression is what keeps a long outage's
//! backlog small in memory and on the card. `bytes` is the sum of the records' lengths
//! (what `max_bytes` bounds, uncompressed); the CRC covers the stored body, so damage is
//! found before decompression. Decoding is total: any byte string is a block or a
//! [`BlockError`], and a header cannot make the decoder allocate more than LZ4's
//! largest ratio allows for the stored body.
//!
//! Blocks stay at most [`BLOCK_MAX`] bytes before compression (a block holding one larger
//! record is the only exception): sled writes a leaf whose serialized size exceeds
//! `segment_size / 4` (128 KiB by default, a leaf holds up to 17 entries) to a blob file,
//! and sled does not fsync blob files.

use std::borrow::Cow;
use std::ops::Range;

/// Entries stored as they are.
const PLAIN: u8 = 1;
/// Entries compressed with LZ4.
const LZ4: u8 = 2;
/// LZ4 cannot expand data by more than this factor (a match of 255+ bytes per token).
const LZ4_MAX_RATIO: u64 = 255;
pub(crate) const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 4 + 4;
pub(crate) const ENTRY_HEADER: usize = 8 + 4;
/// Largest block written (unless one record alone is larger).
pub(crate) const BLOCK_MAX: usize = 7 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("truncated header ({0} bytes)")]
    Header(usize),
    #[error("unknown block version {0}")]
    Version(u8),
    #[error("checksum mismatch")]
    Crc,
    #[error("entry {0} is truncated")]
    Entry(u32),
    #[error("compressed entries do not decompress to the {0} bytes the header implies")]
    Decompress(u64),
    #[error("header says {count} entries from {first} to {last}, the entries disagree")]
    Inconsistent { count: u32, first: u64, last: u64 },
}

/// What a block's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub count: u32,
    pub first: u64,
    pub last: u64,
    pub bytes: u32,
}

/// Events gathered into a block, in seq order: `(seq, encoded record)`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Entries {
    pub items: Vec<(u64, Vec<u8>)>,
    /// Sum of the records' lengths.
    pub bytes: u64,
}

impl Entries {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn first(&self) -> Option<u64> {
        self.items.first().map(|(s, _)| *s)
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.items.last().map(|(s, _)| *s)
    }

    /// Size of the block these entries make, before compression.
    pub(crate) fn encoded_len(&self) -> usize {
        HEADER_LEN + self.items.len() * ENTRY_HEADER + self.bytes as usize
    }

    /// Whether a record of `len` bytes still fits under [`BLOCK_MAX`].
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.is_empty() || self.encoded_len() + ENTRY_HEADER + len <= BLOCK_MAX
    }

    pub(crate) fn push(&mut self, seq: u64, rec: Vec<u8>) {
        self.bytes += rec.len() as u64;
        self.items.push((seq, rec));
    }

    pub(crate) fn pop_front(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.items.is_empty() {
            return None;
        }
        let (seq, rec) = self.items.remove(0);
        self.bytes -= rec.len() as u64;
        Some((seq, rec))
    }

    /// Removes `seq`; its record's length when it was there.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<u64> {
        let i = self.items.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        let (_, rec) = self.items.remove(i);
        self.bytes -= rec.len() as u64;
        Some(rec.len() as u64)
    }

    /// Keeps only the entries `keep` accepts; returns (events, bytes) removed.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) -> (u64, u64) {
        let (n0, b0) = (self.items.len() as u64, self.bytes);
        self.items.retain(|(s, _)| keep(*s));
        self.bytes = self.items.iter().map(|(_, r)| r.len() as u64).sum();
        (n0 - self.items.len() as u64, b0 - self.bytes)
    }

    pub(crate) fn header(&self) -> Header {
        Header {
            count: self.items.len() as u32,
            first: self.first().unwrap_or(0),
            last: self.last().unwrap_or(0),
            bytes: self.bytes.min(u64::from(u32::MAX)) as u32,
        }
    }

    /// The block as stored: compressed when that makes it smaller.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let plain = self.plain();
        let packed = lz4_flex::block::compress(&plain);
        let (version, body) = if packed.len() < plain.len() {
            (LZ4, packed)
        } else {
            (PLAIN, plain)
        };
        stored(version, &self.header(), &body)
    }

    /// The entries one after the other, uncompressed.
    fn plain(&self) -> Vec<u8> {
        let mut plain = Vec::with_capacity(self.encoded_len() - HEADER_LEN);
        for (seq, rec) in &self.items {
            plain.extend_from_slice(&seq.to_be_bytes());
            plain.extend_from_slice(&(rec.len() as u32).to_be_bytes());
            plain.extend_from_slice(rec);
        }
        plain
    }
}

/// A block as stored: `version`, the header, the body's CRC, the body.
fn stored(version: u8, h: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(version);
    out.extend_from_slice(&h.count.to_be_bytes());
    out.extend_from_slice(&h.first.to_be_bytes());
    out.extend_from_slice(&h.last.to_be_bytes());
    out.extend_from_slice(&h.bytes.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The header alone (no checksum check): what accounting needs of a block.
pub(crate) fn header(bytes: &[u8]) -> Result<Header, BlockError> {
    if bytes.len() < HEADER_LEN {
        return Err(BlockError::Header(bytes.len()));
    }
    if bytes[0] != PLAIN && bytes[0] != LZ4 {
        return Err(BlockError::Version(bytes[0]));
    }
    Ok(Header {
        count: be_u32(&bytes[1..]),
        first: be_u64(&bytes[5..]),
        last: be_u64(&bytes[13..]),
        bytes: be_u32(&bytes[21..]),
    })
}

/// One entry of a decoded block: its seq and where its record lies in the block.
pub(crate) type Slot = (u64, Range<usize>);

/// A decoded block: its header and its entries.
pub(crate) struct Decoded<'a> {
    pub header: Header,
    entries: Cow<'a, [u8]>,
    slots: Vec<Slot>,
}

impl Decoded<'_> {
    /// `(seq, record)` in seq order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.slots
            .iter()
            .map(|(s, r)| (*s, self.entries.get(r.clone()).unwrap_or_default()))
    }
}

/// The entries of a block, checked.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, BlockError> {
    let h = header(bytes)?;
    let body = &bytes[HEADER_LEN..];
    if crc32fast::hash(body) != be_u32(&bytes[HEADER_LEN - 4..]) {
        return Err(BlockError::Crc);
    }
    let entries = if bytes[0] == LZ4 {
        Cow::Owned(decompress(body, &h)?)
    } else {
        Cow::Borrowed(body)
    };
    let slots = slots(&entries, &h)?;
    Ok(Decoded {
        header: h,
        entries,
        slots,
    })
}

/// The entries of a version 2 body, of exactly the length the header implies.
fn decompress(body: &[u8], h: &Header) -> Result<Vec<u8>, BlockError> {
    let want = u64::from(h.count) * ENTRY_HEADER as u64 + u64::from(h.bytes);
    if want > (body.len() as u64).saturating_mul(LZ4_MAX_RATIO) {
        return Err(BlockError::Decompress(want));
    }
    let mut out = vec![0; want as usize];
    match lz4_flex::block::decompress_into(body, &mut out) {
        Ok(n) if n as u64 == want => Ok(out),
        _ => Err(BlockError::Decompress(want)),
    }
}

/// Where each entry's record lies in `entries`, checked against the header.
fn slots(entries: &[u8], h: &Header) -> Result<Vec<Slot>, BlockError> {
    let mut at = 0;
    let mut out = Vec::with_capacity((h.count as usize).min(BLOCK_MAX / ENTRY_HEADER));
    let mut sum = 0u64;
    for i in 0..h.count {
        let head = entries
            .get(at..at + ENTRY_HEADER)
            .ok_or(BlockError::Entry(i))?;
        let seq = be_u64(head);
        let len = be_u32(&head[8..]) as usize;
        let start = at + ENTRY_HEADER;
        let end = start.checked_add(len).ok_or(BlockError::Entry(i))?;
        if end > entries.len() {
            return Err(BlockError::Entry(i));
        }
        sum += len as u64;
        out.push((seq, start..end));
        at = end;
    }
    let ordered = out.windows(2).all(|w| w[0].0 < w[1].0);
    let ends = out.first().map(|e| e.0) == Some(h.first) && out.last().map(|e| e.0) == Some(h.last);
    if at != entries.len() || !ordered || !ends || sum != u64::from(h.bytes) {
        return Err(BlockError::Inconsistent {
            count: h.count,
            first: h.first,
            last: h.last,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Proves blocks round-trip, respect their size cap, and that no byte string or
    //! damaged block makes decoding panic or pass.
    use super::*;
    use proptest::prelude::*;

    fn entries(items: &[(u64, Vec<u8>)]) -> Entries {
        let mut e = Entries::default();
        for (s, r) in items {
            e.push(*s, r.clone());
        }
        e
    }

    proptest! {
        #[test]
        fn a_block_decodes_to_its_entries(lens in proptest::collection::vec(0usize..300, 1..40)) {
            let items: Vec<(u64, Vec<u8>)> = lens.iter().enumerate()
                .map(|(i, n)| (10 + 3 * i as u64, vec![i as u8; *n])).collect();
            let e = entries(&items);
            let bytes = e.encode();
            prop_assert!(bytes.len() <= e.encoded_len());
            let d = decode(&bytes).expect("decodes");
            prop_assert_eq!(d.header, e.header());
            let got: Vec<(u64, Vec<u8>)> = d.iter().map(|(s, r)| (s, r.to_vec())).collect();
            prop_assert_eq!(got, items);
        }

        #[test]
        fn incompressible_records_round_trip_stored_plain(
            recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)
        ) {
            let items: Vec<(u64, Vec<u8>)> = recs.into_iter().enumerate().map(|(i, r)| (i as u64 + 1, r)).collect();
            let e = entries(&items);
            let bytes = e.encode();
            prop_assert!(bytes.len() <= e.encoded_len());
            let got: Vec<(u64, Vec<u8>)> = decode(&bytes).expect("decodes").iter().map(|(s, r)| (s, r.to_vec())).collect();
            prop_assert_eq!(got, items);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn a_flipped_byte_is_always_detected(flip in 0usize..200, bit in 0u8..8) {
            let e = entries(&[(1, vec![7; 60]), (2, vec![8; 60]), (5, vec![9; 60])]);
            let mut bytes = e.encode();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(decode(&bytes).is_err());
        }
    }

    #[test]
    fn fits_keeps_blocks_under_the_cap_but_always_takes_a_first_record() {
        let mut e = Entries::default();
        assert!(e.fits(BLOCK_MAX * 2), "an empty block takes any record");
        let mut seq = 0;
        while e.fits(200) {
            seq += 1;
            e.push(seq, vec![0; 200]);
        }
        assert!(e.encoded_len() <= BLOCK_MAX);
        assert!(e.encoded_len() + ENTRY_HEADER + 200 > BLOCK_MAX);
    }

    /// Twenty telemetry events as the pipeline stores them.
    fn telemetry() -> Entries {
        let mut e = Entries::default();
        for i in 0..20u64 {
            let rec = format!(
                "polegate/cab-7/lamp-{:03}/telemetry{{\"seq\":{},\"ts\":{},\"gateway\":\"cab-7\",\
                 \"device\":\"lamp-{:03}\",\"kind\":\"lamp\",\"points\":{{\"power\":{}.{}}}",
                i * 7 % 200,
                1000 + i,
                1_765_000_000_000 + i * 13,
                i * 7 % 200,
                40 + i,
                i % 10
            );
            e.push(1000 + i, rec.into_bytes());
        }
        e
    }

    #[test]
    fn telemetry_is_stored_compressed_at_a_third_of_its_size_or_less() {
        let e = telemetry();
        let bytes = e.encode();
        assert_eq!(bytes[0], LZ4);
        assert!(
            bytes.len() * 3 <= e.encoded_len(),
            "{} of {} bytes",
            bytes.len(),
            e.encoded_len()
        );
        let d = decode(&bytes).expect("decodes");
        let want: Vec<(u64, &[u8])> = e.items.iter().map(|(s, r)| (*s, r.as_slice())).collect();
        assert_eq!(d.iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_block_of_the_uncompressed_version_still_decodes() {
        let e = entries(&[(4, b"abc".to_vec()), (9, b"defgh".to_vec())]);
        let bytes = stored(PLAIN, &e.header(), &e.plain());
        let d = decode(&bytes).expect("decodes");
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            vec![(4, &b"abc"[..]), (9, &b"defgh"[..])]
        );
    }

    #[test]
    fn a_header_claiming_more_than_lz4_can_expand_is_refused_before_allocating() {
        let mut bytes = telemetry().encode();
        // count = u32::MAX: 51 GB of entries from a 1 KB body.
        bytes[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(BlockError::Decompress(_))));
    }

    #[test]
    fn remove_and_retain_keep_the_byte_sum() {
        let mut e = entries(&[(1, vec![0; 10]), (2, vec![0; 20]), (3, vec![0; 30])]);
        assert_eq!(e.remove(2), Some(20));
        assert_eq!(e.remove(2), None);
        assert_eq!(e.bytes, 40);
        assert_eq!(e.retain(|s| s != 1), (1, 10));
        assert_eq!(
            (e.len(), e.bytes, e.first(), e.last()),
            (1, 30, Some(3), Some(3))
        );
    }
}
