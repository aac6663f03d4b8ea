//! Operations: counters for `stats`, logging setup (journal | stderr), the failure log
//! every driver shares (once on failure, summaries, once on recovery), the reconnect
//! backoff, the token bucket, and the service-manager protocol (sd_notify, watchdog
//! liveness), PEM files and the TLS client set-up. The lowest utility layer: southbound
//! and northbound both use it.

pub mod backoff;
pub mod bucket;
pub mod counters;
pub mod failpoint;
pub mod failure_log;
pub mod health;
pub mod lock;
pub mod logging;
pub mod memory;
pub mod notify;
pub mod pem;
pub mod slots;
pub mod timings;
pub mod tls;

/// Equal in time whatever the bytes (the length is not secret): passwords of HTTP and
/// OCPP clients are compared with it.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
