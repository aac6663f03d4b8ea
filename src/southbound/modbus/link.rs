//! The Modbus protocol of the shared [bus task](crate::southbound::bus), which owns one
//! Modbus connection or serial line and every device behind it: a Modbus TCP
//! connection, an RTU-over-TCP stream to a serial device server, or an RS-485 port in
//! RTU or ASCII mode. Devices (several unit ids on one address or bus) share it through
//! the bus task's schedule. Exactly one transaction is on the line at a time; commands
//! run between two polls.
//!
//! After a timeout or transport error on Modbus TCP the connection is dropped and
//! reopened with backoff (tokio-modbus would match a late reply to the next request).
//! Serial framings ([`FramedClient`](super::rtu::FramedClient)) keep the port: they
//! drain the line before every request, so a late reply is discarded; they reopen only
//! on an I/O error (a USB adapter unplugged). A port that refuses a setting is a bus
//! error naming the setting, retried with backoff; other links are unaffected.

use super::connect::{ConnectError, Endpoint, connect_with};
use super::fault_counter::FaultCounter;
use super::plan::{self, Block};
use super::read::{Cycle, CycleError, exception_meaning, poll_cycle};
use super::rtu::{LinkClient, Mode, recoverable};
use super::write::{WriteError, write_point};
use crate::config::{BusCfg, Framing};
use crate::model::Value;
use crate::model::command::{Inbox, Refusal, WriteOutcome, WriteRequest};
use crate::model::now_ms;
use crate::ops::counters::{Counters, ModbusFault};
use crate::ops::notify::Heartbeat;
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::bus::{self, LineLog, Polled, Protocol, Reading, Reopen};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::southbound::health::OFFLINE_AFTER_FAILURES;
/// Timeout of one request on a TCP link.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// Reconnect backoff bounds ([`Reopen`]).
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// One device polled on a link.
#[derive(Debug, Clone)]
pub struct PolledDevice {
    pub info: Arc<DeviceInfo>,
    pub unit: u8,
    pub poll: Duration,
    pub blocks: Vec<Block>,
}

impl PolledDevice {
    pub fn new(info: Arc<DeviceInfo>, unit: u8, poll: Duration) -> PolledDevice {
        let blocks = plan::plan(&info.profile.points, plan::DEFAULT_MAX_GAP);
        PolledDevice {
            info,
            unit,
            poll,
            blocks,
        }
    }
}

/// Why a transaction for one device did not run, or failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The transport is down and the backoff does not allow another attempt yet.
    #[error("{last}; next attempt in {wait_ms} ms")]
    Waiting {
        last: Arc<ConnectError>,
        wait_ms: u128,
    },
    #[error(transparent)]
    Connect(Arc<ConnectError>),
    #[error("{source} {place}")]
    Cycle {
        #[source]
        source: CycleError,
        place: Place,
    },
}

/// Where on a link a transaction went, as messages name it.
#[derive(Debug, Clone)]
pub enum Place {
    /// The only device at a TCP address.
    Address(String),
    /// One of several units behind a TCP address.
    Unit { address: String, unit: u8 },
    /// A unit on a serial bus.
    Bus { bus: String, unit: u8 },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Address(a) => write!(f, "at {a}"),
            Place::Unit { address, unit } => write!(f, "at {address} unit {unit}"),
            Place::Bus { bus, unit } => write!(f, "on bus {bus} unit {unit}"),
        }
    }
}

/// A connection or serial line and the devices behind it.
#[derive(Debug, Clone)]
pub struct Link {
    /// What the logs call it: the address or the bus id.
    pub name: String,
    pub endpoint: Endpoint,
    pub devices: Vec<PolledDevice>,
    pub request_timeout: Duration,
    /// Extra attempts of a timed-out cycle before it counts as failed.
    pub retries: u32,
}

impl Link {
    pub fn tcp(address: &str, framing: Framing) -> Link {
        Link {
            name: address.to_string(),
            endpoint: Endpoint::Tcp {
                address: address.to_string(),
                framing,
            },
            devices: Vec::new(),
            request_timeout: REQUEST_TIMEOUT,
            retries: 0,
        }
    }

    pub fn bus(bus: &BusCfg, mode: Mode) -> Link {
        Link {
            name: bus.id.clone(),
            endpoint: Endpoint::Serial {
                bus: bus.clone(),
                mode,
            },
            devices: Vec::new(),
            request_timeout: Duration::from_millis(bus.timeout_ms.max(1)),
            retries: bus.retries,
        }
    }

    /// The counters this link's errors go to, with the link and its devices registered
    /// in the counters' breakdown.
    pub fn fault_counter(&self, counters: Arc<Counters>) -> FaultCounter {
        let devices = self.devices.iter().map(|d| (d.unit, d.info.id.as_str()));
        FaultCounter::new(counters, &self.name, devices)
    }

