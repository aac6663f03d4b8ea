//! [`BufferHealth`]: whether the durable queue can store (SPEC §5 "Storage faults"), shared
//! by the queue (which sets it), the MQTT session (retained status `"buffer"`), and the
//! HTTP/metrics views (`/healthz`, `polegate_buffer_degraded`).
//!
//! API: [`BufferHealth::get`] returns the current [`Health`]; [`BufferHealth::subscribe`]
//! gives a `tokio::sync::watch` receiver that changes once per transition. The fault's
//! start and its end are each logged exactly once, by the transition itself.

use std::sync::Arc;
use tokio::sync::watch;

/// The queue's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Health {
    /// Events are stored durably.
    #[default]
    Ok,
    /// The queue cannot store; events are held in memory (or published directly).
    Degraded { reason: String },
}

impl Health {
    pub fn is_degraded(&self) -> bool {
        matches!(self, Health::Degraded { .. })
    }

    /// `"ok"` or `"degraded"`, as in the retained status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded { .. } => "degraded",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Ok => None,
            Health::Degraded { reason } => Some(reason),
        }
    }
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct BufferHealth {
    tx: Arc<watch::Sender<Health>>,
}

impl Default for BufferHealth {
    fn default() -> Self {
        BufferHealth {
            tx: Arc::new(watch::Sender::new(Health::Ok)),
        }
    }
}

impl BufferHealth {
    pub fn get(&self) -> Health {
        self.tx.borrow().clone()
    }

    /// The cause while degraded (for the status page and `/api/status`).
    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().reason().map(str::to_string)
    }

    pub fn is_degraded(&self) -> bool {
        self.tx.borrow().is_degraded()
    }

    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }

    /// Enters the degraded state (logged once); a later call while degraded only keeps
    /// the first reason. Returns true on the transition.
    pub fn degrade(&self, reason: &str, path: &std::path::Path) -> bool {
        self.tx.send_if_modified(|h| {
            if h.is_degraded() {
                return false;
            }
            tracing::error!(
                path = %path.display(),
                error = reason,
                "BUFFER CANNOT STORE: holding events in memory and publishing directly \
                 while the broker is connected; retrying the queue"
            );
            *h = Health::Degraded {
                reason: reason.to_owned(),
            };
            true
        })
    }

    /// Leaves the degraded state (logged once). Returns true on the transition.
    pub fn recovered(&self, path: &std::path::Path, restored: u64) -> bool {
        self.tx.send_if_modified(|h| {
            if !h.is_degraded() {
                return false;
            }
            tracing::info!(
                path = %path.display(),
                restored,
                "buffer stores durably again"
            );
            *h = Health::Ok;
            true
        })
    }
}

#[cfg(test)]
mod tests {
    //! Proves transitions happen once each and subscribers see them.
    use super::*;

    #[test]
    fn a_fault_is_entered_once_and_left_once() {
        let h = BufferHealth::default();
        let mut rx = h.subscribe();
        let p = std::path::Path::new("/x");
        assert!(h.degrade("disk full", p));
        assert!(!h.degrade("other", p));
        assert_eq!(h.get().reason(), Some("disk full"));
        assert!(rx.has_changed().expect("open"));
        rx.mark_unchanged();
        assert!(h.recovered(p, 3));
        assert!(!h.recovered(p, 3));
        assert_eq!(h.get(), Health::Ok);
        assert!(rx.has_changed().expect("open"));
    }
}
