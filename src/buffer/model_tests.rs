//! The queue against a model of the log (as Vector's disk buffer is tested): random
//! pushes, acks, reads, flushes, clean reopens and crashes. A `BTreeMap` holds what is
//! queued; a second one what the last flush made durable. After a crash (the queue
//! dropped without a flush: nothing of memory survives) the queue must hold every
//! durable event, may hold again an event acknowledged after the block it sits in was
//! written (at most republished), holds nothing else, and never hands out a used seq.

use super::{PushOutcome, Queue, QueueOptions, Record, WhenFull};
use crate::model::payload::Body;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    /// Ack the n-th oldest queued seq (modulo the queue length).
    Ack(usize),
    Read(Option<usize>, usize),
    Flush,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..400).prop_map(Op::Push),
        3 => (0usize..8).prop_map(Op::Ack),
        2 => (proptest::option::of(0usize..8), 1usize..40).prop_map(|(a, l)| Op::Read(a, l)),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn rec(i: u64, len: usize) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{}/telemetry", i % 7),
        payload: Body::from_open(&vec![b'a' + (i % 26) as u8; len]),
        retain: i.is_multiple_of(3),
        created_ms: 1_700_000_000_000 + i,
    }
}

fn opts() -> QueueOptions {
    QueueOptions {
        cache_bytes: 1024 * 1024,
        ..QueueOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_push_ack_read_flush_crash_matches_a_model_of_the_log(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        let mut q = Queue::open(&dir, opts()).expect("open");
        let mut model: BTreeMap<u64, Record> = BTreeMap::new();
        let mut durable: BTreeMap<u64, Record> = BTreeMap::new();
        // Acked since they were made durable: a crash may bring them back.
        let mut acked_durable: BTreeMap<u64, Record> = BTreeMap::new();
        let mut used: BTreeSet<u64> = BTreeSet::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push(len) => {
                    let r = rec(i as u64, len);
                    let (seq, out) = q.push_with(|_| r.clone()).expect("push");
                    prop_assert!(used.last().is_none_or(|l| seq > *l), "seq {seq} after {used:?}");
                    prop_assert_eq!(out, PushOutcome::Stored { evicted: 0 });
                    used.insert(seq);
                    model.insert(seq, r);
                }
                Op::Ack(n) => {
                    if let Some(&seq) = model.keys().nth(n % model.len().max(1)) {
                        let r = model.remove(&seq).expect("in the model");
                        if durable.contains_key(&seq) {
                            acked_durable.insert(seq, r);
                        }
                        q.ack(seq).expect("ack");
                    }
                }
                Op::Read(after, limit) => {
                    let after = after.and_then(|n| model.keys().nth(n).copied());
                    let got = q.read_after(after, limit).expect("read");
                    let want: Vec<(u64, Record)> = model
                        .range(after.map_or(0, |a| a + 1)..)
                        .take(limit)
                        .map(|(s, r)| (*s, r.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Flush => {
                    q.flush().expect("flush");
                    durable = model.clone();
                    acked_durable.clear();
                }
                Op::Reopen => {
                    q.flush().expect("flush");
                    q.close_seq().expect("close_seq");
                    drop(q);
                    q = Queue::open(&dir, opts()).expect("reopen");
                    durable = model.clone();
                    acked_durable.clear();
                }
                Op::Crash => {
                    drop(q);
                    q = Queue::open(&dir, opts()).expect("reopen after a crash");
                    let got: BTreeMap<u64, Record> =
                        q.read_after(None, usize::MAX).expect("read").into_iter().collect();
                    for (s, r) in &durable {
                        prop_assert_eq!(got.get(s), Some(r), "durable seq {} lost", s);
                    }
                    for (s, r) in &got {
                        let again = durable.get(s).or_else(|| acked_durable.get(s));
                        prop_assert_eq!(again, Some(r), "seq {} was never durable", s);
                    }
                    model = got;
                    durable = model.clone();
                    acked_durable.clear();
                }
            }
            prop_assert_eq!(q.stats().events, model.len() as u64);
        }
        let all = q.read_after(None, usize::MAX).expect("read");
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn a_drop_oldest_queue_keeps_its_bound_over_many_flushes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let max = 64 * 1024;
    let q = Queue::open(
        &tmp.path().join("buffer"),
        QueueOptions {
            max_bytes: max,
            on_full: WhenFull::DropOldest,
            ..opts()
        },
    )
    .expect("open");
    for i in 0..5_000u64 {
        q.push_with(|_| rec(i, 200)).expect("push");
        if i % 50 == 0 {
            q.flush().expect("flush");
        }
        assert!(q.stats().bytes <= max, "over the bound at {i}");
    }
    let got = q.read_after(None, usize::MAX).expect("read");
    assert_eq!(got.len() as u64, q.stats().events);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    assert_eq!(
        got.last().map(|(s, _)| *s),
        Some(q.last_pushed()),
        "the newest kept"
    );
    assert_eq!(q.stats().dropped + q.stats().events, 5_000);
}
