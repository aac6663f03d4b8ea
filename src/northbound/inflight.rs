//! Which queued records one MQTT connection still owes a PUBACK for. Pure: the session
//! feeds it what it handed to the client and what the event loop reported.
//!
//! rumqttc's `publish` returns before a packet id exists. Its event loop then reports
//! `Outgoing::Publish(pkid)` for the requests in the order they were made, so each pkid
//! pairs with the oldest request still without one; `Incoming::PubAck(pkid)` names the
//! record that may leave the queue. Nothing else deletes: a record whose PUBACK never
//! came stays queued, and a new connection starts from [`InFlight::new`], whose read
//! point is the start of the queue, i.e. the oldest unacknowledged `seq`.

use std::collections::{HashMap, VecDeque};

/// What one publish request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The queued record with this `seq`.
    Record(u64),
    /// A message that is not in the queue (the gateway status).
    Unqueued,
}

#[derive(Debug, Default)]
pub struct InFlight {
    /// Last seq handed to the client in this connection.
    cursor: Option<u64>,
    /// Requests handed to the client whose packet id is not known yet.
    awaiting_pkid: VecDeque<Sent>,
    awaiting_ack: HashMap<u16, Sent>,
}

impl InFlight {
    /// A connection that has sent nothing yet.
    pub fn new() -> InFlight {
        InFlight::default()
    }

