//! The task that owns one SNMP agent and every device read through it (SPEC §11).
//!
//! Devices are ordered by the shared [`Schedule`]; when one falls due, every device due
//! at that moment is read in the same cycle: their OIDs go into GETs of up to `max_oids`
//! each (one GET per poll when they fit). A timeout or an authentication failure ends the
//! cycle for every device not yet read (the agent is silent or refuses us: asking again at
//! once would only stall); any other failure fails the devices of that request only.
//! `noSuchObject`/`noSuchInstance` leave the point out (`snmp_no_such`, logged once per
//! point while it lasts); the device's other points are published. Commands run between
//! two cycles (`write.rs`); the off time of a power cycle does not stop polling.

use super::client::{Session, SnmpError};
use super::value::{Read, decode};
use super::write::PendingCycle;
use super::{SnmpAgent, SnmpDevice};
use crate::model::Value;
use crate::model::command::WriteRequest;
use crate::ops::counters::Counters;
use crate::ops::notify::{BEAT_EVERY, Heartbeat};
use crate::pipeline::Input;
use crate::southbound::health::Health;
use crate::southbound::schedule::{OverrunLog, Schedule};
use async_snmp::{Oid, Value as Snmp, ValueKind};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(super) struct DevState {
    pub health: Health,
    /// Per point: a `noSuch*` or a value of the wrong type was logged and not yet cleared.
    pub logged: Vec<bool>,
    /// Per point: the SNMP type the agent last reported (SETs are written in it).
    pub kinds: Vec<Option<ValueKind>>,
}

pub(super) struct Task {
    pub agent: SnmpAgent,
    pub session: Option<Session>,
    pub states: Vec<DevState>,
    schedule: Schedule,
    overruns: OverrunLog,
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
                health: Health::default(),
                logged: vec![false; d.oids.len()],
                kinds: vec![None; d.oids.len()],
            })
            .collect();
        let polls: Vec<_> = agent.devices.iter().map(|d| d.poll).collect();
        Task {
            schedule: Schedule::new(&polls, Instant::now()),
            overruns: OverrunLog::default(),
            agent,
            session: None,
            states,
            counters,
            out: Vec::new(),
            cycles: Vec::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut inbox: mpsc::Receiver<WriteRequest>,
        tx: mpsc::Sender<Input>,
        cancel: CancellationToken,
        hb: Option<Heartbeat>,
    ) {
        tracing::info!(bus_id = %self.agent.id, address = %self.agent.cfg.address, devices = self.agent.devices.len(), "snmp agent started");
        while let Some((_, deadline)) = self.schedule.next() {
            if let Some(hb) = &hb {
                hb.beat();
            }
            let cycle_at = self.cycles.iter().map(|c| c.at).min();
            let wake = deadline
                .min(cycle_at.unwrap_or(deadline))
                .min(Instant::now() + BEAT_EVERY);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(req) = inbox.recv() => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = self.run_write(req) => {}
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = self.finish_cycles(false) => {}
                    }
                    if Instant::now() >= deadline {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = self.poll_due() => {}
                        }
                    }
                }
            }
            for m in std::mem::take(&mut self.out) {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = tx.send(m) => if r.is_err() { return },
                }
            }
        }
        // A port switched off for a power cycle is never left off by a stop or reload.
        self.finish_cycles(true).await;
        tracing::info!(bus_id = %self.agent.id, "snmp agent stopped");
    }

    /// The session, opened on first use and after a failure to open.
    pub(super) async fn session(&mut self) -> Result<&Session, SnmpError> {
        if self.session.is_none() {
            self.session = Some(Session::open(&self.agent.cfg).await?);
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

    /// One poll cycle: every device due now, read together.
    async fn poll_due(&mut self) {
        let started = Instant::now();
        let due = self.schedule.due(started);
        let wanted = self.wanted(&due);
        let read = self.read(&wanted).await;
        let now = Instant::now();
        for &d in &due {
            let result = self.decode_device(d, &read);
            let ok = result.is_ok();
            let info = self.agent.devices[d].info.clone();
            match result {
                Ok(values) => {
                    self.states[d]
                        .health
                        .good(&info, &self.agent.id, values, &mut self.out);
                }
                Err(e) => {
                    self.states[d]
                        .health
                        .bad(&info, &self.agent.id, &e, &mut self.out);
                }
            }
            let took = now.duration_since(started);
            self.counters.timings.poll(&self.agent.id, took);
            let overruns = self.schedule.done(d, started, now, ok);
            self.overruns
                .record(overruns, now, &self.agent.id, &info.id, &self.counters);
        }
    }
}
