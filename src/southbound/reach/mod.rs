//! Reachability (SPEC §11): `reach = { icmp = "HOST" }` or `reach = { tcp = "HOST:PORT" }`
//! on any device adds the points `reachable` and `rtt` (ms, absent when unreachable),
//! checked every `poll_ms`. A device with `reach` and no transport (a `protocol =
//! "reach"` profile) is online while reachable and offline after 3 failed checks
//! (reason `unreachable`); on other devices the transport's driver owns the state.
//!
//! One task checks every device with `reach`; the checks due together run concurrently
//! (each bounded by [`CHECK_TIMEOUT`]), so a dead host never delays the others. There is
//! no shared line to protect, so a failing host keeps its grid (no backoff).

pub mod probe;

use crate::config::snmp::ReachCfg;
use crate::model::{Value, now_ms};
use crate::ops::counters::Counters;
use crate::ops::failure_log::{FailureLog, LogAction};
use crate::ops::notify::{BEAT_EVERY, Heartbeat};
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::health::Health;
use crate::southbound::schedule::Schedule;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest wait for one answer (less when `poll_ms` is shorter: half of it).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The offline reason of a reach-only device.
pub const UNREACHABLE: &str = "unreachable";

/// One device checked for reachability.
#[derive(Debug, Clone)]
pub struct ReachDevice {
    pub info: Arc<DeviceInfo>,
    pub target: ReachCfg,
    pub poll: Duration,
    /// No other transport: its online state is this task's.
    pub alone: bool,
}

impl ReachDevice {
    fn points(&self) -> Option<(usize, usize)> {
        let p = &self.info.profile;
        Some((p.point("reachable")?.0, p.point("rtt")?.0))
    }
}

struct State {
    health: Health,
    log: FailureLog,
}

/// Starts the task checking `devices`; it takes no commands (reach points are read-only),
/// `inbox` is drained so a stray command gets an answer.
pub fn spawn(
    devices: Vec<ReachDevice>,
    mut inbox: crate::model::command::Inbox,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    hb: Option<Heartbeat>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let polls: Vec<Duration> = devices.iter().map(|d| d.poll).collect();
        let mut schedule = Schedule::new(&polls, Instant::now());
        let mut states: Vec<State> = devices
            .iter()
            .map(|_| State {
                health: Health::default(),
                log: FailureLog::default(),
            })
            .collect();
        let mut seq: u16 = 0;
        tracing::info!(devices = devices.len(), "reachability checks started");
        while let Some((_, deadline)) = schedule.next() {
            if let Some(hb) = &hb {
                hb.beat();
            }
            let wake = deadline.min(Instant::now() + BEAT_EVERY);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(req) = inbox.recv() => {
                    let _ = req.reply.send(crate::model::command::WriteOutcome {
                        points: vec![],
                        error: Some(crate::model::command::Refusal::Unsupported(
                            "reachable and rtt are read-only".into(),
                        )),
                    });
                    continue;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now < deadline {
                continue;
            }
            let due = schedule.due(now);
            let mut checks: FuturesUnordered<_> = due
                .iter()
                .map(|&i| {
                    seq = seq.wrapping_add(1);
                    let d = &devices[i];
                    let timeout = CHECK_TIMEOUT.min(d.poll / 2).max(Duration::from_millis(10));
                    let (target, s) = (d.target.clone(), seq);
                    async move {
                        let r = match &target {
                            ReachCfg::Icmp(host) => probe::icmp(host, s, timeout).await,
                            ReachCfg::Tcp(addr) => probe::tcp(addr, timeout).await,
                        };
                        (i, r)
                    }
                })
                .collect();
            let mut out = Vec::new();
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = checks.next() => n,
                };
                let Some((i, r)) = next else { break };
                report(&devices[i], &mut states[i], r, &counters, &mut out);
                schedule.done(i, now, Instant::now(), true);
            }
            for m in out {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = tx.send(m) => if r.is_err() { return },
                }
            }
        }
        tracing::info!("reachability checks stopped");
    })
}

/// The points of one check, and the online state of a reach-only device.
fn report(
    d: &ReachDevice,
    st: &mut State,
    r: Result<Duration, probe::ReachError>,
    counters: &Counters,
    out: &mut Vec<Input>,
) {
    let Some((reachable, rtt)) = d.points() else {
        return;
    };
    let values = match &r {
        Ok(t) => {
            let ms = (t.as_secs_f64() * 100_000.0).round() / 100.0;
            vec![(reachable, Value::Bool(true)), (rtt, Value::Float(ms))]
        }
        Err(_) => vec![(reachable, Value::Bool(false))],
    };
    match (&r, d.alone) {
        (Ok(_), true) => {
            st.health.good(&d.info, "reach", values, out);
        }
        (Err(e), true) => {
            Counters::inc(&counters.reach_failed);
            tracing::debug!(device_id = %d.info.id, error = %e, "reach check failed");
            st.health.bad(&d.info, "reach", &UNREACHABLE, out);
            push(d, values, out);
        }
        (Ok(_), false) => {
            if let LogAction::Recovered { count } = st.log.success() {
                tracing::info!(device_id = %d.info.id, failures = count, "reachable again");
            }
            push(d, values, out);
        }
        (Err(e), false) => {
            Counters::inc(&counters.reach_failed);
            st.log.on_failure(
                std::time::Instant::now(),
                || tracing::warn!(device_id = %d.info.id, error = %e, "not reachable"),
                |count| tracing::warn!(device_id = %d.info.id, error = %e, failures = count, "still not reachable"),
            );
            push(d, values, out);
        }
    }
}

fn push(d: &ReachDevice, values: Vec<(usize, Value)>, out: &mut Vec<Input>) {
    out.push(Input::Reading {
        device: d.info.clone(),
        values,
        at_ms: now_ms(),
        force: Vec::new(),
    });
}
