//! Connection slots that a silent client cannot keep (SPEC §7): a fixed number of
//! slots; when all are taken, a newcomer takes the slot of the oldest holder that is
//! still *idle* (connected, but has not completed its request or handshake), whose task
//! is told to close through [`Slot::evicted`]. A holder marked [`Slot::busy`] (serving an
//! authenticated request, a charger whose handshake is done) is never evicted; when every
//! holder is busy the newcomer is refused. So N idle or half-open sockets cost each other
//! their slots, never a real client's: a real client is admitted at once and is only
//! evicted if as many newer idle sockets arrive before it is done.

use crate::ops::lock::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Default)]
struct Inner {
    next: u64,
    /// Holders by admission order: eviction token and whether busy.
    held: BTreeMap<u64, (CancellationToken, bool)>,
}

/// The slot table of one listener.
#[derive(Clone)]
pub struct Slots {
    cap: usize,
    inner: Arc<Mutex<Inner>>,
}

/// One admitted connection's slot; dropping it frees the slot.
pub struct Slot {
    id: u64,
    evict: CancellationToken,
    inner: Arc<Mutex<Inner>>,
}

/// What [`Slots::admit`] did.
pub enum Admitted {
    /// A free slot.
    Free(Slot),
    /// The slot of the oldest idle holder, which was told to close.
    Evicted(Slot),
    /// Every slot is held by a busy connection.
    Full,
}

impl Slots {
    pub fn new(cap: usize) -> Slots {
        Slots {
            cap: cap.max(1),
            inner: Arc::default(),
        }
    }

    pub fn admit(&self) -> Admitted {
        let mut g = lock(&self.inner);
        let mut evicted = false;
        if g.held.len() >= self.cap {
            let Some(oldest) = g.held.iter().find(|(_, (_, busy))| !busy).map(|(k, _)| *k) else {
                return Admitted::Full;
            };
            if let Some((token, _)) = g.held.remove(&oldest) {
                token.cancel();
            }
            evicted = true;
        }
        let id = g.next;
        g.next += 1;
        let evict = CancellationToken::new();
        g.held.insert(id, (evict.clone(), false));
        let slot = Slot {
            id,
            evict,
            inner: self.inner.clone(),
        };
        if evicted {
            Admitted::Evicted(slot)
        } else {
            Admitted::Free(slot)
        }
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        lock(&self.inner).held.len()
    }
}

impl Slot {
    /// Completes when a newcomer took this slot: the holder closes its connection.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }

    /// From now on this holder is never evicted (its client proved itself).
    pub fn busy(&self) {
        if let Some(e) = lock(&self.inner).held.get_mut(&self.id) {
            e.1 = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.inner).held.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    //! Idle holders give way to newcomers, oldest first; busy ones never do.
    use super::*;

    #[test]
    fn a_newcomer_takes_the_slot_of_the_oldest_idle_holder() {
        let s = Slots::new(2);
        let Admitted::Free(a) = s.admit() else {
            panic!("free")
        };
        let Admitted::Free(b) = s.admit() else {
            panic!("free")
        };
        let Admitted::Evicted(c) = s.admit() else {
            panic!("evicts")
        };
        assert!(a.evict.is_cancelled(), "the oldest is told to close");
        assert!(!b.evict.is_cancelled());
        assert_eq!(s.held(), 2);
        drop(a);
        assert_eq!(s.held(), 2, "an evicted slot is not freed twice");
        drop((b, c));
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn busy_holders_are_kept_and_a_table_of_busy_holders_refuses() {
        let s = Slots::new(2);
        let Admitted::Free(a) = s.admit() else {
            panic!("free")
        };
        a.busy();
        let Admitted::Free(b) = s.admit() else {
            panic!("free")
        };
        let Admitted::Evicted(c) = s.admit() else {
            panic!("evicts b")
        };
        assert!(b.evict.is_cancelled() && !a.evict.is_cancelled());
        c.busy();
        assert!(matches!(s.admit(), Admitted::Full));
        drop(a);
        assert!(matches!(s.admit(), Admitted::Free(_)));
    }
}
