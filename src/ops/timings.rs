//! Timing histograms exported by `/metrics` (poll duration per link, publish → PUBACK).
//! Recording one never blocks a driver for longer than one histogram update (a short
//! uncontended lock inside `prometheus-client`), and never across an await.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::time::Duration;

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
    /// The poll-cycle series of `link`: its bus task keeps it and records each cycle
    /// with [`observe`] (no label built and looked up per poll).
    pub fn poll_series(&self, link: &str) -> Histogram {
        self.poll
            .get_or_create(&vec![("link", link.to_string())])
            .clone()
    }

    /// Forgets the series of a link that no longer exists (after a reload).
    pub fn forget_link(&self, link: &str) {
        self.poll.remove(&vec![("link", link.to_string())]);
    }

    pub fn puback(&self, took: Duration) {
        observe(&self.puback, took);
    }
}

/// Records `took` in `series`, in seconds.
pub fn observe(series: &Histogram, took: Duration) {
    series.observe(took.as_secs_f64());
}
