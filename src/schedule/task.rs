//! The scheduler task (SPEC §10 "Applying", "Overrides", "Clock"). It sleeps until the
//! earliest of: a program's next step instant, the end of an override, the next
//! reassert (`reassert_s`) — and, only while the clock is not trusted, a clock recheck.
//! It wakes early for a control-room override, a device coming online and a reload.
//! Each wake reads the wall clock once and asks the pure `plan` what is current; the
//! sleep is on the monotonic clock, at most one reassert period, so a stepped wall clock
//! is caught at the next wake.
//!
//! Writing a step to a device = the step's points, less overridden ones, less those whose
//! latest reading already equals the value (`writes::due`), sent to the command task as
//! one multi-point command. Applying and reasserting are the same operation; a failed
//! write is retried at the next reassert because its point still differs.

use super::clock::{self, ClockSource, ClockState};
use super::plan::{Occurrence, Plan};
use super::shared::{ProgramView, ScheduleView, Shared};
use super::writes;
use crate::commands::Routes;
use crate::commands::scheduled::{Override, ScheduleLink, ScheduledWrite};
use crate::config::schedule::{FailSafe, ScheduleCfg};
use crate::model::LinkState;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// While the clock is not trusted, how often the kernel is asked again (it has no event
/// for "synchronized"); no such wake while it is trusted.
pub const CLOCK_RECHECK: Duration = Duration::from_secs(10);
/// Online notices queued from the pipeline (dropped when full: the reassert catches up).
pub const ONLINE_CAPACITY: usize = 256;

type Reply = Pin<Box<dyn std::future::Future<Output = (String, bool)> + Send>>;

/// The running configuration: the plan and the settings it came with.
struct Active {
    plan: Plan,
    cfg: ScheduleCfg,
}

pub struct Scheduler {
    gateway: String,
    active: Option<Arc<Active>>,
    routes: Routes,
    writes: mpsc::Sender<ScheduledWrite>,
    clock: Arc<dyn ClockSource>,
    shared: Arc<Shared>,
    clock_state: Option<ClockState>,
    /// Devices that got the fail-safe in this untrusted period (each once).
    fail_safe_done: std::collections::HashSet<String>,
    /// The current step of each program.
    current: Vec<Option<Occurrence>>,
    /// device → point → end of its override.
    overrides: HashMap<String, HashMap<String, Timestamp>>,
    next_reassert: Timestamp,
    /// Writes whose channel to the command task was full (logged once per episode).
    full_logged: bool,
    /// Programs whose last write failed (a line when one starts and stops failing).
    failing: std::collections::HashSet<String>,
}

/// The scheduler's inputs besides its configuration.
pub struct Inputs {
    pub routes: Routes,
    pub link: ScheduleLink,
    /// Device ids that came online (from the pipeline).
    pub online: mpsc::Receiver<String>,
    /// The configuration's `[schedule]` after each reload.
    pub config: watch::Receiver<Option<ScheduleCfg>>,
}

impl Scheduler {
    pub fn new(
        gateway: String,
        clock: Arc<dyn ClockSource>,
        shared: Arc<Shared>,
        inputs: &Inputs,
    ) -> Scheduler {
        Scheduler {
            gateway,
            active: None,
            routes: inputs.routes.clone(),
            writes: inputs.link.writes.clone(),
            clock,
            shared,
            clock_state: None,
            fail_safe_done: Default::default(),
            current: vec![],
            overrides: HashMap::new(),
            next_reassert: Timestamp::now(),
            full_logged: false,
            failing: Default::default(),
        }
    }

