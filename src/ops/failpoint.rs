//! Fault-injection points for the tests that make the real binary panic or stall a task
//! (`tests/failpoints.rs`, issue 11 item 4): [`failpoint!`](crate::failpoint!) marks a
//! point, the `FAILPOINTS` environment variable arms it (`name=panic(msg)`,
//! `name=sleep(ms)`, `name=1*panic` …, the syntax of the [`fail`] crate).
//!
//! Only builds with the `failpoints` feature (a default feature, for the tests) have them;
//! cabinet builds (`--no-default-features`) compile every point to nothing and never read
//! `FAILPOINTS`.
//!
//! The points: `modbus-poll` (a Modbus link, before each poll: a panic there is a driver
//! panic, a sleep a bus stuck in a blocking call) and `publish-record` (the MQTT
//! publisher, before each queued record it hands to the client: a panic there is a core
//! task panic).

/// Marks a fault-injection point named `$name` (see the module documentation).
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        ::fail::fail_point!($name);
    };
}

/// Arms the points `FAILPOINTS` names, for as long as the returned guard lives (the whole
/// run). A malformed `FAILPOINTS` is reported and arms nothing.
#[cfg(feature = "failpoints")]
pub fn arm() -> Option<fail::FailScenario<'static>> {
    std::env::var_os("FAILPOINTS")?;
    match std::panic::catch_unwind(fail::FailScenario::setup) {
        Ok(scenario) => {
            tracing::warn!("fault-injection points armed from FAILPOINTS (a test build)");
            Some(scenario)
        }
        Err(_) => {
            tracing::error!("FAILPOINTS is malformed; no fault-injection point armed");
            None
        }
    }
}
