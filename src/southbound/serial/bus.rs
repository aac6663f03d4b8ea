//! The serial line protocol of the shared [bus task](crate::southbound::bus), which owns
//! one serial line and every device on it (SPEC §3, §8).
//!
//! Devices are polled by the bus task's schedule, as the Modbus links are. A push-only
//! device (no poll requests) occupies no line time, so it stays on its grid even while
//! silent. One request is outstanding at a time; commands run between two poll cycles.
//! Between requests (the bus task's idle time) the line is read, so unsolicited frames (a
//! device pushing an alarm) are decoded too. A frame belongs to the device named by `decode`'s `address` key, else to
//! the device whose request is outstanding, else to the only device on the bus.
//! A script error or runaway script fails that frame's cycle (counted, logged with the
//! device, script file and line), never the bus.

use super::decode::{self, AckError, Decoded};
use super::framing::Framed;
use super::port::{Port, PortError};
use super::{SerialBus, SerialDevice};
use crate::model::command::{Refusal, WriteOutcome, WriteRequest};
use crate::model::{Value, now_ms};
use crate::ops::counters::Counters;
use crate::pipeline::{DeviceInfo, Input};
use crate::profile::SerialSpec;
use crate::script::{Engine, ScriptError};
use crate::southbound::bus::{Idle, LineLog, Polled, Protocol, Reading};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Problems in what a script returns (unknown keys, wrong types) are logged at most this often per device.
const PROBLEM_LOG_EVERY: Duration = Duration::from_secs(300);

/// Why a device's poll cycle or write failed: the offline `reason`, the command's `error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeviceError {
    #[error("script error: {0}")]
    Script(ScriptError),
    /// A push-only device sent nothing for a whole poll interval.
    #[error("no frame from address {address} during the last poll interval")]
    Silent { address: String },
    #[error("no reply to {request} within {ms} ms")]
    NoReply { request: String, ms: u128 },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Ack(#[from] AckError),
}

struct DevState {
    /// A frame was attributed to it since its last cycle (push-only devices).
    heard: bool,
    /// Its last cycle sent nothing (no poll requests): it only pushes frames.
    push_only: bool,
    problem_logged: Option<Instant>,
}

pub(super) struct Task {
    bus: SerialBus,
    engine: Engine,
    port: Port,
    states: Vec<DevState>,
    counters: Arc<Counters>,
    /// Messages for the pipeline, handed to the bus task at the end of its turn.
    out: Vec<Input>,
    bus_log: LineLog,
}

fn spec(d: &SerialDevice) -> &SerialSpec {
    d.spec()
}

impl Task {
    pub(super) fn new(bus: SerialBus, port: Port, counters: Arc<Counters>) -> Task {
        let states = bus
            .devices
            .iter()
            .map(|_| DevState {
                heard: false,
                push_only: false,
                problem_logged: None,
            })
            .collect();
        Task {
            bus_log: LineLog::new(&bus.cfg.id),
            bus,
            engine: Engine::new(),
            port,
            states,
            counters,
            out: Vec::new(),
        }
    }

    fn timeout(&self, d: &SerialDevice) -> Duration {
        Duration::from_millis(
            spec(d)
                .response_timeout_ms
                .unwrap_or(self.bus.cfg.timeout_ms),
        )
    }

    /// Port trouble is a bus problem, logged once (then summarized) with the setting named.
    fn report_port(&mut self) {
        if let Some(e) = self.port.error.take() {
            Counters::inc(&self.counters.serial_port_error);
            self.bus_log.failed(&e);
        } else if self.port.is_open() {
            self.bus_log.working();
        }
    }

    /// Sends device `i`'s poll requests and collects the replies' values.
    async fn poll_cycle(&mut self, i: usize) -> Result<Vec<(usize, Value)>, DeviceError> {
        let dev = &self.bus.devices[i];
        let requests = decode::poll_requests(&self.engine, spec(dev), &dev.address)
            .map_err(|e| self.script_failed(i, e))?;
        self.states[i].push_only = requests.is_empty();
        if requests.is_empty() {
            // Push-only device: alive when it was heard since the last cycle.
            let heard = std::mem::take(&mut self.states[i].heard);
            return if heard {
                Ok(Vec::new())
            } else {
                Err(DeviceError::Silent {
                    address: dev.address.clone(),
                })
            };
        }
        let mut values = Vec::new();
        for req in requests {
            let frame = self.request(i, &req, false).await?;
            let d = self.decode_reply(i, &frame)?;
            values.extend(d.values);
        }
        Ok(values)
    }

