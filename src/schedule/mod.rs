//! Lighting schedules run by the gateway (SPEC §10): the cabinet as an astronomical
//! time switch that keeps the lamps on their dimming program when the control room is
//! unreachable.
//!
//! - `plan`: the sans-IO core (configuration, date, instant → current step, next step
//!   instant, each day's steps); sun times from `solar-positioning` (SPA), zones from the tz database.
//! - `writes`: what to write to one device for a step (pure: points whose latest reading
//!   already equals the step's value are skipped).
//! - `clock`: whether the clock is trusted (`adjtimex`, `STA_UNSYNC`).
//! - `task`: the I/O part. It sleeps until the next step instant, override end or
//!   reassert, whichever is first, and never polls the clock; writes go through the
//!   command task (`commands::scheduled`) like a control-room command.
//! - `shared`: the retained `P/G/schedule` payload, the status view and the metrics.
//! - `check`: the configuration checks that need the profiles; `preview`: `polegate
//!   schedule`.

pub mod check;
pub mod clock;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod preview;
pub mod shared;
pub mod task;
pub mod writes;

pub use shared::{ScheduleStatus, Shared};
pub use task::Scheduler;
