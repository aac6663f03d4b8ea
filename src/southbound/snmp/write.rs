//! Commands on SNMP devices (SPEC §11): a SET per written point, in the type the agent
//! reports for it (learnt from polls, else one GET first), then a read-back GET. An
//! agent's refusal is the command's error, named by its SNMP status (`notWritable`).
//!
//! `power_cycle = true` writes `poe_enabled = false`, waits the profile's `cycle_off_s`
//! while the agent's other devices keep being polled, then writes `true`; the command is
//! `ok` once both SETs succeeded. It must be the last point of a command (what follows a
//! pause of seconds would surprise). A stop or reload during the pause switches the port
//! back on at once; a failed switch-on answers the command and is retried every
//! [`SWITCH_ON_RETRY`] until the port is on.

use super::client::SnmpError;
use super::task::{PendingCycle, Task};
use super::value::encode;
use crate::model::command::{Refusal, WriteOutcome, WriteRequest};
use crate::model::{Value, now_ms};
use crate::pipeline::Input;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Why a SET failed: the value (a `Point` problem) or the exchange.
#[derive(Debug)]
enum WriteError {
    Point(String),
    Snmp(SnmpError),
}

impl WriteError {
    /// The command's refusal, its message prefixed with `what`.
    fn about(self, what: &str) -> Refusal {
        match self {
            WriteError::Point(m) => Refusal::WrongType(format!("{what}: {m}")),
            WriteError::Snmp(SnmpError::Timeout) => {
                Refusal::Timeout(format!("{what}: SNMP timeout"))
            }
            WriteError::Snmp(SnmpError::Refused { status }) => {
                Refusal::DeviceError(format!("{what}: the agent refused the SET: {status}"))
            }
            WriteError::Snmp(e) => Refusal::DeviceError(format!("{what}: {e}")),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Point(m) => f.write_str(m),
            WriteError::Snmp(e) => write!(f, "{e}"),
        }
    }
}

/// Between two attempts to switch a port back on after a failed one.
const SWITCH_ON_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

fn fail(reply: oneshot::Sender<WriteOutcome>, points: Vec<(usize, Value)>, error: Refusal) {
    let _ = reply.send(WriteOutcome {
        points,
        error: Some(error),
    });
}

impl Task {
    pub(super) async fn run_write(&mut self, req: WriteRequest) {
        let d = req.device;
        let Some(dev) = self.agent.devices.get(d) else {
            return fail(req.reply, vec![], Refusal::UnknownDevice);
        };
        let info = dev.info.clone();
        let mut applied: Vec<(usize, Value)> = Vec::new();
        let last = req.writes.len().saturating_sub(1);
        for (k, (p, value)) in req.writes.iter().enumerate() {
            let Some(def) = info.profile.points.get(*p) else {
                continue;
            };
            if def.name == "power_cycle" {
                let Some(poe) = self.agent.devices[d].poe else {
                    let e = "power_cycle needs a writable poe_enabled point in the profile";
                    return fail(req.reply, applied, Refusal::Unsupported(e.into()));
                };
                if k != last {
                    let e = "power_cycle must be the last point of a command";
                    return fail(req.reply, applied, Refusal::Malformed(e.into()));
                }
                if *value != Value::Bool(true) {
                    let e = "write power_cycle = true to switch the PoE port off and on";
                    return fail(req.reply, applied, Refusal::OutOfRange(e.into()));
                }
                if let Err(e) = self.set_point(d, poe, &Value::Bool(false)).await {
                    return fail(req.reply, applied, e.about("point 'poe_enabled'"));
                }
                let off = self.agent.devices[d].cycle_off;
                tracing::info!(device_id = %info.id, bus_id = %self.agent.id, off_s = off.as_secs(), "power cycle: PoE port switched off");
                self.cycles.push(PendingCycle {
                    device: d,
                    point: *p,
                    at: Instant::now() + off,
                    reply: Some(req.reply),
                    applied,
                });
                return;
            }
            if let Err(e) = self.set_point(d, *p, value).await {
                let error = e.about(&format!("point '{}'", def.name));
                tracing::warn!(device_id = %info.id, bus_id = %self.agent.id, error = %error, "command write failed");
                return fail(req.reply, applied, error);
            }
            applied.push((*p, value.clone()));
        }
        tracing::info!(device_id = %info.id, bus_id = %self.agent.id, points = applied.len(), "command written");
        self.read_back(d, applied, req.reply).await;
    }

