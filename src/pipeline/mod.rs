//! The pipeline task: readings and device transitions in, durable records out.
//!
//! Invariants: one task stamps every buffered event, so `seq` order is publish order; an
//! event is in the queue before the publisher is woken; the queue's writer is asked for a
//! flush every `flush_every_ms` and the queue is flushed once more when the input channel
//! closes (shutdown), which bounds what a crash can lose. Nothing here waits for a disk.

pub mod latest;
pub mod report;

use crate::buffer::{PushOutcome, Queue, Record};
use crate::model::payload::{self, Body};
use crate::model::topic::{DeviceTopic, Topics};
use crate::model::{Kind, Value, now_ms};
use crate::ops::counters::Counters;
use crate::ops::notify::Heartbeat;
use crate::profile::ProfileRef;
use report::Reporter;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

/// Capacity of the channel from the drivers into the pipeline.
pub const INPUT_CAPACITY: usize = 1024;

/// What the pipeline knows about one device.
#[derive(Debug)]
pub struct DeviceInfo {
    pub id: String,
    /// Set by the driver on each transition; commands to a device known to be offline
    /// fail fast, and the `stats` counts read it. Shared with [`DeviceInfo::with_meta`]'s
    /// copies.
    pub link: Arc<crate::model::LinkCell>,
    pub kind: Kind,
    pub profile: ProfileRef,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub heartbeat_ms: u64,
    /// Latest values and last reason, for the status page. Shared as `link` is.
    pub latest: Arc<latest::Latest>,
}

impl DeviceInfo {
    /// A device before its driver has heard from it (link state unknown); the kind is
    /// taken from the profile so the two cannot disagree.
    pub fn new(
        id: impl Into<String>,
        profile: ProfileRef,
        meta: serde_json::Map<String, serde_json::Value>,
        heartbeat_ms: u64,
    ) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            link: Default::default(),
            kind: profile.kind,
            profile,
            meta,
            heartbeat_ms,
            latest: Default::default(),
        }
    }

    /// The same device with other `meta` (an OCPP charger's identity after its boot):
    /// one link state and one latest-values record with the original, so the status page
    /// and the command intake, which hold the original, see what the copy's events set.
    pub fn with_meta(&self, meta: serde_json::Map<String, serde_json::Value>) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            link: self.link.clone(),
            kind: self.kind,
            profile: self.profile.clone(),
            meta,
            heartbeat_ms: self.heartbeat_ms,
            latest: self.latest.clone(),
        }
    }
}

/// Where a device's writes go.
#[derive(Debug, Clone)]
pub struct Route {
    pub info: Arc<DeviceInfo>,
    pub inbox: crate::model::command::InboxSender,
    /// Index of the device within its driver.
    pub index: usize,
}

/// Messages from the drivers.
#[derive(Debug)]
pub enum Input {
    /// Points read in one poll cycle (point index in the profile, value).
    Reading {
        device: Arc<DeviceInfo>,
        values: Vec<(usize, Value)>,
        at_ms: u64,
        /// Points reported whatever the deadband (read-back after a write).
        force: Vec<usize>,
    },
    /// The answer to a command.
    CmdResult(crate::model::command::CmdResult),
    /// After a reload: the enabled devices now (for the `stats` counts).
    Devices(Vec<Arc<DeviceInfo>>),
    /// After a reload: a device no longer in the configuration (offline, "removed").
    Removed(Arc<DeviceInfo>),
    /// After a reload: new topic prefix, gateway id, flush or stats intervals.
    Settings(PipelineSettings),
    /// A device came online or went offline.
    State {
        device: Arc<DeviceInfo>,
        online: bool,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    pub gateway: String,
    pub topic_prefix: String,
    pub flush_every: Duration,
    /// None disables stats events.
    pub stats_every: Option<Duration>,
}

pub struct Pipeline {
    settings: PipelineSettings,
    /// Built from `settings` whenever they change.
    topics: Topics,
    queue: Queue,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    reporters: HashMap<String, Reporter>,
    /// The enabled devices (for the `stats` counts).
    devices: Vec<Arc<DeviceInfo>>,
    started: Instant,
    /// Whether the last push found the buffer full (logged on change only).
    full: bool,
    /// Beats on every loop turn (the flush timer guarantees turns) for the watchdog.
    heartbeat: Option<Heartbeat>,
    /// Told the id of every device that comes online (the lighting schedules write the
    /// current step to it, SPEC §10); never waited on.
    online: Option<mpsc::Sender<String>>,
}

impl Pipeline {
    pub fn new(
        settings: PipelineSettings,
        queue: Queue,
        wake: Arc<Notify>,
        counters: Arc<Counters>,
        devices: &[Arc<DeviceInfo>],
    ) -> Pipeline {
        Pipeline {
            topics: Topics::new(&settings.topic_prefix, &settings.gateway),
            settings,
            queue,
            wake,
            counters,
            reporters: HashMap::new(),
            devices: devices.to_vec(),
            started: Instant::now(),
            full: false,
            heartbeat: None,
            online: None,
        }
    }