    /// Our own framing keeps the line usable after a timeout or a bad frame.
    fn framed(&self) -> bool {
        !matches!(
            self.endpoint,
            Endpoint::Tcp {
                framing: Framing::Tcp,
                ..
            }
        )
    }

    fn place(&self, unit: u8) -> Place {
        match &self.endpoint {
            Endpoint::Tcp { .. } if self.devices.len() == 1 => Place::Address(self.name.clone()),
            Endpoint::Tcp { .. } => Place::Unit {
                address: self.name.clone(),
                unit,
            },
            Endpoint::Serial { .. } => Place::Bus {
                bus: self.name.clone(),
                unit,
            },
        }
    }

    fn keeps_connection(&self, e: &CycleError) -> bool {
        self.framed()
            && match e {
                CycleError::Timeout { .. } | CycleError::Short { .. } => true,
                CycleError::Transport { source, .. } => recoverable(source),
            }
    }
}

struct Conn {
    ctx: Option<LinkClient>,
    reopen: Reopen,
    /// Why the last connect failed (repeated to every transaction until the next try).
    down: Option<Arc<ConnectError>>,
    log: LineLog,
}

/// A link as the shared [bus task](crate::southbound::bus) drives it.
struct ModbusBus {
    link: Link,
    conn: Conn,
    faults: FaultCounter,
    /// Readings of the writes, for the pipeline at the end of the turn.
    out: Vec<Input>,
}

impl Protocol for ModbusBus {
    type Error = LinkError;
    /// Exceptions and decode errors of a good cycle.
    type Notes = Cycle;

    fn name(&self) -> &str {
        &self.link.name
    }

    fn kind(&self) -> &'static str {
        "modbus link"
    }

    fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)> {
        let devices = self.link.devices.iter();
        devices.map(|d| (d.info.clone(), d.poll)).collect()
    }

    async fn poll(&mut self, i: usize) -> Polled<Cycle, LinkError> {
        crate::failpoint!("modbus-poll");
        let dev = &self.link.devices[i];
        let mut attempt = 0;
        let result = loop {
            let r = poll_once(&self.link, &mut self.conn, dev, &self.faults).await;
            // Retry only what a retry can fix: a lost or garbled reply.
            if r.is_ok() || self.conn.ctx.is_none() || attempt >= self.link.retries {
                break r;
            }
            attempt += 1;
        };
        Polled::on_line(result.map(|mut cycle| Reading {
            values: std::mem::take(&mut cycle.values),
            notes: cycle,
        }))
    }

    async fn write(&mut self, req: WriteRequest) {
        let msgs = run_write(&self.link, &mut self.conn, req, &self.faults).await;
        self.out.extend(msgs);
    }

    fn came_online(&self, i: usize, cycle: &Cycle) {
        let info = &self.link.devices[i].info;
        let bus = &self.link.name;
        if let Some(e) = cycle.exceptions.first() {
            tracing::warn!(device_id = %info.id, bus_id = %bus, profile = %info.profile.name, table = e.table.as_str(),
                start = e.start, count = e.count, meaning = exception_meaning(e.code),
                "device online but some points answer with an exception");
        }
        if let Some(e) = cycle.decode_errors.first() {
            tracing::warn!(device_id = %info.id, bus_id = %bus, profile = %info.profile.name, error = %e, "point cannot be decoded");
        }
    }

    fn end_turn(&mut self, out: &mut Vec<Input>) {
        out.append(&mut self.out);
    }
}

/// Runs the link until `cancel`. Readings and transitions go to `tx`.
pub async fn run_link(
    link: Link,
    inbox: Inbox,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    run_link_beating(link, inbox, tx, counters, cancel, None).await
}

/// [`run_link`] beating `hb` on every turn of its loop, at least every
/// [`BEAT_EVERY`](crate::ops::notify::BEAT_EVERY) while idle: a link stuck anywhere stops
/// the watchdog pings.
pub async fn run_link_beating(
    link: Link,
    inbox: Inbox,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    hb: Option<Heartbeat>,
) {
    let faults = link.fault_counter(counters.clone());
    let conn = Conn {
        ctx: None,
        reopen: Reopen::new(RECONNECT_MIN, RECONNECT_MAX),
        down: None,
        log: LineLog::new(&link.name),
    };
    let proto = ModbusBus {
        link,
        conn,
        faults,
        out: Vec::new(),
    };
    bus::run(proto, inbox, tx, counters, cancel, hb).await
}

