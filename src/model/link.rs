//! A device's liveness, kept once: the driver that talks to the device sets it on each
//! transition, everyone else (command routing, the pipeline's counts, the status line)
//! reads it.

use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Not heard from since its driver started.
    Unknown = 0,
    Online = 1,
    Offline = 2,
}

/// The shared cell holding one device's [`LinkState`].
#[derive(Debug, Default)]
pub struct LinkCell(AtomicU8);

impl LinkCell {
    pub fn get(&self) -> LinkState {
        match self.0.load(Relaxed) {
            1 => LinkState::Online,
            2 => LinkState::Offline,
            _ => LinkState::Unknown,
        }
    }

    pub fn is_online(&self) -> bool {
        self.get() == LinkState::Online
    }

    /// Records `state`; true when it is a transition (the state was different).
    pub fn set(&self, state: LinkState) -> bool {
        self.0.swap(state as u8, Relaxed) != state as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reports_only_real_transitions() {
        let l = LinkCell::default();
        assert_eq!(l.get(), LinkState::Unknown);
        assert!(l.set(LinkState::Online));
        assert!(!l.set(LinkState::Online));
        assert!(l.is_online());
        assert!(l.set(LinkState::Offline));
        assert_eq!(l.get(), LinkState::Offline);
    }
}
