//! Operations: counters for `stats`, logging setup (journal | stderr), rate-limited failure
//! logs, the token bucket, and the service-manager protocol (sd_notify, watchdog liveness).

pub mod bucket;
pub mod counters;
pub mod logging;
pub mod notify;
pub mod ratelimit;
