//! The supervisor: builds the components from a validated configuration, runs them,
//! applies reloads as a diff, and shuts them down in order under a deadline: drivers
//! stop, the pipeline drains into the queue and flushes it, then the MQTT session
//! publishes `offline` and disconnects.
//!
//! Reload (SIGHUP or a file change): the new configuration is loaded and validated; if
//! invalid, every error is logged and the running one stays. Otherwise only what changed
//! is rebuilt: drivers whose settings changed (`plan::DriverSettings`) restart (births are re-sent when they
//! poll), new ones start, removed devices get an offline state with reason "removed",
//! untouched drivers keep running and miss no poll, the MQTT session is reopened only
//! when `[mqtt]` (or the gateway id, or `commands.enabled`) changed, and the queue is
//! never dropped. `state_dir` and `[buffer]` changes take effect at the next restart.

pub mod drivers;
pub mod filewatch;
mod load;
mod plan;
mod reload;
pub mod supervise;
mod views;

use load::pipeline_settings;
pub use load::{Loaded, load, queue_options};

use crate::buffer::Queue;
use crate::commands::Commands;
use crate::commands::dedup::Dedup;
use crate::config::{self, Config};
use crate::model::now_ms;
use crate::northbound::mqtt::{Session, SessionSettings, SessionState};
use crate::ops::counters::Counters;
use crate::ops::health::BufferHealth;
use crate::ops::notify::{Liveness, Notifier, status_line};
use crate::pipeline::Route;
use crate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input, Pipeline};
use crate::profile::Registry;
use drivers::RunningDriver;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything a clean stop may take; SPEC §5 promises exit within 5 s.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Buffer(#[from] crate::buffer::BufferError),
    /// A core task ended or panicked: the daemon stopped in order so that the service
    /// manager restarts it (`app::supervise`).
    #[error("core task {task} {why}; polegate stopped so that the service manager restarts it")]
    TaskDied { task: &'static str, why: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Handles the outside world (tests, demo, status lines) may keep.
#[derive(Clone)]
pub struct Handles {
    pub queue: Queue,
    pub counters: Arc<Counters>,
    pub session: Arc<SessionState>,
    /// The pipeline's input, for tools that inject readings (benchmarks, later the
    /// command path). Weak, so it never keeps the pipeline alive at shutdown.
    pub input: mpsc::WeakSender<crate::pipeline::Input>,
    /// Where the `[http]` listener answers, when it is on.
    pub http: Option<std::net::SocketAddr>,
    /// The buffer's degradation (SPEC §5 Storage faults), read by the views.
    pub buffer_health: Arc<BufferHealth>,
    /// The lighting schedules' state (SPEC §10).
    pub schedule: Arc<crate::schedule::Shared>,
}

/// Optional behaviour of [`run_with`].
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Re-read from here on reload; None disables reload.
    pub config_path: Option<PathBuf>,
    /// Watch the config file, `conf.d/` and the plugins directories for changes.
    pub watch_files: bool,
    /// The service manager (sd_notify): READY, RELOADING, STOPPING, STATUS, WATCHDOG.
    pub notifier: Option<Arc<Notifier>>,
    /// Where the lighting schedules learn whether the clock is synchronized; None: the
    /// kernel (`adjtimex`). Tests put a hand on it.
    pub clock: Option<Arc<dyn crate::schedule::clock::ClockSource>>,
}

/// How often the supervisor refreshes `STATUS=` and considers a watchdog ping.
const SUPERVISOR_TICK: Duration = Duration::from_secs(1);
/// A task that has not turned its loop for this long is stalled (idle tasks turn at
/// least every second or every `flush_every_ms`).
const STALL_AFTER: Duration = Duration::from_secs(10);

/// Runs the daemon until `cancel` (no reload), then stops in order. `ready` is called
/// once the buffer and drivers are up (it does not wait for the broker).
pub async fn run(
    cfg: Config,
    registry: Registry,
    cancel: CancellationToken,
    ready: impl FnOnce(&Handles),
) -> Result<(), RunError> {
    run_with(cfg, registry, cancel, ready, None, RunOptions::default()).await
}

/// What decides whether the MQTT session must be reopened.
fn session_identity(cfg: &Config) -> (config::MqttCfg, String, bool) {
    (
        cfg.mqtt.clone(),
        cfg.gateway.id.clone(),
        cfg.commands.enabled,
    )
}

struct SessionSlot {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Everything that lives across reloads.
struct Supervisor {
    cfg: Config,
    queue: Queue,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Input>,
    wake: Arc<Notify>,
    drivers_cancel: CancellationToken,
    drivers: BTreeMap<String, RunningDriver>,
    routes_tx: watch::Sender<Arc<HashMap<String, Route>>>,
    commands_tx: crate::commands::IntakeTx,
    devices_count: Arc<AtomicUsize>,
    session: Option<SessionSlot>,
    session_state: Arc<SessionState>,
    liveness: Arc<Liveness>,
    fleet_tx: watch::Sender<crate::http::Fleet>,
    died: mpsc::Sender<supervise::TaskDeath>,
    schedule: Arc<crate::schedule::Shared>,
    /// `[schedule]` for the scheduler task, replaced on reload.
    schedule_cfg: watch::Sender<Option<config::schedule::ScheduleCfg>>,
}

impl Supervisor {
    fn device_infos(&self) -> Vec<Arc<DeviceInfo>> {
        self.drivers
            .values()
            .flat_map(|d| d.devices.iter().cloned())
            .collect()
    }

    /// The `STATUS=` line.
    fn status(&self) -> String {
        let infos = self.device_infos();
        let online = infos.iter().filter(|d| d.link.is_online()).count();
        status_line(
            online,
            self.devices_count.load(Relaxed),
            self.queue.len(),
            self.session_state.connected.load(Relaxed),
        )
    }

    fn publish_routes(&self) {
        let routes: HashMap<String, Route> = self
            .drivers
            .values()
            .flat_map(|d| d.routes.iter().cloned())
            .collect();
        self.routes_tx.send_replace(Arc::new(routes));
        self.fleet_tx
            .send_replace(views::fleet(&self.device_infos(), &self.cfg));
    }

    fn start_session(&mut self) {
        let cancel = CancellationToken::new();
        let (session, _) = Session::with_state(
            SessionSettings {
                mqtt: self.cfg.mqtt.clone(),
                gateway: self.cfg.gateway.id.clone(),
                devices: self.devices_count.clone(),
                commands: self.cfg.commands.enabled.then(|| self.commands_tx.clone()),
            },
            self.queue.clone(),
            self.wake.clone(),
            self.counters.clone(),
            self.session_state.clone(),
        );
        let session = session
            .with_heartbeat(self.liveness.register("publisher"))
            .with_schedule(self.schedule.subscribe());
        let task = tokio::spawn(session.run(cancel.clone()));
        let task = supervise::watch_core("publisher", task, cancel.clone(), self.died.clone());
        self.session = Some(SessionSlot { cancel, task });
    }

    async fn stop_session(&mut self, deadline: tokio::time::Instant) {
        if let Some(s) = self.session.take() {
            s.cancel.cancel();
            let _ = tokio::time::timeout_at(deadline, s.task).await;
        }
    }
}

/// Like [`run`], with an optional reload trigger channel (SIGHUP) and options.
pub async fn run_with(
    cfg: Config,
    registry: Registry,
    cancel: CancellationToken,
    ready: impl FnOnce(&Handles),
    reload: Option<mpsc::Receiver<()>>,
    opts: RunOptions,
) -> Result<(), RunError> {
    // An unusable state directory (read-only, failing, gone) is a storage fault, not a
    // reason to stop polling (SPEC §5): the queue starts degraded and retries.
    if let Err(e) = std::fs::create_dir_all(&cfg.gateway.state_dir) {
        tracing::error!(path = %cfg.gateway.state_dir.display(), error = %e, "cannot create the state directory");
    }
    let counters = Arc::new(Counters::default());
    let queue = Queue::open_or_degraded(
        &cfg.gateway.state_dir.join("buffer"),
        queue_options(&cfg.buffer),
    )?;
    let recovered = queue.stats().corrupt_recoveries;
    Counters::add(&counters.buffer_corrupt_recovered, recovered);

    let wake = Arc::new(Notify::new());
    let errors = counters.clone();
    queue
        .start_writer(crate::buffer::WriterHooks {
            readable: wake.clone(),
            on_error: Box::new(move || Counters::inc(&errors.buffer_error)),
        })
        .map_err(|source| RunError::Io {
            what: "starting the buffer writer thread",
            source,
        })?;
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let drivers_cancel = cancel.child_token();
    let liveness = Arc::new(Liveness::new());
    // Core tasks that end before `stopping` is cancelled stop the daemon (non-zero exit).
    // A child of `cancel`: the commands task ends on `cancel` at once, and must not be
    // taken for dead before this loop has seen it.
    let stopping = cancel.child_token();
    let (died, mut deaths) = mpsc::channel(4);
    let mut running = BTreeMap::new();
    for plan in plan::plan(&cfg, &registry) {
        let d = drivers::spawn(plan, &queue, &tx, &counters, &drivers_cancel, &liveness).await;
        if let Some(d) = d {
            running.insert(d.key.clone(), d);
        }
    }
    let infos: Vec<Arc<DeviceInfo>> = running
        .values()
        .flat_map(|d: &RunningDriver| d.devices.iter().cloned())
        .collect();
    let pipeline = Pipeline::new(
        pipeline_settings(&cfg),
        queue.clone(),
        wake.clone(),
        counters.clone(),
        &infos,
    )
    .with_heartbeat(liveness.register("pipeline"));
    let (online_tx, online_rx) = mpsc::channel(crate::schedule::task::ONLINE_CAPACITY);
    let pipeline = pipeline.with_online(online_tx);
    let pipeline_task = tokio::spawn(pipeline.run(rx));
    let pipeline_task =
        supervise::watch_core("pipeline", pipeline_task, stopping.clone(), died.clone());

    // Commands: validation, dedup (persisted beside the queue), routing to the drivers.
    let store = match queue.kv("cmd_ids") {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "command ids cannot be persisted; remembered in memory only");
            None
        }
    };
    let (routes_tx, routes_rx) = watch::channel(Arc::new(HashMap::new()));
    let (commands_tx, commands_rx) = crate::commands::intake::channel();
    let dedup = Dedup::open(store, now_ms());
    let (schedule_link, commands_link) = crate::commands::scheduled::channels();
    let commands = Commands::new(routes_rx.clone(), dedup, counters.clone(), tx.clone())
        .with_schedule(commands_link);
    let commands_task = tokio::spawn(commands.run(commands_rx, drivers_cancel.clone()));
    let commands_task =
        supervise::watch_core("commands", commands_task, stopping.clone(), died.clone());

    // Lighting schedules (SPEC §10): one task, idle without [schedule]/[[program]].
    let schedule = crate::schedule::Shared::new();
    let (schedule_cfg, schedule_cfg_rx) = watch::channel(cfg.schedule.clone());
    let inputs = crate::schedule::task::Inputs {
        routes: routes_rx,
        link: schedule_link,
        online: online_rx,
        config: schedule_cfg_rx,
    };
    let clock = opts
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(crate::schedule::clock::Kernel));
    let scheduler =
        crate::schedule::Scheduler::new(cfg.gateway.id.clone(), clock, schedule.clone(), &inputs);
    let schedule_task = tokio::spawn(scheduler.run(inputs, drivers_cancel.clone()));
    let schedule_task =
        supervise::watch_core("schedule", schedule_task, stopping.clone(), died.clone());

    let input = tx.downgrade();
    let mut sup = Supervisor {
        devices_count: Arc::new(AtomicUsize::new(
            cfg.devices.iter().filter(|d| d.enabled).count(),
        )),
        cfg,
        queue: queue.clone(),
        counters: counters.clone(),
        tx,
        wake,
        drivers_cancel: drivers_cancel.clone(),
        drivers: running,
        routes_tx,
        commands_tx,
        session: None,
        session_state: Arc::new(SessionState::default()),
        liveness: liveness.clone(),
        fleet_tx: watch::Sender::new(Arc::new(Vec::new())),
        died,
        schedule: schedule.clone(),
        schedule_cfg,
    };
    sup.publish_routes();
    sup.start_session();

    // The queue owns the degraded state (SPEC §5 Storage faults); the views read it.
    let buffer_health = Arc::new(queue.health());
    let http = views::start_http(
        &sup,
        buffer_health.clone(),
        STALL_AFTER,
        cancel.clone(),
        stopping.clone(),
    )
    .await;
    let handles = Handles {
        queue: queue.clone(),
        counters: counters.clone(),
        session: sup.session_state.clone(),
        input,
        http,
        buffer_health,
        schedule,
    };
    // Reload triggers: the caller's (SIGHUP) and the file watcher's, watching before the
    // daemon says it runs (READY=1): a change made after that is never missed.
    let (trigger_tx, mut triggers) = mpsc::channel::<()>(4);
    if let Some(mut r) = reload {
        let t = trigger_tx.clone();
        tokio::spawn(async move {
            while r.recv().await.is_some() {
                let _ = t.try_send(());
            }
        });
    }
    let _watcher = match (&opts.config_path, opts.watch_files) {
        (Some(path), true) => filewatch::watch(path, &sup.cfg, trigger_tx.clone()),
        _ => None,
    };
    tracing::info!(gateway = %sup.cfg.gateway.id, devices = infos.len(), buffered = queue.len(), "polegate running");
    ready(&handles);
    let notifier = opts
        .notifier
        .clone()
        .unwrap_or_else(|| Arc::new(Notifier::disabled()));
    notifier.ready();
    let mut last_status = sup.status();
    notifier.status(&last_status);
    let watchdog = notifier.watchdog_interval();
    let supervisor_hb = liveness.register("supervisor");
    let mut tick =
        tokio::time::interval(watchdog.map_or(SUPERVISOR_TICK, |w| w.min(SUPERVISOR_TICK)));
    let mut stale_logged = false;
    let mut fatal = None;

    loop {
        supervisor_hb.beat();
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(death) = deaths.recv() => {
                fatal = Some(death);
                break;
            }
            _ = tick.tick() => {
                let line = sup.status();
                if line != last_status {
                    notifier.status(&line);
                    last_status = line;
                }
                if let Some(every) = watchdog {
                    // Ping only while every task turns its loop: a stalled pipeline or
                    // publisher stops the pings and systemd restarts us.
                    let stale = liveness.stale((every * 2).max(STALL_AFTER));
                    if stale.is_empty() {
                        // Logged before the ping it announces (a test reads them in order).
                        if stale_logged {
                            tracing::info!("stalled tasks turn again: watchdog pings resumed");
                            stale_logged = false;
                        }
                        notifier.watchdog();
                    } else if !stale_logged {
                        tracing::error!(tasks = ?stale, "tasks stalled: withholding the watchdog ping");
                        stale_logged = true;
                    }
                }
            }
            Some(()) = triggers.recv() => {
                while triggers.try_recv().is_ok() {}
                let Some(path) = opts.config_path.clone() else { continue };
                notifier.reloading();
                sup.reload(&path).await;
                notifier.ready();
                last_status = sup.status();
                notifier.status(&last_status);
            }
        }
    }

    stopping.cancel();
    notifier.stopping();
    tracing::info!("stopping");
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    drivers_cancel.cancel();
    for (_, d) in std::mem::take(&mut sup.drivers) {
        d.stop(deadline).await;
    }
    let _ = tokio::time::timeout_at(deadline, commands_task).await;
    let _ = tokio::time::timeout_at(deadline, schedule_task).await;
    let Supervisor { tx, session, .. } = sup;
    drop(tx);
    // All senders are gone once the drivers are: the pipeline drains and flushes.
    if tokio::time::timeout_at(deadline, pipeline_task)
        .await
        .is_err()
    {
        tracing::error!("pipeline did not drain before the deadline");
    }
    if let Some(s) = session {
        s.cancel.cancel();
        let _ = tokio::time::timeout_at(deadline, s.task).await;
    }
    let q = queue.clone();
    let closed = tokio::task::spawn_blocking(move || q.flush().and_then(|()| q.close_seq())).await;
    match closed {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "final buffer flush failed"),
        Err(e) => tracing::error!(error = %e, "final buffer flush task failed"),
    }
    let lost = queue.held_in_memory();
    if lost > 0 {
        tracing::error!(
            lost,
            "stopping while the buffer cannot store: events held only in memory are lost"
        );
    }
    tracing::info!(buffered = queue.len().saturating_sub(lost), "stopped");
    match fatal {
        None => Ok(()),
        Some(supervise::TaskDeath { task, why }) => Err(RunError::TaskDied { task, why }),
    }
}
