//! Commands and their answers as the layers pass them: the validated write a driver
//! runs ([`WriteRequest`]), what it did ([`WriteOutcome`]) and the result published on
//! `cmd/result` ([`CmdResult`]).

use super::Value;
use tokio::sync::oneshot;

/// The answer to one command, published on `cmd/result`.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdResult {
    pub device: String,
    pub id: Option<String>,
    pub ok: bool,
    pub points: Vec<(String, Value)>,
    pub error: Option<String>,
    /// LoRa: `queued`, then `sent`, `expired` or `failed` (SPEC §8 "LoRa commands").
    pub status: Option<String>,
    /// `schedule` for the writes of a lighting program (SPEC §10); None for the control
    /// room's commands.
    pub source: Option<&'static str>,
}

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
