//! The bus task: one loop shared by every polled driver (Modbus links, serial buses, and
//! the next polled protocol). The loop owns what every such driver does the same way:
//!
//! - the devices' earliest-deadline [`Schedule`] (fixed grid, overruns counted and
//!   logged once per episode, offline devices probed at a backed-off rate);
//! - the command inbox: a [`WriteRequest`] runs between two polls, never during one;
//! - the output: every message for the pipeline goes out in order after each turn;
//! - the heartbeat: beaten on every turn, at least every [`BEAT_EVERY`] while idle, so a
//!   bus stuck anywhere stops the watchdog's pings;
//! - the devices' liveness ([`Health`]: online on a good cycle, offline after
//!   [`OFFLINE_AFTER_FAILURES`](crate::southbound::health::OFFLINE_AFTER_FAILURES) bad
//!   ones, one log line per transition) and the poll timings;
//! - for the protocol's connection or port, which it opens itself: when the next
//!   (re)open may be tried ([`Reopen`], the shared [`Backoff`]) and the failure log
//!   ([`LineLog`]: once on failure, summaries, once on recovery).
//!
//! A protocol implements [`Protocol`]: how to poll one device, how to write a command,
//! and optionally how to listen while idle (a serial line decodes unsolicited frames).
//! It counts its own faults (each protocol has its own counters) and keeps its own
//! connection; it never sees the schedule, the inbox or the pipeline channel.
//!
//! A new protocol plugs in like this (a sketch; `Agent` stands for its connection):
//!
//! ```ignore
//! struct SnmpBus { name: String, devices: Vec<(Arc<DeviceInfo>, Duration)>, agent: Agent,
//!                  line: LineLog, out: Vec<Input> }
//!
//! impl Protocol for SnmpBus {
//!     type Error = SnmpError;   // the offline reason and the logged error
//!     type Notes = ();          // nothing more to say when a device comes online
//!     fn name(&self) -> &str { &self.name }
//!     fn kind(&self) -> &'static str { "snmp agent" }
//!     fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)> { self.devices.clone() }
//!     async fn poll(&mut self, i: usize) -> Polled<(), SnmpError> {
//!         Polled::on_line(self.agent.get(&self.devices[i].0).await.map(Reading::values))
//!     }
//!     async fn write(&mut self, req: WriteRequest) {
//!         let outcome = self.agent.set(&req).await;   // then read back, push a reading
//!         let _ = req.reply.send(outcome);
//!     }
//!     fn end_turn(&mut self, out: &mut Vec<Input>) { out.append(&mut self.out) }
//! }
//!
//! let task = tokio::spawn(bus::run(SnmpBus { .. }, inbox, tx, counters, cancel, hb));
//! ```
//!
//! The trait's methods that return futures are declared `-> impl Future + Send` so the
//! task can be spawned; an implementation writes them as `async fn`.

use crate::model::Value;
use crate::model::command::{Inbox, WriteRequest};
use crate::ops::backoff::Backoff;
use crate::ops::counters::Counters;
use crate::ops::failure_log::{FailureLog, LogAction};
use crate::ops::notify::{BEAT_EVERY, Heartbeat};
use crate::ops::timings;
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::health::Health;
use crate::southbound::schedule::{OverrunLog, Schedule};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a good poll cycle read.
#[derive(Debug)]
pub struct Reading<N> {
    /// (point index in the device's profile, value).
    pub values: Vec<(usize, Value)>,
    /// What the protocol says once the device comes online ([`Protocol::came_online`]).
    pub notes: N,
}

impl Reading<()> {
    /// Values and nothing more to say.
    pub fn values(values: Vec<(usize, Value)>) -> Reading<()> {
        Reading { values, notes: () }
    }
}

/// One poll cycle's outcome.
#[derive(Debug)]
pub struct Polled<N, E> {
    pub result: Result<Reading<N>, E>,
    /// The cycle occupied the line (its time is a poll timing, its failure backs the
    /// device off). False for a device that only pushes frames: it costs no line time.
    pub used_line: bool,
}

impl<N, E> Polled<N, E> {
    /// A cycle that occupied the line.
    pub fn on_line(result: Result<Reading<N>, E>) -> Polled<N, E> {
        Polled {
            result,
            used_line: true,
        }
    }
}

/// How an idle wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// The time asked for has come.
    Elapsed,
    /// The protocol handled something on the line first (an unsolicited frame).
    Handled,
}

