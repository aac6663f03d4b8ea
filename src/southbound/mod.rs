//! Southbound drivers: one task per connection or bus, talking to the equipment.
//!
//! Every driver task owns its connection; reads (polls) and writes (commands) go through
//! it, never in parallel. Commands reach a driver as [`WriteRequest`]s on a bounded inbox
//! and run between two poll transactions. Every Modbus link and serial bus orders its
//! devices with the same pure [`schedule::Schedule`].

pub mod health;
pub mod lora;
pub mod modbus;
pub mod schedule;
pub mod serial;

use crate::model::Value;
use tokio::sync::oneshot;

/// Capacity of a driver's command inbox.
pub const INBOX_CAPACITY: usize = 16;

/// Validated writes for one device, in the order given by the command.
#[derive(Debug)]
pub struct WriteRequest {
    /// Index of the device within its driver task.
    pub device: usize,
    /// (point index in the profile, engineering value: scale not yet inverted)
    pub writes: Vec<(usize, Value)>,
    /// The command's id (LoRa drivers report `sent`/`expired` later, SPEC §8).
    pub id: Option<String>,
    /// The command's `expires`, wall-clock ms (LoRa downlinks wait for an uplink).
    pub expires_ms: Option<u64>,
    pub reply: oneshot::Sender<WriteOutcome>,
}

/// What a driver did with a [`WriteRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// On success the read-back values of the written points; on failure the points
    /// applied before it (as written).
    pub points: Vec<(usize, Value)>,
    pub error: Option<String>,
}
