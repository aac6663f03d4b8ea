//! The supervisor: builds the components from a validated configuration, runs them,
//! applies reloads as a diff, and shuts them down in order under a deadline: drivers
//! stop, the pipeline drains into the queue and flushes it, then the MQTT session
//! publishes `offline` and disconnects.
//!
//! Reload (SIGHUP or a file change): the new configuration is loaded and validated; if
//! invalid, every error is logged and the running one stays. Otherwise only what changed
//! is rebuilt: drivers whose settings changed (`plan::DriverSettings`, compared with `==`)
//! restart (births are re-sent when they poll), new ones start, removed devices get an
//! offline state with reason "removed", untouched drivers keep running and miss no poll,
//! the MQTT session is reopened only when `[mqtt]` (or the gateway id, or
//! `commands.enabled`) changed, and the queue is never dropped. `state_dir` and `[buffer]` changes take effect at the next restart.
//!
//! Layout: `parts.rs` (each part of the daemon built, started and stopped in one shape:
//! the buffer and what the parts share, the pipeline, the command intake, the schedules,
//! the MQTT session), `plan.rs` and `drivers.rs` (drivers planned from the configuration
//! with their settings, started under `supervise.rs`), `views.rs` (the HTTP listener),
//! `lifecycle.rs` (start in order, the running loop, the ordered stop), `reload.rs` (the
//! diff), `filewatch.rs` and `load.rs`.

pub mod drivers;
pub mod filewatch;
mod lifecycle;
mod load;
mod parts;
mod plan;
mod reload;
pub mod supervise;
mod views;

use load::pipeline_settings;
pub use load::{Loaded, load, queue_options};

use crate::buffer::Queue;
use crate::config::{self, Config};
use crate::northbound::mqtt::SessionState;
use crate::ops::counters::Counters;
use crate::ops::health::BufferHealth;
use crate::ops::notify::Notifier;
use crate::profile::Registry;
use drivers::RunningDriver;
use parts::{Part, Routes, Shared};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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

/// Everything that lives across reloads: the parts (`parts.rs`) and the handles the
/// reload diff and the views need.
struct Supervisor {
    cfg: Config,
    sh: Shared,
    drivers: BTreeMap<String, RunningDriver>,
    routes_tx: watch::Sender<Routes>,
    commands_tx: crate::commands::IntakeTx,
    devices_count: Arc<AtomicUsize>,
    pipeline: Part,
    commands: Part,
    scheduler: Part,
    session: Option<Part>,
    session_state: Arc<SessionState>,
    fleet_tx: watch::Sender<crate::http::Fleet>,
    schedule: Arc<crate::schedule::Shared>,
    /// `[schedule]` for the scheduler task, replaced on reload.
    schedule_cfg: watch::Sender<Option<config::schedule::ScheduleCfg>>,
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
    let (sh, rx, deaths) = parts::build(&cfg, &cancel)?;
    let mut sup = Supervisor::start(cfg, &registry, sh, rx, &opts).await;
    // The queue owns the degraded state (SPEC §5 Storage faults); the views read it.
    let buffer_health = Arc::new(sup.sh.queue.health());
    let http = views::start_http(&sup, buffer_health.clone(), STALL_AFTER, cancel.clone()).await;
    let handles = Handles {
        queue: sup.sh.queue.clone(),
        counters: sup.sh.counters.clone(),
        session: sup.session_state.clone(),
        input: sup.sh.tx.downgrade(),
        http,
        buffer_health,
        schedule: sup.schedule.clone(),
    };
    // Reload triggers: the caller's (SIGHUP) and the file watcher's, watching before the
    // daemon says it runs (READY=1): a change made after that is never missed.
    let (triggers, _watcher) = lifecycle::triggers(reload, &opts, &sup.cfg);
    tracing::info!(gateway = %sup.cfg.gateway.id, devices = sup.device_infos().len(), buffered = sup.sh.queue.len(), "polegate running");
    ready(&handles);
    let notifier = opts
        .notifier
        .clone()
        .unwrap_or_else(|| Arc::new(Notifier::disabled()));
    let fatal = sup
        .run_until(
            &cancel,
            deaths,
            triggers,
            &notifier,
            opts.config_path.as_deref(),
        )
        .await;
    sup.stop(&notifier).await;
    match fatal {
        None => Ok(()),
        Some(supervise::TaskDeath { task, why }) => Err(RunError::TaskDied { task, why }),
    }
}