    /// Sends the id of each device that comes online to `tx` (dropped when full).
    pub fn with_online(mut self, tx: mpsc::Sender<String>) -> Pipeline {
        self.online = Some(tx);
        self
    }

    /// Reports liveness through `hb` (gates the systemd watchdog).
    pub fn with_heartbeat(mut self, hb: Heartbeat) -> Pipeline {
        self.heartbeat = Some(hb);
        self
    }

    /// Runs until every sender of `rx` is dropped, then flushes the queue.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut flush = tokio::time::interval(self.settings.flush_every);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stats_every = self
            .settings
            .stats_every
            .unwrap_or(Duration::from_secs(3600));
        let mut stats = tokio::time::interval_at(Instant::now() + stats_every, stats_every);
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Turns the loop at least every second for the watchdog's liveness check.
        let mut idle = tokio::time::interval(Duration::from_secs(1));
        loop {
            if let Some(hb) = &self.heartbeat {
                hb.beat();
            }
            tokio::select! {
                _ = idle.tick() => {}
                msg = rx.recv() => match msg {
                    Some(Input::Settings(new)) => {
                        if new.flush_every != self.settings.flush_every {
                            flush = tokio::time::interval(new.flush_every);
                            flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        }
                        if new.stats_every != self.settings.stats_every {
                            let every = new.stats_every.unwrap_or(Duration::from_secs(3600));
                            stats = tokio::time::interval_at(Instant::now() + every, every);
                            stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        }
                        self.set_settings(new);
                    }
                    Some(m) => self.handle(m),
                    None => break,
                },
                // The writer thread does the work (and skips a flush with nothing to do).
                _ = flush.tick() => self.queue.request_flush(),
                _ = stats.tick(), if self.settings.stats_every.is_some() => {
                    self.emit_stats();
                }
            }
        }
        self.flush().await;
    }

    async fn flush(&self) {
        let q = self.queue.clone();
        let res = tokio::task::spawn_blocking(move || q.flush()).await;
        match res {
            Ok(Ok(())) => {}
            // The queue turned degraded and logged it once; counted here.
            Ok(Err(_)) => Counters::inc(&self.counters.buffer_error),
            Err(e) => tracing::error!(error = %e, "buffer flush task failed"),
        }
    }

    pub fn handle(&mut self, msg: Input) {
        match msg {
            Input::State {
                device,
                online,
                reason,
            } => {
                if online && let Some(r) = self.reporters.get_mut(&device.id) {
                    r.reset();
                }
                if online && let Some(tx) = &self.online {
                    let _ = tx.try_send(device.id.clone());
                }
                device
                    .latest
                    .set_reason(if online { None } else { reason.as_deref() });
                self.emit_state(&device, online, reason.as_deref());
            }
            Input::Settings(s) => self.set_settings(s),
            Input::Devices(list) => {
                self.reporters
                    .retain(|id, _| list.iter().any(|d| &d.id == id));
                self.devices = list;
            }
            Input::Removed(device) => {
                self.devices.retain(|d| d.id != device.id);
                self.reporters.remove(&device.id);
                self.emit_state(&device, false, Some("removed"));
            }
            Input::CmdResult(r) => {
                let topic = self.topics.device(&r.device, DeviceTopic::CmdResult);
                self.emit(topic, false, |seq, ts, gw| {
                    payload::cmd_result(seq, ts, gw, &r)
                });
            }
            Input::Reading {
                device,
                values,
                at_ms,
                force,
            } => {
                device.latest.record(&values, at_ms);
                let reporter = self.reporters.entry(device.id.clone()).or_insert_with(|| {
                    Reporter::new(device.profile.points.len(), device.heartbeat_ms)
                });
                let chosen = reporter.select(&device.profile.points, values, at_ms, &force);
                if chosen.is_empty() {
                    return;
                }
                let points: Vec<(&str, &Value)> = chosen
                    .iter()
                    .filter_map(|(i, v)| {
                        device.profile.points.get(*i).map(|p| (p.name.as_str(), v))
                    })
                    .collect();
                let topic = self.topics.device(&device.id, DeviceTopic::Telemetry);
                self.emit(topic, false, |seq, ts, gw| {
                    payload::telemetry(seq, ts, gw, &device.id, device.kind, &points)
                });
            }
        }
    }