/// What a protocol supplies to the bus task ([`run`]); see the module documentation.
pub trait Protocol: Send + 'static {
    /// Why a poll cycle failed: logged, and the offline reason after repeated failures.
    type Error: fmt::Display + Send;
    /// What a good cycle carries besides its values (e.g. Modbus exceptions), for
    /// [`Protocol::came_online`].
    type Notes: Send;

    /// The bus's id in logs, counters and timings (`bus_id`).
    fn name(&self) -> &str;
    /// What logs call this kind of bus ("modbus link", "serial bus").
    fn kind(&self) -> &'static str;
    /// The devices, in the order of the indexes the other methods take, with their poll
    /// periods.
    fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)>;

    /// Once, before the first turn (open the line early, say what failed).
    fn start(&mut self) {}

    /// Polls device `device` once (retries included).
    fn poll(
        &mut self,
        device: usize,
    ) -> impl Future<Output = Polled<Self::Notes, Self::Error>> + Send;

    /// Runs a command's writes and its read-back; answers on `req.reply`.
    fn write(&mut self, req: WriteRequest) -> impl Future<Output = ()> + Send;

    /// Waits until `until`; a protocol that listens between polls may return earlier
    /// with [`Idle::Handled`]. Must be cancel-safe (it races the inbox).
    fn idle(&mut self, until: Instant) -> impl Future<Output = Idle> + Send {
        async move {
            tokio::time::sleep_until(until).await;
            Idle::Elapsed
        }
    }

    /// Device `device` came online with this cycle (log what `notes` says).
    fn came_online(&self, device: usize, notes: &Self::Notes) {
        let _ = (device, notes);
    }

    /// At the end of every turn: hand over the protocol's own messages for the pipeline
    /// (readings of writes, unsolicited frames) and report the line's state.
    fn end_turn(&mut self, out: &mut Vec<Input>) {
        let _ = out;
    }
}

/// Starts the bus task of `proto` ([`run`]) with its wiring: the one way every polled
/// protocol (serial buses, SNMP agents) is spawned.
pub fn spawn<P: Protocol>(proto: P, w: crate::southbound::Wiring) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(proto, w.inbox, w.out, w.counters, w.cancel, w.hb))
}

/// Runs `proto` until `cancel`, taking commands from `inbox`, sending readings and
/// transitions to `tx`, beating `hb` on every turn.
pub async fn run<P: Protocol>(
    mut proto: P,
    mut inbox: Inbox,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    hb: Option<Heartbeat>,
) {
    let devices = proto.devices();
    let name = proto.name().to_string();
    let kind = proto.kind();
    let polls: Vec<Duration> = devices.iter().map(|(_, p)| *p).collect();
    let mut schedule = Schedule::new(&polls, Instant::now());
    let mut health: Vec<Health> = devices.iter().map(|_| Health::default()).collect();
    let mut overruns = OverrunLog::default();
    let mut out = Vec::new();
    // However the task ends (stopped, removed by a reload, panicked), its poll timings
    // leave /metrics with it; a restarted bus starts a fresh series.
    let poll_timings = PollTimings::new(&counters, &name);
    tracing::info!(bus_id = %name, kind, devices = devices.len(), "bus task started");
    proto.start();
    // One waiter on the token for the task's life (not one registered and dropped per
    // select): it is polled again by every select below until the token fires.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    while let Some((i, deadline)) = schedule.next() {
        if let Some(hb) = &hb {
            hb.beat();
        }
        // Turns at least every BEAT_EVERY, so the heartbeat says the bus is alive.
        let wake = deadline.min(Instant::now() + BEAT_EVERY);
        tokio::select! {
            biased;
            _ = &mut cancelled => break,
            // Commands go ahead of polls, between two transactions.
            Some(req) = inbox.recv() => {
                tokio::select! {
                    biased;
                    _ = &mut cancelled => break,
                    _ = proto.write(*req) => {}
                }
            }
            idle = proto.idle(wake) => if idle == Idle::Elapsed && wake >= deadline {
                let started = Instant::now();
                let polled = tokio::select! {
                    biased;
                    _ = &mut cancelled => break,
                    p = proto.poll(i) => p,
                };
                let now = Instant::now();
                if polled.used_line {
                    timings::observe(&poll_timings.series, now.duration_since(started));
                }
                // A cycle that used no line time is no reason to back the device off.
                let ok = polled.result.is_ok() || !polled.used_line;
                let skipped = schedule.done(i, started, now, ok);
                let (info, _) = &devices[i];
                overruns.record(skipped, now, &name, &info.id, &counters);
                match polled.result {
                    Ok(r) => {
                        if health[i].good(info, &name, r.values, &mut out) {
                            proto.came_online(i, &r.notes);
                        }
                    }
                    Err(e) => health[i].bad(info, &name, &e, &mut out),
                }
            },
        }
        proto.end_turn(&mut out);
        for m in out.drain(..) {
            // The pipeline has room nearly always; waiting for it is the exception.
            let m = match tx.try_send(m) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(m)) => m,
            };
            tokio::select! {
                biased;
                _ = &mut cancelled => return,
                r = tx.send(m) => if r.is_err() { return },
            }
        }
    }
    tracing::info!(bus_id = %name, kind, "bus task stopped");
}