    /// Requests handed to the client and not acknowledged: the publish window in use.
    pub fn len(&self) -> usize {
        self.awaiting_pkid.len() + self.awaiting_ack.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where to read the queue from: after this seq (`None`: from the oldest record).
    pub fn read_after(&self) -> Option<u64> {
        self.cursor
    }

    /// The session handed `sent` to the client.
    pub fn requested(&mut self, sent: Sent) {
        if let Sent::Record(seq) = sent {
            self.cursor = Some(seq);
        }
        self.awaiting_pkid.push_back(sent);
    }

    /// The event loop wrote the oldest request still without a packet id as `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if let Some(sent) = self.awaiting_pkid.pop_front() {
            self.awaiting_ack.insert(pkid, sent);
        }
    }

    /// The broker acknowledged `pkid`: the seq that may now leave the queue, if any.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        match self.awaiting_ack.remove(&pkid)? {
            Sent::Record(seq) => Some(seq),
            Sent::Unqueued => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Proves, against a model of the queue, the client and the broker, that random
    //! sequences of publish, pkid assignment, PUBACK (expected or stray) and disconnect
    //! never delete an unacknowledged seq, never skip one, and always rewind to the oldest
    //! unacknowledged seq.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const WINDOW: usize = 8;

    #[derive(Debug, Clone)]
    enum Op {
        /// The pipeline queues a new event.
        Push,
        /// The session fills the window from the queue.
        Fill,
        /// The session publishes the status (not queued).
        Status,
        /// The event loop assigns a packet id to the oldest request without one.
        Outgoing(u16),
        /// The broker acknowledges the n-th packet it holds.
        Ack(usize),
        /// A PUBACK for a packet id nobody is waiting for.
        StrayAck(u16),
        /// The connection drops; the next one starts afresh.
        Disconnect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::Push),
            3 => Just(Op::Fill),
            1 => Just(Op::Status),
            4 => any::<u16>().prop_map(Op::Outgoing),
            4 => any::<usize>().prop_map(Op::Ack),
            1 => any::<u16>().prop_map(Op::StrayAck),
            1 => Just(Op::Disconnect),
        ]
    }

    /// What really happened, kept by the test.
    #[derive(Default)]
    struct World {
        /// Seqs in the durable queue (unacknowledged).
        queue: BTreeSet<u64>,
        next_seq: u64,
        /// Requests the client holds without a packet id, oldest first.
        client: VecDeque<Sent>,
        /// Packets the broker holds, by packet id.
        broker: HashMap<u16, Sent>,
        /// Set by a disconnect: the next record handed out must be the oldest queued one.
        rewound: bool,
    }

    impl World {
        fn in_flight(&self, seq: u64) -> bool {
            let s = Sent::Record(seq);
            self.client.contains(&s) || self.broker.values().any(|v| *v == s)
        }
    }

    fn step(w: &mut World, f: &mut InFlight, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Push => {
                w.next_seq += 1;
                w.queue.insert(w.next_seq);
            }
            Op::Fill => {
                let after = f.read_after();
                let todo: Vec<u64> = w
                    .queue
                    .iter()
                    .copied()
                    .filter(|s| after.is_none_or(|a| *s > a))
                    .take(WINDOW.saturating_sub(f.len()))
                    .collect();
                for seq in todo {
                    if std::mem::take(&mut w.rewound) {
                        prop_assert_eq!(Some(&seq), w.queue.first(), "rewind point");
                    }
                    f.requested(Sent::Record(seq));
                    w.client.push_back(Sent::Record(seq));
                }
            }
            Op::Status => {
                f.requested(Sent::Unqueued);
                w.client.push_back(Sent::Unqueued);
            }
            Op::Outgoing(mut pkid) => {
                if let Some(sent) = w.client.pop_front() {
                    // rumqttc never reuses a packet id still awaiting its PUBACK.
                    while pkid == 0 || w.broker.contains_key(&pkid) {
                        pkid = pkid.wrapping_add(1);
                    }
                    w.broker.insert(pkid, sent);
                    f.sent(pkid);
                }
            }
            Op::Ack(n) => {
                let mut pkids: Vec<u16> = w.broker.keys().copied().collect();
                pkids.sort_unstable();
                if !pkids.is_empty() {
                    let pkid = pkids[n % pkids.len()];
                    let truth = w.broker.remove(&pkid);
                    let deleted = f.acked(pkid);
                    match truth {
                        Some(Sent::Record(seq)) => {
                            prop_assert_eq!(deleted, Some(seq));
                            prop_assert!(w.queue.remove(&seq), "seq {} deleted twice", seq);
                        }
                        _ => prop_assert_eq!(deleted, None),
                    }
                }
            }
            Op::StrayAck(pkid) => {
                if !w.broker.contains_key(&pkid) {
                    prop_assert_eq!(f.acked(pkid), None, "stray PUBACK deleted a record");
                }
            }
            Op::Disconnect => {
                w.client.clear();
                w.broker.clear();
                w.rewound = true;
                *f = InFlight::new();
                prop_assert_eq!(f.read_after(), None);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn no_seq_is_deleted_unacknowledged_or_skipped_and_a_reconnect_rewinds_to_the_oldest(
            initial in 0u64..20,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut w = World { next_seq: initial, queue: (1..=initial).collect(), ..World::default() };
            let mut f = InFlight::new();
            for op in ops {
                step(&mut w, &mut f, op)?;
                prop_assert_eq!(f.len(), w.client.len() + w.broker.len(), "window");
                // Every queued seq the cursor has passed is still on its way to the broker:
                // nothing unacknowledged is skipped in this connection.
                if let Some(cursor) = f.read_after() {
                    for &seq in w.queue.range(..=cursor) {
                        prop_assert!(w.in_flight(seq), "seq {} passed but not in flight", seq);
                    }
                }
            }
        }
    }

    #[test]
    fn a_pkid_pairs_with_the_oldest_request_and_its_puback_names_that_seq() {
        let mut f = InFlight::new();
        f.requested(Sent::Unqueued);
        f.requested(Sent::Record(4));
        f.requested(Sent::Record(5));
        assert_eq!(f.read_after(), Some(5));
        f.sent(1);
        f.sent(2);
        f.sent(3);
        assert_eq!(f.len(), 3);
        assert_eq!(f.acked(3), Some(5));
        assert_eq!(f.acked(1), None);
        assert_eq!(f.acked(3), None, "a repeated PUBACK deletes nothing");
        assert_eq!(f.acked(2), Some(4));
        assert!(f.is_empty());
    }

    #[test]
    fn a_pkid_reported_with_no_request_waiting_is_ignored() {
        let mut f = InFlight::new();
        f.sent(9);
        assert!(f.is_empty());
        assert_eq!(f.acked(9), None);
    }
}
