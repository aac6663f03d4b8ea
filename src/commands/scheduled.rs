//! The command path's side of the lighting schedules (SPEC §10): the writes a program
//! asks for go through the same checks, driver inbox, read-back and `cmd/result` as a
//! control-room command (answered with `"source":"schedule"`), and the control room's
//! commands on scheduled devices are reported back as overrides.

use tokio::sync::{mpsc, oneshot};

/// Writes queued by the scheduler: one step for a few hundred lamps at most.
pub const SCHEDULED_CAPACITY: usize = 1024;
/// Override notices queued for the scheduler.
pub const OVERRIDE_CAPACITY: usize = 256;

/// A program's step for one device.
#[derive(Debug)]
pub struct ScheduledWrite {
    pub device: String,
    /// `schedule:<program>:<step index>`.
    pub id: String,
    /// (point, value) in the step's order.
    pub points: Vec<(String, serde_json::Value)>,
    /// Whether the write succeeded (the scheduler counts it and retries failures).
    pub reply: oneshot::Sender<bool>,
}

/// What a control-room command did to a device's scheduled points.
#[derive(Debug, Clone, PartialEq)]
pub enum Override {
    /// These points were written by the control room (accepted by the driver).
    Points {
        device: String,
        points: Vec<String>,
        /// `hold_until`, wall-clock ms; None: until the program's next step.
        hold_until_ms: Option<u64>,
    },
    /// `resume_schedule`: the device's overrides end now.
    Resume { device: String },
}

/// The scheduler's ends of the two channels.
pub struct ScheduleLink {
    pub writes: mpsc::Sender<ScheduledWrite>,
    pub overrides: mpsc::Receiver<Override>,
}

/// The command task's ends.
pub struct CommandsLink {
    pub writes: mpsc::Receiver<ScheduledWrite>,
    pub overrides: mpsc::Sender<Override>,
}

pub fn channels() -> (ScheduleLink, CommandsLink) {
    let (wtx, wrx) = mpsc::channel(SCHEDULED_CAPACITY);
    let (otx, orx) = mpsc::channel(OVERRIDE_CAPACITY);
    (
        ScheduleLink {
            writes: wtx,
            overrides: orx,
        },
        CommandsLink {
            writes: wrx,
            overrides: otx,
        },
    )
}