    /// One SET of point `p` of device `d`.
    async fn set_point(&mut self, d: usize, p: usize, value: &Value) -> Result<(), WriteError> {
        let dev = &self.agent.devices[d];
        let (Some(Some(oid)), Some(def)) = (dev.oids.get(p), dev.info.profile.points.get(p)) else {
            return Err(WriteError::Point("has no OID to write".into()));
        };
        let (oid, def) = (oid.clone(), def.clone());
        if self.states[d].kinds[p].is_none() {
            // The type the agent reports for it; a failed GET leaves the natural type.
            let r = self.read(&[(d, p, oid.clone())]).await;
            if let Some((_, _, Ok(v))) = r.first()
                && !matches!(
                    v.kind(),
                    async_snmp::ValueKind::NoSuchObject
                        | async_snmp::ValueKind::NoSuchInstance
                        | async_snmp::ValueKind::EndOfMibView
                )
            {
                self.states[d].kinds[p] = Some(v.kind());
            }
        }
        let v =
            encode(&def, value, self.states[d].kinds[p]).map_err(|e| WriteError::Point(e.what))?;
        let r = match self.session().await {
            Ok(s) => s.set(&oid, v).await,
            Err(e) => Err(e),
        };
        r.map(|_| ()).map_err(|e| {
            self.count(&e);
            WriteError::Snmp(e)
        })
    }

    /// Reads device `d` back after a write: the result carries the read-back values of
    /// the written points (or the written value where none was read), and a telemetry
    /// event reports them whatever the deadband.
    async fn read_back(
        &mut self,
        d: usize,
        applied: Vec<(usize, Value)>,
        reply: oneshot::Sender<WriteOutcome>,
    ) {
        let wanted = self.wanted(&[d]);
        let read = self.read(&wanted).await;
        match self.decode_device(d, &read) {
            Ok(values) => {
                let _ = reply.send(WriteOutcome::read_back(&applied, &values));
                let force = applied.iter().map(|(i, _)| *i).collect();
                if !values.is_empty() {
                    self.out.push(Input::Reading {
                        device: self.agent.devices[d].info.clone(),
                        values,
                        at_ms: now_ms(),
                        force,
                    });
                }
            }
            Err(e) => fail(
                reply,
                applied,
                WriteError::Snmp(e).about("written, but the read-back failed"),
            ),
        }
    }

    /// Switches back on the ports whose off time is over. Cancel-safe (the bus races
    /// its idle wait with the inbox): a cycle leaves the list only once its port is on
    /// again or switching it on failed.
    pub(super) async fn finish_cycles(&mut self) {
        while let Some(k) = self.cycles.iter().position(|c| c.at <= Instant::now()) {
            let (d, at) = (self.cycles[k].device, self.cycles[k].at);
            let Some(poe) = self.agent.devices[d].poe else {
                self.cycles.remove(k);
                continue;
            };
            let info = self.agent.devices[d].info.clone();
            let r = self.set_point(d, poe, &Value::Bool(true)).await;
            let Some(k) = self.cycles.iter().position(|c| c.device == d && c.at == at) else {
                continue;
            };
            let mut c = self.cycles.remove(k);
            match (r, c.reply.take()) {
                (Ok(()), reply) => {
                    tracing::info!(device_id = %info.id, bus_id = %self.agent.id, "power cycle: PoE port switched on again");
                    let mut applied = c.applied;
                    applied.push((c.point, Value::Bool(true)));
                    match reply {
                        Some(reply) => self.read_back(d, applied, reply).await,
                        // Answered already (switching on had failed): report the port.
                        None => self.read_back(d, applied, oneshot::channel().0).await,
                    }
                }
                (Err(e), reply) => {
                    if let Some(reply) = reply {
                        tracing::error!(device_id = %info.id, bus_id = %self.agent.id, error = %e, "power cycle: the PoE port could not be switched on again; retrying");
                        let error = e.about(
                            "point 'poe_enabled': switched off, but switching on failed (retrying)",
                        );
                        fail(reply, c.applied.clone(), error);
                    }
                    // A camera left unpowered is a truck roll: keep trying.
                    c.at = Instant::now() + SWITCH_ON_RETRY;
                    self.cycles.push(c);
                }
            }
        }
    }
}