    /// Counts a write's result; one line when a program's writes start or stop failing
    /// (each failure is on `cmd/result` and in `polegate_schedule_writes_total`).
    fn write_done(&mut self, program: String, ok: bool) {
        self.shared.count_write(&program, ok);
        if ok && self.failing.remove(&program) {
            tracing::info!(program = %program, "schedule writes succeed again");
        } else if !ok && !self.failing.contains(&program) {
            tracing::warn!(program = %program, "schedule write failed (see cmd/result); retried at the next reassert");
            self.failing.insert(program);
        }
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, mut inputs: Inputs, cancel: CancellationToken) {
        let mut pending: FuturesUnordered<Reply> = FuturesUnordered::new();
        let mut routes = inputs.routes.clone();
        routes.mark_unchanged();
        self.configure(inputs.config.borrow_and_update().clone());
        self.tick(true, &mut pending);
        loop {
            self.shared.woke();
            let wait = self.next_wake(Timestamp::now());
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => self.tick(false, &mut pending),
                Some((program, ok)) = pending.next(), if !pending.is_empty() => {
                    self.write_done(program, ok);
                }
                Some(o) = inputs.link.overrides.recv() => self.on_override(o, &mut pending),
                Some(device) = inputs.online.recv() => {
                    let now = Timestamp::now();
                    if self.trusted() {
                        self.apply_device(&device, now, &mut pending);
                    }
                }
                Ok(()) = routes.changed() => {
                    routes.mark_unchanged();
                    // A reload: new or changed devices get the current step.
                    self.tick(true, &mut pending);
                }
                Ok(()) = inputs.config.changed() => {
                    self.configure(inputs.config.borrow_and_update().clone());
                    self.tick(true, &mut pending);
                }
            }
        }
    }

    fn configure(&mut self, cfg: Option<ScheduleCfg>) {
        self.active = cfg.and_then(|cfg| match Plan::new(&cfg) {
            Ok(plan) => {
                tracing::info!(programs = cfg.programs.len(), zone = %plan.zone_name(), "lighting schedule active");
                Some(Arc::new(Active { plan, cfg }))
            }
            Err(e) => {
                tracing::error!(error = %e, "lighting schedule not started");
                None
            }
        });
        let n = self.active.as_ref().map_or(0, |a| a.plan.programs.len());
        self.current = vec![None; n];
        self.clock_state = None;
        self.next_reassert = Timestamp::now();
    }

    fn trusted(&self) -> bool {
        self.clock_state.is_some_and(ClockState::trusted)
    }

    /// When to wake next.
    fn next_wake(&self, now: Timestamp) -> Duration {
        let Some(a) = &self.active else {
            return Duration::from_secs(3600);
        };
        if !self.trusted() {
            return CLOCK_RECHECK;
        }
        let mut at = self.next_reassert;
        for p in 0..a.plan.programs.len() {
            if let Some(o) = a.plan.next(p, now) {
                at = at.min(o.instant);
            }
        }
        for until in self.overrides.values().flat_map(|m| m.values()) {
            at = at.min(*until);
        }
        let d = at.duration_since(now);
        // Just past the instant (plan::current counts a step at or before now).
        Duration::try_from(d).unwrap_or(Duration::ZERO) + Duration::from_millis(1)
    }

    /// One wake: the clock, each program's step, ended overrides, the reassert.
    /// `full`: write every device (start, reload, clock trusted again).
    fn tick(&mut self, mut full: bool, pending: &mut FuturesUnordered<Reply>) {
        let Some(a) = self.active.clone() else { return };
        let now = Timestamp::now();
        let state = clock::state(a.cfg.clock, &*self.clock);
        if self.clock_state != Some(state) {
            tracing::info!(clock = state.as_str(), "schedule clock state");
            if state.trusted() {
                full = true;
            }
            self.clock_state = Some(state);
        }
        if !state.trusted() {
            self.current.iter_mut().for_each(|c| *c = None);
            if a.cfg.fail_safe == FailSafe::On {
                if self.fail_safe_done.is_empty() {
                    tracing::warn!(
                        "clock not synchronized: lamps of every program set to the fail-safe (on, 100 %)"
                    );
                }
                for p in 0..a.plan.programs.len() {
                    for device in self.devices_of(p) {
                        if self.fail_safe_done.insert(device.clone()) {
                            self.write_fail_safe(p, &device, pending);
                        }
                    }
                }
            }
            self.publish(now);
            return;
        }
        self.fail_safe_done.clear();
        for p in 0..a.plan.programs.len() {
            let cur = a.plan.current(p, now);
            if cur != self.current[p] {
                if let Some(o) = &cur {
                    let step = a.plan.step(p, o);
                    tracing::info!(program = %a.plan.programs[p].id, step = o.index, at = %step.text, "schedule step");
                }
                self.current[p] = cur;
                full = true;
            }
        }
        // Ended overrides: the current step applies again.
        let mut ended = Vec::new();
        for (device, points) in &mut self.overrides {
            points.retain(|_, until| *until > now);
            if points.is_empty() {
                ended.push(device.clone());
            }
        }
        for device in &ended {
            self.overrides.remove(device);
            tracing::info!(device_id = %device, "schedule override ended");
        }
        let reassert = now >= self.next_reassert;
        if reassert {
            self.next_reassert = now + Duration::from_secs(a.cfg.reassert_s);
        }
        if full || reassert {
            for p in 0..a.plan.programs.len() {
                for device in self.devices_of(p) {
                    self.apply_device(&device, now, pending);
                }
            }
        } else {
            for device in &ended {
                self.apply_device(device, now, pending);
            }
        }
        self.publish(now);
    }

    /// Running devices of program `p`, by id.
    fn devices_of(&self, p: usize) -> Vec<String> {
        let Some(a) = &self.active else { return vec![] };
        let program = &a.plan.programs[p];
        let mut ids: Vec<String> = self
            .routes
            .borrow()
            .keys()
            .filter(|id| program.covers(id))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn program_of(&self, device: &str) -> Option<usize> {
        self.active
            .as_ref()?
            .plan
            .programs
            .iter()
            .position(|p| p.covers(device))
    }

    /// Writes the current step of the device's program, less overridden points and
    /// points already at their value.
    fn apply_device(
        &mut self,
        device: &str,
        now: Timestamp,
        pending: &mut FuturesUnordered<Reply>,
    ) {
        let (Some(a), Some(p)) = (self.active.clone(), self.program_of(device)) else {
            return;
        };
        let Some(o) = self.current[p] else { return };
        let set = a.plan.step(p, &o).set.clone();
        let overridden: Vec<String> = self
            .overrides
            .get(device)
            .map(|m| {
                m.iter()
                    .filter(|(_, u)| **u > now)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let id = format!("schedule:{}:{}", a.plan.programs[p].id, o.index);
        self.send(
            p,
            device,
            id,
            |profile, latest| writes::due(profile, &set, &overridden, latest),
            pending,
        );
    }

    fn write_fail_safe(&mut self, p: usize, device: &str, pending: &mut FuturesUnordered<Reply>) {
        let Some(a) = self.active.clone() else { return };
        let id = format!("schedule:{}:fail_safe", a.plan.programs[p].id);
        self.send(
            p,
            device,
            id,
            |profile, _| writes::fail_safe(profile),
            pending,
        );
    }

    /// Sends the points `pick` chooses (given the profile and latest readings) to the
    /// command task; nothing for an offline device (written when it comes online).
    fn send(
        &mut self,
        p: usize,
        device: &str,
        id: String,
        pick: impl FnOnce(
            &crate::profile::Profile,
            &crate::pipeline::latest::Snapshot,
        ) -> Vec<(String, serde_json::Value)>,
        pending: &mut FuturesUnordered<Reply>,
    ) {
        let Some(route) = self.routes.borrow().get(device).cloned() else {
            return;
        };
        if route.info.link.get() == LinkState::Offline {
            return;
        }
        let points = pick(&route.info.profile, &route.info.latest.snapshot());
        if points.is_empty() {
            return;
        }
        let Some(program) = self.active.as_ref().map(|a| a.plan.programs[p].id.clone()) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let w = ScheduledWrite {
            device: device.to_string(),
            id,
            points,
            reply: tx,
        };
        match self.writes.try_send(w) {
            Ok(()) => {
                self.full_logged = false;
                pending.push(Box::pin(
                    async move { (program, rx.await.unwrap_or(false)) },
                ));
            }
            Err(_) => {
                self.shared.count_write(&program, false);
                if !self.full_logged {
                    self.full_logged = true;
                    tracing::warn!(device_id = %device, "schedule write not queued: the command task is behind; retried at the next reassert");
                }
            }
        }
    }

    fn on_override(&mut self, o: Override, pending: &mut FuturesUnordered<Reply>) {
        let now = Timestamp::now();
        match o {
            Override::Points {
                device,
                points,
                hold_until_ms,
            } => {
                let (Some(a), Some(p)) = (self.active.clone(), self.program_of(&device)) else {
                    return;
                };
                let program = &a.plan.programs[p];
                let scheduled: Vec<String> = points
                    .into_iter()
                    .filter(|pt| {
                        program
                            .steps
                            .iter()
                            .chain(program.exceptions.iter().flat_map(|e| e.steps.iter()))
                            .any(|s| s.set.iter().any(|(n, _)| n == pt))
                    })
                    .collect();
                if scheduled.is_empty() {
                    return;
                }
                let until = match hold_until_ms {
                    Some(ms) => Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::MAX),
                    None => a.plan.next(p, now).map_or(Timestamp::MAX, |o| o.instant),
                };
                if until <= now {
                    return;
                }
                tracing::info!(device_id = %device, points = ?scheduled, until = %until, "schedule override by the control room");
                let m = self.overrides.entry(device).or_default();
                for pt in scheduled {
                    m.insert(pt, until);
                }
            }
            Override::Resume { device } => {
                if self.overrides.remove(&device).is_some() {
                    tracing::info!(device_id = %device, "schedule resumed by the control room");
                }
                if self.trusted() {
                    self.apply_device(&device, now, pending);
                }
            }
        }
        self.publish(now);
    }

    /// Sets the view (published only when it changed).
    fn publish(&self, now: Timestamp) {
        let Some(a) = &self.active else { return };
        let fmt = |t: Timestamp| {
            jiff::ZonedDateTime::new(t, a.plan.zone().clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        };
        let mut programs = BTreeMap::new();
        for (p, program) in a.plan.programs.iter().enumerate() {
            let devices = self.devices_of(p);
            let mut overridden: Vec<String> = devices
                .iter()
                .filter(|d| {
                    self.overrides
                        .get(*d)
                        .is_some_and(|m| m.values().any(|u| *u > now))
                })
                .cloned()
                .collect();
            overridden.sort();
            let cur = self.current.get(p).copied().flatten();
            let trusted = self.trusted();
            programs.insert(
                program.id.clone(),
                ProgramView {
                    step: cur.map(|o| o.index),
                    at: cur.map(|o| a.plan.step(p, &o).text.clone()),
                    since: cur.map(|o| fmt(o.instant)),
                    next: trusted
                        .then(|| a.plan.next(p, now))
                        .flatten()
                        .map(|o| fmt(o.instant)),
                    devices: devices.len(),
                    overridden,
                    exception: cur
                        .and_then(|o| o.exception)
                        .map(|e| program.exceptions[e].label.clone()),
                },
            );
        }
        let view = ScheduleView {
            clock: self
                .clock_state
                .unwrap_or(ClockState::Unsynchronized)
                .as_str()
                .to_string(),
            programs,
        };
        let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
        if self.shared.set(&self.gateway, view, now_ms) {
            tracing::debug!("schedule state changed");
        }
    }
}