/// When a bus may next try to open its connection or port: at once at first and after a
/// success, after the shared [`Backoff`]'s wait after each failure.
#[derive(Debug)]
pub struct Reopen {
    backoff: Backoff,
    next: Instant,
}

impl Reopen {
    pub fn new(min: Duration, max: Duration) -> Reopen {
        Reopen {
            backoff: Backoff::new(min, max),
            next: Instant::now(),
        }
    }

    /// How long until the next attempt may run; `None` when it may run now.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        (now < self.next).then(|| self.next.duration_since(now))
    }

    /// When the next attempt may run.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// An attempt failed at `now`: the next one waits.
    pub fn failed(&mut self, now: Instant) {
        self.next = now + self.backoff.next_wait();
    }

    /// An attempt succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }
}

/// A bus's poll-timing series in /metrics, kept by its task (no label built per poll)
/// and forgotten when the task ends.
struct PollTimings<'a> {
    series: prometheus_client::metrics::histogram::Histogram,
    counters: &'a Counters,
    bus: &'a str,
}

impl<'a> PollTimings<'a> {
    fn new(counters: &'a Counters, bus: &'a str) -> Self {
        PollTimings {
            series: counters.timings.poll_series(bus),
            counters,
            bus,
        }
    }
}

impl Drop for PollTimings<'_> {
    fn drop(&mut self) {
        self.counters.timings.forget_link(self.bus);
    }
}

/// The failure log of a bus's connection or port: the first failure logged, then a
/// summary at most every few minutes while it lasts, then one line on recovery.
#[derive(Debug)]
pub struct LineLog {
    bus: String,
    log: FailureLog,
}

impl LineLog {
    pub fn new(bus: &str) -> LineLog {
        LineLog {
            bus: bus.to_string(),
            log: FailureLog::default(),
        }
    }

    /// The connection or port failed (the caller retries with its backoff).
    pub fn failed(&mut self, error: &dyn fmt::Display) {
        if let Some(failures) = self.log.due(std::time::Instant::now()) {
            tracing::error!(bus_id = %self.bus, error = %error, failures, "bus error; retrying with backoff");
        }
    }

    /// The connection or port works (logs once after failures).
    pub fn working(&mut self) {
        if let LogAction::Recovered { count } = self.log.success() {
            tracing::info!(bus_id = %self.bus, failures = count, "bus working again");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop reports a good cycle as online + reading, records its timing, and forgets
    //! that timing once the task ends.
    use super::*;
    use crate::profile::Registry;

    struct OneValue {
        device: Arc<DeviceInfo>,
    }

    impl Protocol for OneValue {
        type Error = String;
        type Notes = ();
        fn name(&self) -> &str {
            "test-bus"
        }
        fn kind(&self) -> &'static str {
            "test bus"
        }
        fn devices(&self) -> Vec<(Arc<DeviceInfo>, Duration)> {
            vec![(self.device.clone(), Duration::from_secs(1))]
        }
        async fn poll(&mut self, _: usize) -> Polled<(), String> {
            Polled::on_line(Ok(Reading::values(vec![(0, Value::Int(7))])))
        }
        async fn write(&mut self, _: WriteRequest) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_good_cycle_is_online_then_a_reading_and_a_stopped_bus_forgets_its_timings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let (reg, _) = Registry::load(&[dir]);
        let profile = reg.get("generic-lamp-modbus").expect("lamp").clone();
        let device = Arc::new(DeviceInfo::new(
            "lamp-1",
            profile,
            Default::default(),
            60_000,
        ));
        let counters = Arc::new(Counters::default());
        let (_cmd_tx, inbox) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let proto = OneValue { device };
        let task = tokio::spawn(run(
            proto,
            inbox,
            tx,
            counters.clone(),
            cancel.clone(),
            None,
        ));
        assert!(matches!(
            rx.recv().await,
            Some(Input::State { online: true, .. })
        ));
        assert!(
            matches!(rx.recv().await, Some(Input::Reading { values, .. }) if values == vec![(0, Value::Int(7))])
        );
        let label = vec![("link", "test-bus".to_string())];
        assert!(counters.timings.poll.get(&label).is_some());
        cancel.cancel();
        task.await.expect("bus task ends");
        assert!(counters.timings.poll.get(&label).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn reopen_tries_at_once_then_waits_the_backoff_after_each_failure() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut r = Reopen::new(min, max);
        let t0 = Instant::now();
        assert_eq!(r.wait(t0), None, "the first attempt runs at once");
        r.failed(t0);
        let w = r.wait(t0).expect("waits after a failure");
        assert!(w >= min && w <= max, "{w:?}");
        assert_eq!(r.wait(r.next()), None, "and may run once the wait is over");
        r.succeeded();
        r.failed(r.next());
        assert!(r.wait(r.next() - min).is_some());
    }
}
