//! The queue against an in-memory model: random push, ack, read and reopen sequences
//! leave the queue holding exactly what a BTreeMap of the unacknowledged records holds.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    /// Ack the n-th oldest queued seq (modulo the queue length).
    Ack(usize),
    Read(Option<usize>, usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..120).prop_map(Op::Push),
        2 => (0usize..8).prop_map(Op::Ack),
        2 => (proptest::option::of(0usize..8), 1usize..6).prop_map(|(a, l)| Op::Read(a, l)),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_push_ack_read_reopen_matches_an_in_memory_model(
        ops in proptest::collection::vec(op(), 1..40),
        drop_oldest in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        let max = 600u64;
        let on_full = if drop_oldest { WhenFull::DropOldest } else { WhenFull::DropNewest };
        let mut q = Queue::open(&dir, opts(max, on_full)).expect("open");
        let mut model: BTreeMap<u64, Record> = BTreeMap::new();
        let mut last_seq = 0;
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push(len) => {
                    let r = rec(i as u64, len);
                    let seq = q.next_seq().expect("next_seq");
                    prop_assert!(seq > last_seq);
                    last_seq = seq;
                    let sz = size(&r);
                    let mut used: u64 = model.values().map(size).sum();
                    let expected = if sz > max || (!drop_oldest && used + sz > max) {
                        PushOutcome::Rejected
                    } else {
                        let mut evicted = 0;
                        while used + sz > max {
                            let (_, old) = model.pop_first().expect("model non-empty");
                            used -= size(&old);
                            evicted += 1;
                        }
                        model.insert(seq, r.clone());
                        PushOutcome::Stored { evicted }
                    };
                    prop_assert_eq!(q.push(seq, &r).expect("push"), expected);
                }
                Op::Ack(n) => {
                    if let Some(&seq) = model.keys().nth(n % model.len().max(1)) {
                        model.remove(&seq);
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
                Op::Reopen => {
                    q.flush().expect("flush");
                    drop(q);
                    q = Queue::open(&dir, opts(max, on_full)).expect("reopen");
                }
            }
            let st = q.stats();
            prop_assert_eq!(st.events, model.len() as u64);
            prop_assert_eq!(st.bytes, model.values().map(size).sum::<u64>());
        }
        let all = q.read_after(None, usize::MAX).expect("read");
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}
