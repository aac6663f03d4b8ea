//! Removing acknowledged records: one at a time ([`Queue::ack`]) or a batch of PUBACKs
//! under one lock ([`Queue::ack_many`], the publisher's path while a backlog drains).

use super::faults::FaultPoint;
use super::sled_queue::{Queue, key, lock};

impl Queue {
    /// Removes `seq` (its PUBACK came). Unknown seqs are ignored. While the database
    /// refuses writes the removal is remembered and applied on recovery.
    pub fn ack(&self, seq: u64) -> Result<(), super::BufferError> {
        self.ack_many(&[seq]);
        Ok(())
    }

    /// Removes every seq of `seqs` (their PUBACKs came), as [`Queue::ack`] would one by
    /// one, taking the queue's locks once. A removal the database refuses is remembered
    /// and applied on recovery (and the queue degrades), so nothing is reported back.
    pub fn ack_many(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let mut acct = lock(&self.inner.acct);
        let mut held = lock(&self.inner.held);
        let store = self.store();
        let mut removed_any = false;
        for &seq in seqs {
            if held.remove(seq) {
                continue;
            }
            let removed = match store.as_ref() {
                None => Err(self.closed()),
                Some(st) => self
                    .check(FaultPoint::Write)
                    .and_then(|()| st.events.remove(key(seq)).map_err(|e| self.sled_err(e))),
            };
            match removed {
                Ok(Some(v)) => {
                    acct.events = acct.events.saturating_sub(1);
                    acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
                    removed_any = true;
                }
                Ok(None) => {}
                Err(e) => {
                    self.degrade(&e);
                    held.acked.insert(seq);
                }
            }
        }
        if removed_any {
            self.mark_dirty();
        }
    }
}
