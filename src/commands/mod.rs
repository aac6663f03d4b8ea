//! Commands from the control room (SPEC §5 `cmd`, `cmd/result`; §8 "Commands").
//!
//! The MQTT session hands every `P/G/D/cmd` payload to this task. Each one is answered
//! exactly once on `P/G/D/cmd/result` through the buffer, good or bad. Checks run before
//! anything touches a device: payload shape, known device, duplicate id, expiry, the
//! per-device rate limit, device online, and every point (all or nothing). Valid writes
//! go to the owning driver's bounded inbox and run between its polls; the driver reads
//! the points back and the result carries the read-back values.
//!
//! Offline delivery: the session is persistent (`clean_session = false`, stable client
//! id), so the broker keeps QoS 1 commands published while the gateway was away and
//! delivers them on reconnect; `expires` protects against stale ones. A retained command
//! that the broker replays on (re)subscribe (retain flag set) is refused: it would
//! otherwise be re-applied after every reconnect. Ids are remembered across restarts.

pub mod dedup;
pub mod intake;
pub mod refusal;
pub mod scheduled;
pub mod validate;

use crate::model::LinkState;
use crate::model::command::{CmdResult, Refusal, WriteOutcome, WriteRequest};
use crate::model::now_ms;
use crate::ops::bucket::TokenBucket;
use crate::ops::counters::Counters;
use crate::pipeline::{Input, Route};
use dedup::Dedup;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
pub use intake::{INPUT_CAPACITY, IntakeRx, IntakeTx, MAX_COMMAND_BYTES};
use refusal::{Refusals, Verdict};
use scheduled::{CommandsLink, Override, ScheduledWrite};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Commands per second accepted per device (burst of the same size).
pub const RATE_PER_DEVICE: f64 = 5.0;
/// How long a driver may take to run a command (it may be mid-poll on a slow bus).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// OCPP chargers get 30 s per call (SPEC §9) and a multi-point command makes several:
/// the driver reports "charger did not answer" itself, this only bounds a stuck driver.
pub const OCPP_WRITE_TIMEOUT: Duration = Duration::from_secs(200);

/// A command as received.
#[derive(Debug)]
pub struct CommandIn {
    /// The device named in the topic.
    pub device: String,
    pub payload: Vec<u8>,
    pub retained: bool,
}

/// The current command routes; replaced as a whole on reload.
pub type Routes = tokio::sync::watch::Receiver<Arc<HashMap<String, Route>>>;

pub struct Commands {
    routes: Routes,
    dedup: Dedup,
    buckets: HashMap<String, TokenBucket>,
    refusals: Refusals,
    counters: Arc<Counters>,
    out: mpsc::Sender<Input>,
    /// Device and id of every accepted write not answered yet, by ticket: at a stop each
    /// gets its `ok:false` "stopping" result (SPEC §5: every command is answered).
    running: HashMap<u64, (String, Option<String>)>,
    next_ticket: u64,
    /// The lighting schedules' writes in, override notices out (SPEC §10).
    schedule: Option<CommandsLink>,
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, CmdResult)> + Send>>;

impl Commands {
    pub fn new(
        routes: Routes,
        dedup: Dedup,
        counters: Arc<Counters>,
        out: mpsc::Sender<Input>,
    ) -> Commands {
        Commands {
            routes,
            dedup,
            buckets: HashMap::new(),
            refusals: Refusals::default(),
            counters,
            out,
            running: HashMap::new(),
            next_ticket: 0,
            schedule: None,
        }
    }

    /// Also runs the writes of the lighting schedules and reports overrides to them.
    pub fn with_schedule(mut self, link: CommandsLink) -> Commands {
        self.schedule = Some(link);
        self
    }

    /// Runs until `cancel` or until the session closes the channel. Writes still running
    /// then get an `ok:false` result with [`Refusal::Stopping`], sent to the pipeline before
    /// this returns (so before the final flush of the queue).
    pub async fn run(mut self, mut rx: IntakeRx, cancel: CancellationToken) {
        let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
        let mut scheduled = self
            .schedule
            .as_mut()
            .map(|l| std::mem::replace(&mut l.writes, mpsc::channel(1).1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(done) = pending.next(), if !pending.is_empty() => self.finish(done).await,
                w = recv_opt(&mut scheduled) => match w {
                    Some(w) => match self.accept_scheduled(w) {
                        Ok(fut) => pending.push(fut),
                        Err(result) => self.publish(*result).await,
                    },
                    None => scheduled = None,
                },
                msg = rx.recv() => match msg {
                    None => break,
                    Some(c) => {
                        if let Some(p) = self.accept(c) {
                            match p {
                                Ok(fut) => pending.push(fut),
                                Err(result) => self.refuse(result).await,
                            }
                        }
                    }
                },
            }
        }
        // Results that are already in win over "stopping".
        while let Some(Some(done)) = pending.next().now_or_never() {
            self.finish(done).await;
        }
        drop(pending);
        let mut left: Vec<_> = std::mem::take(&mut self.running).into_iter().collect();
        left.sort_unstable_by_key(|(ticket, _)| *ticket);
        for (_, (device, id)) in left {
            tracing::warn!(device_id = %device, id = ?id, "command still running at stop: answered as failed");
            let _ = self.out.send(Input::CmdResult(stopping(device, id))).await;
        }
    }