    /// Queues the birth certificate of `device`.
    pub fn emit_state(&mut self, device: &DeviceInfo, online: bool, reason: Option<&str>) {
        let topic = self.topics.device(&device.id, DeviceTopic::State);
        let points: Vec<payload::BirthPoint<'_>> = device
            .profile
            .points
            .iter()
            .map(|p| payload::BirthPoint {
                name: &p.name,
                unit: p.unit.as_deref(),
                writable: p.writable,
                min: p.min,
                max: p.max,
            })
            .collect();
        self.emit(topic, true, |seq, ts, gw| {
            payload::state(
                seq,
                ts,
                gw,
                &payload::Birth {
                    device: &device.id,
                    kind: device.kind,
                    profile: &device.profile.name,
                    online,
                    reason,
                    meta: &device.meta,
                    points: &points,
                },
            )
        });
    }

    fn emit_stats(&mut self) {
        let b = self.queue.stats();
        let online = self.devices.iter().filter(|d| d.link.is_online()).count() as u64;
        let offline = self.devices.len() as u64 - online;
        let errors = self.counters.errors();
        let links = self.counters.breakdown.links();
        let device_errors = self.counters.breakdown.device_errors();
        let published = self.counters.published.load(Relaxed);
        let uptime_s = self.started.elapsed().as_secs();
        let topic = self.topics.stats();
        self.emit(topic, false, |seq, ts, gw| {
            payload::stats(
                seq,
                ts,
                gw,
                &payload::StatsBody {
                    uptime_s,
                    buffer_events: b.events,
                    buffer_bytes: b.bytes,
                    buffer_dropped: b.dropped,
                    published,
                    online,
                    offline,
                    errors: &errors,
                    links: &links,
                    device_errors: &device_errors,
                },
            )
        });
    }

    fn set_settings(&mut self, s: PipelineSettings) {
        self.topics = Topics::new(&s.topic_prefix, &s.gateway);
        self.settings = s;
    }

    /// Stamps, encodes and queues one event, then wakes the publisher.
    /// `build` gets (seq, ts, gateway id).
    fn emit(&mut self, topic: String, retain: bool, build: impl FnOnce(u64, u64, &str) -> Body) {
        let gateway = &self.settings.gateway;
        let pushed = self.queue.push_with(|seq| {
            let ts = now_ms();
            Record {
                payload: build(seq, ts, gateway),
                topic,
                retain,
                created_ms: ts,
            }
        });
        match pushed {
            Ok((_, PushOutcome::Stored { evicted: 0 })) => {
                if self.full {
                    self.full = false;
                    tracing::info!(
                        dropped = self.queue.stats().dropped,
                        "buffer has room again"
                    );
                }
            }
            Ok((_, PushOutcome::Stored { evicted })) => {
                if !self.full {
                    self.full = true;
                    tracing::warn!(
                        evicted,
                        "buffer full: dropping the oldest events (on_full = drop_oldest)"
                    );
                }
            }
            Ok((seq, PushOutcome::Rejected)) => {
                if !self.full {
                    self.full = true;
                    tracing::warn!(
                        seq,
                        "buffer full: dropping new events (on_full = drop_newest)"
                    );
                }
            }
            Ok((_, PushOutcome::Degraded { held, .. })) => {
                // Logged once by the queue's transition to degraded, never per event.
                Counters::inc(&self.counters.buffer_error);
                if !held && !self.full {
                    self.full = true;
                    tracing::warn!(
                        "buffer degraded and its memory hold (buffer.memory_max_bytes) is full: \
                         dropping events (on_full)"
                    );
                }
            }
            Err(e) => {
                Counters::inc(&self.counters.buffer_error);
                tracing::error!(error = %e, "cannot store event");
            }
        }
        self.wake.notify_one();
    }
}
