//! What the operator's views (the HTTP status page, `/metrics`, `/healthz`) read that no
//! other owner keeps: whether the buffer is degraded, and the timing histograms.
//!
//! Invariants:
//! - [`BufferHealth`] is the one place the buffer's degradation is recorded (SPEC §5
//!   Storage faults); whoever detects a fault or its end calls [`BufferHealth::set`].
//! - Recording a timing never blocks a driver for longer than one histogram update (a
//!   short uncontended lock inside `prometheus-client`), and never across an await.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// Whether the durable queue currently stores events, and why not.
#[derive(Debug, Default)]
pub struct BufferHealth {
    degraded: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl BufferHealth {
    /// Records the current state: `Some(reason)` while degraded, `None` once the queue
    /// stores again. True when this is a transition.
    pub fn set(&self, reason: Option<String>) -> bool {
        let degraded = reason.is_some();
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        self.degraded.swap(degraded, Relaxed) != degraded
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Relaxed)
    }

    /// The cause while degraded.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A label set of one `link`.
pub type LinkLabel = Vec<(&'static str, String)>;

type HistogramFamily = Family<LinkLabel, Histogram, fn() -> Histogram>;

fn poll_buckets() -> Histogram {
    // 1 ms .. ~16 s: a loopback Modbus read up to a slow serial bus at its timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Timing histograms, exported by `/metrics`.
#[derive(Debug, Clone)]
pub struct Timings {
    /// One poll cycle of one device, per link (connection or serial line).
    pub poll: HistogramFamily,
    /// From a publish written to the broker to its PUBACK.
    pub puback: Histogram,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            poll: Family::new_with_constructor(poll_buckets),
            puback: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}

impl Timings {
    /// Records one poll cycle of `took` on `link`.
    pub fn poll(&self, link: &str, took: Duration) {
        self.poll
            .get_or_create(&vec![("link", link.to_string())])
            .observe(took.as_secs_f64());
    }

    /// Forgets the series of a link that no longer exists (after a reload).
    pub fn forget_link(&self, link: &str) {
        self.poll.remove(&vec![("link", link.to_string())]);
    }

    pub fn puback(&self, took: Duration) {
        self.puback.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_health_reports_only_transitions_and_keeps_the_reason() {
        let h = BufferHealth::default();
        assert!(!h.is_degraded());
        assert!(h.set(Some("disk full".into())));
        assert!(!h.set(Some("disk full".into())));
        assert_eq!(h.reason().as_deref(), Some("disk full"));
        assert!(h.set(None));
        assert!(!h.is_degraded() && h.reason().is_none());
    }
}