    /// Sends one request for device `i` and waits for its reply frame, handing frames of
    /// other devices to them meanwhile. Frames the script ignores are skipped, except
    /// as the reply to a write (`#01 OK` carries no values).
    async fn request(&mut self, i: usize, req: &[u8], write: bool) -> Result<Vec<u8>, DeviceError> {
        for f in self.port.take_pending() {
            self.unsolicited(f);
        }
        self.port.discard_input();
        self.port.send(req).await?;
        let timeout = self.timeout(&self.bus.devices[i]);
        let deadline = Instant::now() + timeout;
        loop {
            match self.port.next_frame(deadline).await {
                None => {
                    Counters::inc(&self.counters.serial_timeout);
                    return Err(match self.port.error.as_ref() {
                        Some(e) => DeviceError::Port(e.clone()),
                        None => DeviceError::NoReply {
                            request: printable(req),
                            ms: timeout.as_millis(),
                        },
                    });
                }
                Some(Framed::Overlong(n)) => self.overlong(n),
                Some(Framed::Frame(f)) => {
                    // Is it someone else's (an unsolicited frame with an address)?
                    let dev = &self.bus.devices[i];
                    match decode::decode(&self.engine, &dev.info.profile, spec(dev), &f) {
                        Ok(Some(d)) if d.address.as_ref().is_some_and(|a| *a != dev.address) => {
                            self.attribute(d);
                        }
                        Ok(None) if !write => {}
                        _ => return Ok(f),
                    }
                }
            }
        }
    }

    fn decode_reply(&mut self, i: usize, frame: &[u8]) -> Result<Decoded, DeviceError> {
        let dev = &self.bus.devices[i];
        match decode::decode(&self.engine, &dev.info.profile, spec(dev), frame) {
            Ok(Some(d)) => {
                self.note_problems(i, &d);
                Ok(d)
            }
            Ok(None) => Ok(Decoded::default()),
            Err(e) => Err(self.script_failed(i, e)),
        }
    }

    fn script_failed(&self, i: usize, e: ScriptError) -> DeviceError {
        Counters::inc(&self.counters.script_error);
        let dev = &self.bus.devices[i];
        tracing::debug!(device_id = %dev.info.id, script = %e.file.display(), line = ?e.line, error = %e.message, "script error");
        DeviceError::Script(e)
    }

    fn note_problems(&mut self, i: usize, d: &Decoded) {
        Counters::add(&self.counters.unknown_enum, d.unknown_enums);
        if d.problems.is_empty() {
            return;
        }
        Counters::add(&self.counters.decode_error, d.problems.len() as u64);
        let st = &mut self.states[i];
        let now = Instant::now();
        if st
            .problem_logged
            .is_none_or(|t| now.duration_since(t) >= PROBLEM_LOG_EVERY)
        {
            st.problem_logged = Some(now);
            let dev = &self.bus.devices[i];
            tracing::warn!(device_id = %dev.info.id, profile = %dev.info.profile.name,
                script = %spec(dev).script.path().display(), problems = ?d.problems,
                "decode returned values that are not points of the profile");
        }
    }

    fn overlong(&mut self, n: usize) {
        Counters::inc(&self.counters.serial_frame_error);
        tracing::debug!(bus_id = %self.bus.cfg.id, bytes = n, "serial noise or overlong frame dropped");
    }

    /// A frame nobody asked for: decode it with each profile on the bus until one names
    /// one of its devices (or the bus has a single device).
    fn unsolicited(&mut self, f: Framed) {
        let frame = match f {
            Framed::Overlong(n) => return self.overlong(n),
            Framed::Frame(f) => f,
        };
        let single = self.bus.devices.len() == 1;
        let mut tried: Vec<&str> = Vec::new();
        for (i, dev) in self.bus.devices.iter().enumerate() {
            let name = dev.info.profile.name.as_str();
            if tried.contains(&name) {
                continue;
            }
            tried.push(name);
            match decode::decode(&self.engine, &dev.info.profile, spec(dev), &frame) {
                Ok(None) => return,
                Ok(Some(d)) if d.address.is_some() || single => {
                    if d.address.is_none() {
                        self.deliver(i, d);
                    } else {
                        self.attribute(d);
                    }
                    return;
                }
                Ok(Some(_)) => {}
                Err(e) if single => {
                    let _ = self.script_failed(i, e);
                    return;
                }
                Err(_) => {}
            }
        }
        Counters::inc(&self.counters.serial_unattributed);
        tracing::debug!(bus_id = %self.bus.cfg.id, frame = %printable(&frame), "frame not attributed to any device");
    }

    /// Delivers a decoded frame with an `address` to the device that has it.
    fn attribute(&mut self, d: Decoded) {
        let addr = d.address.clone().unwrap_or_default();
        match self.bus.devices.iter().position(|x| x.address == addr) {
            Some(i) => self.deliver(i, d),
            None => {
                Counters::inc(&self.counters.serial_unattributed);
                tracing::debug!(bus_id = %self.bus.cfg.id, address = %addr, "frame for an address not configured on this bus");
            }
        }
    }

