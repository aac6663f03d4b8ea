//! Commands and their answers as the layers pass them: the validated write a driver
//! runs ([`WriteRequest`]), what it did ([`WriteOutcome`]), the result published on
//! `cmd/result` ([`CmdResult`]) and why a command got `ok:false` ([`Refusal`]).

use super::Value;
use tokio::sync::{mpsc, oneshot};

/// The answer to one command, published on `cmd/result`.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdResult {
    pub device: String,
    pub id: Option<String>,
    pub ok: bool,
    pub points: Vec<(String, Value)>,
    /// Why `ok` is false: the result's `error` (its message) and `code`.
    pub error: Option<Refusal>,
    /// LoRa: `queued`, then `sent`, `expired` or `failed` (SPEC §8 "LoRa commands").
    pub status: Option<String>,
    /// `schedule` for the writes of a lighting program (SPEC §10); None for the control
    /// room's commands.
    pub source: Option<&'static str>,
}

/// A driver's command inbox. Requests travel boxed: tokio allocates a channel's first
/// block of 32 slots when the channel is made, 32 × 8 bytes boxed against 32 × 80
/// unboxed, and every driver holds two inboxes (its own and its current incarnation's).
pub type Inbox = mpsc::Receiver<Box<WriteRequest>>;
/// The sending side of an [`Inbox`].
pub type InboxSender = mpsc::Sender<Box<WriteRequest>>;

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
    pub error: Option<Refusal>,
}

impl WriteOutcome {
    /// Nothing written, for `why`.
    pub fn refused(why: Refusal) -> WriteOutcome {
        WriteOutcome {
            points: vec![],
            error: Some(why),
        }
    }

    /// Success: each `applied` point as `read` it back after the write; a point not read
    /// back (write-only: play, stop) keeps the value written.
    pub fn read_back(applied: &[(usize, Value)], read: &[(usize, Value)]) -> WriteOutcome {
        let points = applied
            .iter()
            .map(|(w, v)| {
                read.iter()
                    .find(|(j, _)| j == w)
                    .cloned()
                    .unwrap_or((*w, v.clone()))
            })
            .collect();
        WriteOutcome {
            points,
            error: None,
        }
    }
}

/// Why a command got `ok:false`, from whichever check or driver: the message is the
/// result's `error` (for people), [`Refusal::code`] its stable `code` (for the control
/// room's software, SPEC §5; every code is listed in the README).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Not JSON, not an object, no valid `id`, an unknown key, a bad shape.
    #[error("{0}")]
    Malformed(String),
    #[error("command payload too large: at most {0} bytes")]
    TooLarge(usize),
    #[error("unknown device")]
    UnknownDevice,
    #[error("unknown point '{0}'")]
    UnknownPoint(String),
    #[error("point '{0}' is not writable")]
    NotWritable(String),
    /// A value outside the point's `min`/`max`, or one its register cannot hold.
    #[error("{0}")]
    OutOfRange(String),
    /// A value of the wrong JSON type or an unknown enum label.
    #[error("{0}")]
    WrongType(String),
    #[error("duplicate command id '{0}'")]
    Duplicate(String),
    #[error("retained commands are not executed: publish commands without the retain flag")]
    Retained,
    /// Its `expires` passed before it could run (LoRa: before the device's next uplink).
    #[error("{0}")]
    Expired(String),
    #[error("rate limit exceeded: at most {0} commands per second per device")]
    RateLimited(f64),
    /// Too many commands already wait for the device.
    #[error("{0}")]
    Busy(String),
    /// The device (or its connection, its charger) is offline.
    #[error("{0}")]
    DeviceOffline(String),
    /// The device cannot take this command in its present state (no transaction
    /// running, not joined yet).
    #[error("{0}")]
    WrongState(String),
    /// The device's profile or protocol cannot write this (no encoder, no OCPP call).
    #[error("{0}")]
    Unsupported(String),
    /// The device answered with an error, refused, or the read-back failed.
    #[error("{0}")]
    DeviceError(String),
    /// No answer in time (from the device, the charger or the driver).
    #[error("{0}")]
    Timeout(String),
    /// The gateway could not send or keep it (no LoRa gateway, storage failed).
    #[error("{0}")]
    Failed(String),
    /// The daemon stopped while the command was running: its effect is unknown.
    #[error("stopping")]
    Stopping,
    #[error("managed by the upstream CSMS")]
    UpstreamManaged,
}

impl Refusal {
    /// Every code [`Refusal::code`] gives.
    pub const CODES: [&'static str; 20] = [
        "malformed",
        "too_large",
        "unknown_device",
        "unknown_point",
        "not_writable",
        "out_of_range",
        "wrong_type",
        "duplicate",
        "retained",
        "expired",
        "rate_limited",
        "busy",
        "device_offline",
        "wrong_state",
        "unsupported",
        "device_error",
        "timeout",
        "failed",
        "stopping",
        "upstream_managed",
    ];

    /// The stable, snake-case code of the `ok:false` result.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::TooLarge(_) => "too_large",
            Refusal::UnknownDevice => "unknown_device",
            Refusal::UnknownPoint(_) => "unknown_point",
            Refusal::NotWritable(_) => "not_writable",
            Refusal::OutOfRange(_) => "out_of_range",
            Refusal::WrongType(_) => "wrong_type",
            Refusal::Duplicate(_) => "duplicate",
            Refusal::Retained => "retained",
            Refusal::Expired(_) => "expired",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::Busy(_) => "busy",
            Refusal::DeviceOffline(_) => "device_offline",
            Refusal::WrongState(_) => "wrong_state",
            Refusal::Unsupported(_) => "unsupported",
            Refusal::DeviceError(_) => "device_error",
            Refusal::Timeout(_) => "timeout",
            Refusal::Failed(_) => "failed",
            Refusal::Stopping => "stopping",
            Refusal::UpstreamManaged => "upstream_managed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn every_refusal_code_is_listed_and_documented_in_the_readme() {
        let one_of_each = [
            Refusal::Malformed(String::new()),
            Refusal::TooLarge(0),
            Refusal::UnknownDevice,
            Refusal::UnknownPoint(String::new()),
            Refusal::NotWritable(String::new()),
            Refusal::OutOfRange(String::new()),
            Refusal::WrongType(String::new()),
            Refusal::Duplicate(String::new()),
            Refusal::Retained,
            Refusal::Expired(String::new()),
            Refusal::RateLimited(0.0),
            Refusal::Busy(String::new()),
            Refusal::DeviceOffline(String::new()),
            Refusal::WrongState(String::new()),
            Refusal::Unsupported(String::new()),
            Refusal::DeviceError(String::new()),
            Refusal::Timeout(String::new()),
            Refusal::Failed(String::new()),
            Refusal::Stopping,
            Refusal::UpstreamManaged,
        ];
        let codes: Vec<&str> = one_of_each.iter().map(Refusal::code).collect();
        assert_eq!(
            codes,
            Refusal::CODES,
            "CODES lists every code once, in order"
        );
        let readme = include_str!("../../README.md");
        for code in Refusal::CODES {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(
                readme.contains(&format!("`{code}`")),
                "README lists `{code}`"
            );
        }
    }
}