    async fn finish(&mut self, (ticket, r): (u64, CmdResult)) {
        self.running.remove(&ticket);
        self.publish(r).await;
    }

    async fn publish(&self, r: CmdResult) {
        if r.source.is_some() {
            // A program's step writes every lamp at once: the scheduler logs per program.
            tracing::debug!(device_id = %r.device, id = ?r.id, ok = r.ok, error = ?r.error, "scheduled write done");
        } else if r.ok {
            tracing::info!(device_id = %r.device, id = ?r.id, "command done");
        } else {
            let (error, code) = r
                .error
                .as_ref()
                .map_or((String::new(), ""), |e| (e.to_string(), e.code()));
            tracing::info!(device_id = %r.device, id = ?r.id, %error, code, "command refused or failed");
        }
        let _ = self.out.send(Input::CmdResult(r)).await;
    }

    /// A refused command: counted always, answered within the per-topic refusal rate.
    async fn refuse(&mut self, r: CmdResult) {
        Counters::inc(&self.counters.command_rejected);
        let known = self.routes.borrow().contains_key(&r.device);
        match self.refusals.judge(&r.device, known, Instant::now()) {
            Verdict::Answer => self.publish(r).await,
            Verdict::StartSilence => tracing::warn!(
                device_id = %r.device,
                code = r.error.as_ref().map_or("", |e| e.code()),
                "commands refused too often on this topic: further refusals get no result (counted in command_rejected)"
            ),
            Verdict::Silent => {}
        }
    }

    /// Validates a command; returns either the pending write or an immediate result.
    fn accept(&mut self, c: CommandIn) -> Option<Result<Pending, CmdResult>> {
        let now = now_ms();
        let fail = |device: &str, id: Option<String>, error: Refusal| {
            Some(Err(CmdResult {
                device: device.to_string(),
                id,
                ok: false,
                points: vec![],
                error: Some(error),
                status: None,
                source: None,
            }))
        };
        if c.payload.len() > MAX_COMMAND_BYTES {
            return fail(&c.device, None, Refusal::TooLarge(MAX_COMMAND_BYTES));
        }
        let cmd = match validate::parse(&c.payload) {
            Ok(cmd) => cmd,
            Err(r) => return fail(&c.device, r.id, r.error),
        };
        let id = Some(cmd.id.clone());
        let Some(route) = self.routes.borrow().get(&c.device).cloned() else {
            return fail(&c.device, id, Refusal::UnknownDevice);
        };
        if self.dedup.is_duplicate(&c.device, &cmd.id, now) {
            return fail(&c.device, id, Refusal::Duplicate(cmd.id));
        }
        if c.retained {
            return fail(&c.device, id, Refusal::Retained);
        }
        if let Some(exp) = cmd.expires_ms
            && exp <= now
        {
            let e = "command expired before it could run".to_string();
            return fail(&c.device, id, Refusal::Expired(e));
        }
        if cmd.resume_schedule {
            self.dedup.record(&c.device, &cmd.id, now);
            self.notify(Override::Resume {
                device: c.device.clone(),
            });
            let r = CmdResult {
                device: c.device.clone(),
                id,
                ok: true,
                points: vec![],
                error: None,
                status: None,
                source: None,
            };
            let ticket = self.ticket(&c.device, &r.id);
            return Some(Ok(Box::pin(async move { (ticket, r) })));
        }
        if !self.take_token(&c.device) {
            return fail(&c.device, id, Refusal::RateLimited(RATE_PER_DEVICE));
        }
        let writes = match validate::validate(&route.info.profile, &cmd.points) {
            Ok(w) => w,
            Err(e) => return fail(&c.device, id, e),
        };
        if route.info.link.get() == LinkState::Offline {
            return fail(
                &c.device,
                id,
                Refusal::DeviceOffline("device offline".into()),
            );
        }
        let names: Vec<String> = cmd.points.iter().map(|(n, _)| n.clone()).collect();
        let pending =
            match self.dispatch(&c.device, &route, writes, id.clone(), cmd.expires_ms, None) {
                Ok(p) => p,
                Err((e, _)) => return fail(&c.device, id, e),
            };
        // Recorded only once accepted: refused ids cost no memory and no store writes.
        self.dedup.record(&c.device, &cmd.id, now);
        self.notify(Override::Points {
            device: c.device.clone(),
            points: names,
            hold_until_ms: cmd.hold_until_ms,
        });
        Some(Ok(pending))
    }

