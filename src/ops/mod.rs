//! Operations: counters for `stats`, logging setup, rate-limited failure logs.

pub mod counters;
pub mod logging;
pub mod ratelimit;
