//! Southbound drivers: one task per connection or bus, talking to the equipment.
//!
//! Every driver task owns its connection; reads (polls) and writes (commands) go through
//! it, never in parallel. Commands reach a driver as
//! [`WriteRequest`](crate::model::command::WriteRequest)s on a bounded inbox
//! and run between two poll transactions. Every Modbus link and serial bus is the same
//! [`bus`] task (schedule, inbox, heartbeat, liveness) with its protocol plugged in, and
//! orders its devices with the same pure [`schedule::Schedule`].

pub mod bus;
pub mod health;
pub mod lora;
pub mod modbus;
pub mod ocpp;
pub mod reach;
pub mod schedule;
pub mod serial;
pub mod serial_port;
pub mod snmp;
pub mod stored_state;

/// Capacity of a driver's command inbox.
pub const INBOX_CAPACITY: usize = 16;

/// What one incarnation of a driver (the LoRa source, the OCPP listener, a serial bus, an
/// SNMP agent: [`bus::spawn`]) is wired to.
pub struct Wiring {
    /// Its command inbox.
    pub inbox: crate::model::command::Inbox,
    /// The pipeline's input.
    pub out: tokio::sync::mpsc::Sender<crate::pipeline::Input>,
    pub counters: std::sync::Arc<crate::ops::counters::Counters>,
    pub cancel: tokio_util::sync::CancellationToken,
    /// Beaten on every turn of the driver's main loop (at least every
    /// [`BEAT_EVERY`](crate::ops::notify::BEAT_EVERY)): a stalled listener stops the
    /// watchdog's pings as a stalled bus does.
    pub hb: Option<crate::ops::notify::Heartbeat>,
}
