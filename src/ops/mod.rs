//! Operations: counters for `stats`, logging setup (journal | stderr), rate-limited failure
//! logs, and the service-manager protocol (sd_notify, watchdog liveness).

pub mod counters;
pub mod logging;
pub mod notify;
pub mod ratelimit;