    /// A lighting program's write: the checks of a command that apply to it (known
    /// device, every point, online, room in the inbox); no dedup, expiry or rate limit.
    fn accept_scheduled(&mut self, w: ScheduledWrite) -> Result<Pending, Box<CmdResult>> {
        let ScheduledWrite {
            device,
            id,
            points,
            reply,
        } = w;
        let route = self.routes.borrow().get(&device).cloned();
        let checked = match route {
            None => Err(Refusal::UnknownDevice),
            Some(route) => match validate::validate(&route.info.profile, &points) {
                Err(e) => Err(e),
                Ok(_) if route.info.link.get() == LinkState::Offline => {
                    Err(Refusal::DeviceOffline("device offline".into()))
                }
                Ok(writes) => self
                    .dispatch(&device, &route, writes, Some(id.clone()), None, Some(reply))
                    .map_err(|(e, reply)| {
                        let _ = reply.map(|r| r.send(false));
                        e
                    }),
            },
        };
        checked.map_err(|error| {
            Box::new(CmdResult {
                device,
                id: Some(id),
                ok: false,
                points: vec![],
                error: Some(error),
                status: None,
                source: Some("schedule"),
            })
        })
    }

    /// Tells the scheduler (if any) about an override; never waits: a full channel
    /// drops the notice (the next reassert then puts the step back).
    fn notify(&self, o: Override) {
        if let Some(l) = &self.schedule
            && l.overrides.try_send(o).is_err()
        {
            tracing::warn!("schedule override notice dropped: the scheduler is behind");
        }
    }

    fn ticket(&mut self, device: &str, id: &Option<String>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.running
            .insert(ticket, (device.to_string(), id.clone()));
        ticket
    }

    /// Hands validated writes to the device's driver; the pending result. `reply` (the
    /// scheduler's) learns whether the write succeeded; it comes back with the error when
    /// the inbox is full.
    #[allow(clippy::type_complexity)]
    fn dispatch(
        &mut self,
        device: &str,
        route: &Route,
        writes: Vec<(usize, crate::model::Value)>,
        id: Option<String>,
        expires_ms: Option<u64>,
        reply: Option<oneshot::Sender<bool>>,
    ) -> Result<Pending, (Refusal, Option<oneshot::Sender<bool>>)> {
        let source = reply.is_some().then_some("schedule");
        let (tx, rx) = oneshot::channel();
        let req = Box::new(WriteRequest {
            device: route.index,
            writes,
            id: id.clone(),
            expires_ms,
            reply: tx,
        });
        if route.inbox.try_send(req).is_err() {
            let e = "device busy: too many commands waiting".to_string();
            return Err((Refusal::Busy(e), reply));
        }
        let device = device.to_string();
        let ticket = self.ticket(&device, &id);
        let info = route.info.clone();
        let limit = if info.profile.protocol == crate::profile::Protocol::Ocpp {
            OCPP_WRITE_TIMEOUT
        } else if let Some(snmp) = &info.profile.snmp {
            // A power cycle waits `cycle_off_s` between its two SETs.
            WRITE_TIMEOUT + Duration::from_secs(snmp.cycle_off_s)
        } else {
            WRITE_TIMEOUT
        };
        Ok(Box::pin(async move {
            let outcome = match tokio::time::timeout(limit, rx).await {
                Ok(Ok(o)) => o,
                // The driver went away (the stop, or a reload of it) before answering: the
                // same answer as a write cut by the stop, whichever of the two is seen first.
                Ok(Err(_)) => WriteOutcome::refused(Refusal::Stopping),
                Err(_) => WriteOutcome::refused(Refusal::Timeout(format!(
                    "no answer from the driver within {} s",
                    limit.as_secs()
                ))),
            };
            let points = outcome
                .points
                .into_iter()
                .filter_map(|(i, v)| info.profile.points.get(i).map(|p| (p.name.clone(), v)))
                .collect();
            let ok = outcome.error.is_none();
            let lora = info.profile.protocol == crate::profile::Protocol::Lora;
            let result = CmdResult {
                device,
                id,
                ok,
                points,
                error: outcome.error,
                status: (ok && lora).then(|| "queued".to_string()),
                source,
            };
            if let Some(reply) = reply {
                let _ = reply.send(ok);
            }
            (ticket, result)
        }))
    }

    fn take_token(&mut self, device: &str) -> bool {
        let now = Instant::now();
        self.buckets
            .entry(device.to_string())
            .or_insert_with(|| TokenBucket::new(RATE_PER_DEVICE, RATE_PER_DEVICE, now))
            .take(now)
            .is_ok()
    }
}

/// The result of a write the stop interrupted.
fn stopping(device: String, id: Option<String>) -> CmdResult {
    CmdResult {
        device,
        id,
        ok: false,
        points: vec![],
        error: Some(Refusal::Stopping),
        status: None,
        source: None,
    }
}

/// The next scheduled write, or never when there is no scheduler.
async fn recv_opt(rx: &mut Option<mpsc::Receiver<ScheduledWrite>>) -> Option<ScheduledWrite> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