    fn deliver(&mut self, i: usize, d: Decoded) {
        self.note_problems(i, &d);
        self.states[i].heard = true;
        if !d.values.is_empty() {
            self.out.push(Input::Reading {
                device: self.bus.devices[i].info.clone(),
                values: d.values,
                at_ms: now_ms(),
                force: Vec::new(),
            });
        }
    }

    /// Runs a command's writes in order, then reads the device back.
    async fn run_write(&mut self, req: WriteRequest) {
        let Some(dev) = self.bus.devices.get(req.device) else {
            let _ = req
                .reply
                .send(WriteOutcome::refused(Refusal::UnknownDevice));
            return;
        };
        let i = req.device;
        let info = dev.info.clone();
        let mut applied: Vec<(usize, Value)> = Vec::new();
        for (idx, value) in &req.writes {
            let Some(def) = info.profile.points.get(*idx) else {
                continue;
            };
            if let Err(e) = self.write_one(i, &def.name, value).await {
                let msg = format!("point '{}': {e}", def.name);
                let error = match e {
                    DeviceError::NoReply { .. } | DeviceError::Silent { .. } => {
                        Refusal::Timeout(msg)
                    }
                    DeviceError::Port(_) => Refusal::DeviceOffline(msg),
                    DeviceError::Script(_) | DeviceError::Ack(_) => Refusal::DeviceError(msg),
                };
                tracing::warn!(device_id = %info.id, error = %error, code = error.code(), "command write failed");
                let _ = req.reply.send(WriteOutcome {
                    points: applied,
                    error: Some(error),
                });
                return;
            }
            applied.push((*idx, value.clone()));
        }
        tracing::info!(device_id = %info.id, points = applied.len(), "command written");
        let written: Vec<usize> = applied.iter().map(|(i, _)| *i).collect();
        match self.poll_cycle(i).await {
            Ok(values) => {
                let _ = req.reply.send(WriteOutcome::read_back(&applied, &values));
                if !values.is_empty() {
                    self.out.push(Input::Reading {
                        device: info,
                        values,
                        at_ms: now_ms(),
                        force: written,
                    });
                }
            }
            Err(e) => {
                let _ = req.reply.send(WriteOutcome {
                    points: applied,
                    error: Some(Refusal::DeviceError(format!(
                        "written, but the read-back failed: {e}"
                    ))),
                });
            }
        }
    }

    async fn write_one(&mut self, i: usize, point: &str, value: &Value) -> Result<(), DeviceError> {
        let dev = &self.bus.devices[i];
        let bytes = decode::encode(&self.engine, spec(dev), point, value, &dev.address)
            .map_err(|e| self.script_failed(i, e))?;
        if !spec(dev).expect_reply {
            for f in self.port.take_pending() {
                self.unsolicited(f);
            }
            return Ok(self.port.send(&bytes).await?);
        }
        let reply = self.request(i, &bytes, true).await?;
        let dev = &self.bus.devices[i];
        decode::ack(&self.engine, spec(dev), &reply).map_err(|e| {
            if let AckError::Script(_) = e {
                Counters::inc(&self.counters.script_error);
            }
            DeviceError::Ack(e)
        })
    }
}

impl Protocol for Task {
    type Error = DeviceError;
    type Notes = ();

    fn name(&self) -> &str {
        &self.bus.cfg.id
    }

    fn kind(&self) -> &'static str {
        "serial bus"
    }

    fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)> {
        let devices = self.bus.devices.iter();
        devices.map(|d| (d.info.clone(), d.poll)).collect()
    }

    fn start(&mut self) {
        tracing::debug!(bus_id = %self.bus.cfg.id, port = %self.bus.cfg.port.display(), "opening the serial port");
        let _ = self.port.ensure_open();
        self.report_port();
    }

    async fn poll(&mut self, i: usize) -> Polled<(), DeviceError> {
        let result = self.poll_cycle(i).await.map(Reading::values);
        Polled {
            result,
            used_line: !self.states[i].push_only,
        }
    }

    async fn write(&mut self, req: WriteRequest) {
        self.run_write(req).await
    }

    async fn idle(&mut self, until: Instant) -> Idle {
        match self.port.next_frame(until).await {
            Some(f) => {
                self.unsolicited(f);
                Idle::Handled
            }
            None => Idle::Elapsed,
        }
    }

    fn end_turn(&mut self, out: &mut Vec<Input>) {
        self.report_port();
        out.append(&mut self.out);
    }
}

/// A request or frame for log lines: printable ASCII kept, the rest as `\xNN`.
pub fn printable(b: &[u8]) -> String {
    b.iter()
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .take(120)
        .collect()
}
