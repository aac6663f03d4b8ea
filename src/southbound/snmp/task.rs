//! The protocol of one SNMP agent on the shared bus task (`southbound::bus`): the bus
//! owns the schedule, the inbox, the heartbeat and the devices' liveness; this owns the
//! session with the agent and the reading of its devices (SPEC §11).
//!
//! Batching: when the bus polls a device, every other device of the agent that is due
//! within [`LOOKAHEAD`] (its previous read is a poll period old) and not failing is read
//! in the same GETs, up to `max_oids` OIDs each — with equal poll periods the bus polls
//! them back to back on one grid, so each agent gets one GET per poll cycle. Their values
//! wait for their own turn (at most one poll period). A timeout or an authentication
//! failure ends the reading for every device not yet read (the agent is silent or refuses
//! us: asking again at once would only stall); any other failure fails the devices of that
//! request only. `noSuchObject`/`noSuchInstance` leave the point out (`snmp_no_such`,
//! logged once per point while it lasts); the device's other points are published.
//! Commands run between two polls (`write.rs`); the off time of a power cycle does not
//! stop polling (the bus's idle wait finishes it).

use super::client::{Session, SnmpError};
use super::value::{Read, decode};
use super::{SnmpAgent, SnmpDevice};
use crate::model::Value;
use crate::model::command::{WriteOutcome, WriteRequest};
use crate::ops::counters::Counters;
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::bus::{Idle, LineLog, Polled, Protocol, Reading, Reopen};
use async_snmp::{Oid, Value as Snmp, ValueKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Opening the session again after a failure (the agent's name did not resolve, no
/// socket) waits this long at first, doubling up to [`REOPEN_MAX`].
const REOPEN_MIN: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(60);

/// How early a device is read with another one's request.
pub const LOOKAHEAD: Duration = Duration::from_millis(500);

/// A power cycle whose port is off, waiting for its second SET.
pub(super) struct PendingCycle {
    pub device: usize,
    /// The `power_cycle` point, reported in the result.
    pub point: usize,
    pub at: Instant,
    /// None once the command was answered (switching on failed; retried until it works).
    pub reply: Option<oneshot::Sender<WriteOutcome>>,
    /// Points written before it in the same command.
    pub applied: Vec<(usize, Value)>,
}

/// A reading taken with another device's request, waiting for its own turn.
type Cached = (Instant, Result<Vec<(usize, Value)>, SnmpError>);

pub(super) struct DevState {
    /// Per point: a `noSuch*` or a value of the wrong type was logged and not yet cleared.
    pub logged: Vec<bool>,
    /// Per point: the SNMP type the agent last reported (SETs are written in it).
    pub kinds: Vec<Option<ValueKind>>,
    /// When the bus last polled it, and whether that read failed.
    last: Option<(Instant, bool)>,
    cached: Option<Cached>,
}

pub(super) struct Task {
    pub agent: SnmpAgent,
    pub session: Option<Session>,
    pub states: Vec<DevState>,
    line: LineLog,
    reopen: Reopen,
    /// Why the session could not be opened last time (the error until the next try).
    open_error: Option<SnmpError>,
    pub counters: Arc<Counters>,
    pub out: Vec<Input>,
    /// Power cycles waiting for their second SET.
    pub cycles: Vec<PendingCycle>,
}

impl Task {
    pub(super) fn new(agent: SnmpAgent, counters: Arc<Counters>) -> Task {
        let states = agent
            .devices
            .iter()
            .map(|d| DevState {
                logged: vec![false; d.oids.len()],
                kinds: vec![None; d.oids.len()],
                last: None,
                cached: None,
            })
            .collect();
        Task {
            line: LineLog::new(&agent.id),
            reopen: Reopen::new(REOPEN_MIN, REOPEN_MAX),
            open_error: None,
            agent,
            session: None,
            states,
            counters,
            out: Vec::new(),
            cycles: Vec::new(),
        }
    }

    /// The session, opened on first use and after a failure to open.
    pub(super) async fn session(&mut self) -> Result<&Session, SnmpError> {
        if self.session.is_none() {
            let now = Instant::now();
            if let (Some(_), Some(e)) = (self.reopen.wait(now), &self.open_error) {
                return Err(e.clone());
            }
            match Session::open(&self.agent.cfg).await {
                Ok(s) => {
                    self.line.working();
                    self.reopen.succeeded();
                    self.open_error = None;
                    self.session = Some(s);
                }
                Err(e) => {
                    self.line.failed(&e);
                    self.reopen.failed(now);
                    self.open_error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        self.session.as_ref().ok_or(SnmpError::Timeout)
    }

    /// Counts a failed exchange under its kind.
    pub(super) fn count(&self, e: &SnmpError) {
        let c = &self.counters;
        Counters::inc(match e {
            SnmpError::Timeout => &c.snmp_timeout,
            SnmpError::Auth => &c.snmp_auth_failed,
            SnmpError::Refused { .. } => &c.snmp_refused,
            SnmpError::Other(_) => &c.snmp_error,
        });
    }

    /// GETs `wanted` (device, point, OID) in requests of up to `max_oids`. Per request, its
    /// values or its error; after a timeout or an authentication failure the remaining
    /// requests are not sent and get that error.
    pub(super) async fn read(
        &mut self,
        wanted: &[(usize, usize, Oid)],
    ) -> Vec<(usize, usize, Result<Snmp, SnmpError>)> {
        let mut out = Vec::with_capacity(wanted.len());
        let mut stop: Option<SnmpError> = None;
        for chunk in wanted.chunks(self.agent.cfg.max_oids.max(1)) {
            let r = match &stop {
                Some(e) => Err(e.clone()),
                None => {
                    let oids: Vec<Oid> = chunk.iter().map(|(_, _, o)| o.clone()).collect();
                    let r = match self.session().await {
                        Ok(s) => s.get(&oids).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &r {
                        self.count(e);
                        if matches!(e, SnmpError::Timeout | SnmpError::Auth) {
                            stop = Some(e.clone());
                        }
                    }
                    r
                }
            };
            match r {
                Ok(values) => out.extend(
                    chunk
                        .iter()
                        .zip(values)
                        .map(|((d, p, _), v)| (*d, *p, Ok(v))),
                ),
                Err(e) => out.extend(chunk.iter().map(|(d, p, _)| (*d, *p, Err(e.clone())))),
            }
        }
        out
    }

    /// The (device, point, OID) of every readable point of `devices`.
    pub(super) fn wanted(&self, devices: &[usize]) -> Vec<(usize, usize, Oid)> {
        devices
            .iter()
            .flat_map(|&d| {
                self.agent.devices[d]
                    .oids
                    .iter()
                    .enumerate()
                    .filter_map(move |(p, o)| o.clone().map(|o| (d, p, o)))
            })
            .collect()
    }

    /// Decodes the values read for device `d`: the published ones, or the first error.
    pub(super) fn decode_device(
        &mut self,
        d: usize,
        read: &[(usize, usize, Result<Snmp, SnmpError>)],
    ) -> Result<Vec<(usize, Value)>, SnmpError> {
        let mut values = Vec::new();
        for (_, p, r) in read.iter().filter(|(dd, _, _)| *dd == d) {
            let v = r.as_ref().map_err(Clone::clone)?;
            let dev: &SnmpDevice = &self.agent.devices[d];
            let Some(def) = dev.info.profile.points.get(*p) else {
                continue;
            };
            let state = &mut self.states[d];
            match decode(def, v) {
                Ok(Read::Value(dec)) => {
                    state.kinds[*p] = Some(v.kind());
                    if dec.unknown_enum {
                        Counters::inc(&self.counters.unknown_enum);
                    }
                    if std::mem::take(&mut state.logged[*p]) {
                        tracing::info!(device_id = %dev.info.id, bus_id = %self.agent.id, point = %def.name, "point readable again");
                    }
                    values.push((*p, dec.value));
                }
                Ok(Read::NoSuch) => {
                    Counters::inc(&self.counters.snmp_no_such);
                    if !std::mem::replace(&mut state.logged[*p], true) {
                        tracing::warn!(device_id = %dev.info.id, bus_id = %self.agent.id, point = %def.name, oid = %dev.oids[*p].as_ref().map(|o| o.to_string()).unwrap_or_default(), "the agent has no such object; point left out");
                    }
                }
                Err(e) => {
                    Counters::inc(&self.counters.decode_error);
                    if !std::mem::replace(&mut state.logged[*p], true) {
                        tracing::warn!(device_id = %dev.info.id, bus_id = %self.agent.id, error = %e, "point left out");
                    }
                }
            }
        }
        Ok(values)
    }

    /// Whether device `j` is due within [`LOOKAHEAD`] and was read fine last time.
    fn due_soon(&self, j: usize, now: Instant) -> bool {
        let st = &self.states[j];
        if st.cached.is_some() {
            return false;
        }
        match st.last {
            None => true,
            Some((_, true)) => false,
            Some((t, false)) => now + LOOKAHEAD >= t + self.agent.devices[j].poll,
        }
    }
}

impl Protocol for Task {
    type Error = SnmpError;
    type Notes = ();

    fn name(&self) -> &str {
        &self.agent.id
    }

    fn kind(&self) -> &'static str {
        "snmp agent"
    }

    fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)> {
        self.agent
            .devices
            .iter()
            .map(|d| (d.info.clone(), d.poll))
            .collect()
    }

    async fn poll(&mut self, i: usize) -> Polled<(), SnmpError> {
        let now = Instant::now();
        let poll = self.agent.devices[i].poll;
        let cached = self.states[i].cached.take();
        let result = match cached {
            Some((at, r)) if now.duration_since(at) < poll => r,
            _ => {
                let batch: Vec<usize> = std::iter::once(i)
                    .chain(
                        (0..self.agent.devices.len()).filter(|&j| j != i && self.due_soon(j, now)),
                    )
                    .collect();
                let wanted = self.wanted(&batch);
                let read = self.read(&wanted).await;
                let mut mine = Ok(Vec::new());
                for &j in &batch {
                    let r = self.decode_device(j, &read);
                    if j == i {
                        mine = r;
                    } else {
                        self.states[j].cached = Some((now, r));
                    }
                }
                mine
            }
        };
        self.states[i].last = Some((now, result.is_err()));
        Polled::on_line(result.map(Reading::values))
    }

    async fn write(&mut self, req: WriteRequest) {
        self.run_write(req).await;
    }

    async fn idle(&mut self, until: Instant) -> Idle {
        match self.cycles.iter().map(|c| c.at).min() {
            Some(at) if at < until => {
                tokio::time::sleep_until(at).await;
                self.finish_cycles().await;
                Idle::Handled
            }
            _ => {
                tokio::time::sleep_until(until).await;
                Idle::Elapsed
            }
        }
    }

    fn end_turn(&mut self, out: &mut Vec<Input>) {
        out.append(&mut self.out);
    }
}

impl Drop for Task {
    /// A port switched off for a power cycle is never left off by a stop or a reload:
    /// one bounded exchange per port, detached, switches it back on.
    fn drop(&mut self) {
        let (Some(session), Ok(rt)) = (self.session.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        for c in self.cycles.drain(..) {
            let dev = &self.agent.devices[c.device];
            let Some(oid) = dev.poe.and_then(|p| dev.oids.get(p).cloned().flatten()) else {
                continue;
            };
            let (session, id) = (session.clone(), dev.info.id.clone());
            rt.spawn(async move {
                match session.set(&oid, Snmp::Integer(1)).await {
                    Ok(_) => tracing::info!(device_id = %id, "power cycle cut short by a stop: PoE port switched on again"),
                    Err(e) => tracing::error!(device_id = %id, error = %e, "power cycle cut short by a stop: the PoE port could not be switched on again"),
                }
            });
            if let Some(reply) = c.reply {
                let _ = reply.send(WriteOutcome {
                    points: c.applied,
                    error: Some(crate::model::command::Refusal::Stopping),
                });
            }
        }
    }
}