/// Opens the connection if needed (respecting the reconnect backoff).
async fn ensure_connected<'c>(
    link: &Link,
    conn: &'c mut Conn,
    faults: &FaultCounter,
) -> Result<&'c mut LinkClient, LinkError> {
    let ctx = match conn.ctx.take() {
        Some(ctx) => ctx,
        None => {
            if let (Some(last), Some(wait)) = (&conn.down, conn.reopen.wait(Instant::now())) {
                return Err(LinkError::Waiting {
                    last: last.clone(),
                    wait_ms: wait.as_millis(),
                });
            }
            match connect_with(&link.endpoint, faults).await {
                Ok(ctx) => {
                    conn.log.working();
                    conn.reopen.succeeded();
                    conn.down = None;
                    ctx
                }
                Err(e) => {
                    faults.count(ModbusFault::ConnectFailed, None);
                    conn.log.failed(&e);
                    let e = Arc::new(e);
                    conn.reopen.failed(Instant::now());
                    conn.down = Some(e.clone());
                    return Err(LinkError::Connect(e));
                }
            }
        }
    };
    Ok(conn.ctx.insert(ctx))
}

async fn poll_once(
    link: &Link,
    conn: &mut Conn,
    dev: &PolledDevice,
    faults: &FaultCounter,
) -> Result<Cycle, LinkError> {
    let ctx = ensure_connected(link, conn, faults).await?;
    match poll_cycle(
        ctx,
        dev.unit,
        &dev.info.profile,
        &dev.blocks,
        link.request_timeout,
        faults,
    )
    .await
    {
        Ok(c) => Ok(c),
        Err(e) => {
            // Modbus TCP: drop the context, a late reply must never answer the next
            // request. Serial framings drain instead and keep the line.
            if !link.keeps_connection(&e) {
                conn.ctx = None;
            }
            Err(LinkError::Cycle {
                source: e,
                place: link.place(dev.unit),
            })
        }
    }
}

/// Runs a command's writes in order, then reads the device back. Returns the messages
/// for the pipeline (read-back telemetry).
async fn run_write(
    link: &Link,
    conn: &mut Conn,
    req: WriteRequest,
    faults: &FaultCounter,
) -> Vec<Input> {
    let Some(dev) = link.devices.get(req.device) else {
        let _ = req
            .reply
            .send(WriteOutcome::refused(Refusal::UnknownDevice));
        return vec![];
    };
    let info = &dev.info;
    let mut applied = Vec::new();
    let fail = |applied: Vec<(usize, Value)>, error: Refusal| {
        tracing::warn!(device_id = %info.id, error = %error, code = error.code(), "command write failed");
        WriteOutcome {
            points: applied,
            error: Some(error),
        }
    };
    for (idx, value) in &req.writes {
        let Some(def) = info.profile.points.get(*idx) else {
            continue;
        };
        let ctx = match ensure_connected(link, conn, faults).await {
            Ok(c) => c,
            Err(e) => {
                let _ = req
                    .reply
                    .send(fail(applied, Refusal::DeviceOffline(e.to_string())));
                return vec![];
            }
        };
        match write_point(ctx, dev.unit, def, value, link.request_timeout, faults).await {
            Ok(()) => applied.push((*idx, value.clone())),
            Err(e) => {
                if e.fatal() {
                    conn.ctx = None;
                }
                let msg = format!(
                    "point '{}': {e} at {} unit {}",
                    def.name, link.name, dev.unit
                );
                let why = match e {
                    WriteError::Timeout { .. } => Refusal::Timeout(msg),
                    _ => Refusal::DeviceError(msg),
                };
                let _ = req.reply.send(fail(applied, why));
                return vec![];
            }
        }
    }
    tracing::info!(device_id = %info.id, points = applied.len(), "command written");
    let written: Vec<usize> = applied.iter().map(|(i, _)| *i).collect();
    let readback = match ensure_connected(link, conn, faults).await {
        Ok(ctx) => poll_cycle(
            ctx,
            dev.unit,
            &info.profile,
            &dev.blocks,
            link.request_timeout,
            faults,
        )
        .await
        .map_err(|source| LinkError::Cycle {
            source,
            place: link.place(dev.unit),
        }),
        Err(e) => Err(e),
    };
    match readback {
        Ok(cycle) => {
            let points = written
                .iter()
                .filter_map(|i| cycle.values.iter().find(|(j, _)| j == i).cloned())
                .collect();
            let _ = req.reply.send(WriteOutcome {
                points,
                error: None,
            });
            vec![Input::Reading {
                device: info.clone(),
                values: cycle.values,
                at_ms: now_ms(),
                force: written,
            }]
        }
        Err(e) => {
            conn.ctx = None;
            let msg = format!("written, but the read-back failed: {e}");
            let _ = req.reply.send(fail(applied, Refusal::DeviceError(msg)));
            vec![]
        }
    }
}
