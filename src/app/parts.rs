//! The daemon's parts, in one shape: each is built from the configuration and what the
//! parts share ([`Shared`]), started as a task held in a [`Part`] (a core task watched
//! by `supervise::watch_core`, or a driver restarted by `supervise::Driver`), and stopped
//! through [`Part::stop`]. The HTTP listener is a watched core task that ends with the
//! root token, and the file watcher ends when dropped. The supervisor (`supervisor.rs`) starts them in order and
//! stops them in the order SPEC §5 needs: drivers, command intake and schedules, then
//! the pipeline drains into the queue, then the MQTT session, then the final flush.

use super::{RunError, load::pipeline_settings, queue_options, supervise};
use crate::buffer::Queue;
use crate::commands::dedup::Dedup;
use crate::commands::{Commands, IntakeTx};
use crate::config::Config;
use crate::model::now_ms;
use crate::northbound::mqtt::{Session, SessionSettings, SessionState};
use crate::ops::counters::Counters;
use crate::ops::notify::Liveness;
use crate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input, Pipeline, Route};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The routes of every running device, as the command path and the scheduler read them.
pub(super) type Routes = Arc<HashMap<String, Route>>;

/// A started part: its task, and the token that stops it when it has its own (a driver,
/// the MQTT session; the pipeline ends when its inputs close, the command intake and the
/// scheduler end with the drivers).
pub(super) struct Part {
    task: JoinHandle<()>,
    stop: Option<CancellationToken>,
}

impl Part {
    /// Watches `task` as core task `name`: its end is a death unless it was asked to
    /// stop (its own token when it has one, else the daemon's `stopping`).
    fn core(
        name: &'static str,
        task: JoinHandle<()>,
        stop: Option<CancellationToken>,
        sh: &Shared,
    ) -> Part {
        let expected = stop.clone().unwrap_or_else(|| sh.stopping.clone());
        Part {
            task: supervise::watch_core(name, task, expected, sh.died.clone()),
            stop,
        }
    }

    /// A part stopped through `stop` whose end is watched elsewhere (a driver restarts
    /// under `supervise::Driver`).
    pub(super) fn new(task: JoinHandle<()>, stop: CancellationToken) -> Part {
        Part {
            task,
            stop: Some(stop),
        }
    }

    /// Asks the part to stop (when it has its own token) and waits for it until
    /// `deadline`; false when it did not end in time.
    pub(super) async fn stop(self, deadline: Instant) -> bool {
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
        tokio::time::timeout_at(deadline, self.task).await.is_ok()
    }
}

/// What the parts share, built first.
pub(super) struct Shared {
    pub queue: Queue,
    pub counters: Arc<Counters>,
    /// Wakes the publisher when the queue has something to read.
    pub wake: Arc<Notify>,
    pub liveness: Arc<Liveness>,
    /// The pipeline's input; dropped at shutdown so that the pipeline drains.
    pub tx: mpsc::Sender<Input>,
    /// Drivers, the command intake and the scheduler end on it.
    pub drivers_cancel: CancellationToken,
    /// Cancelled when the daemon stops. A child of the root token: the commands task ends
    /// on the root at once, and must not be taken for dead before the supervisor has seen
    /// it.
    pub stopping: CancellationToken,
    pub died: mpsc::Sender<supervise::TaskDeath>,
}

/// Builds the buffer (the queue and its writer thread) and what the parts share; with
/// the pipeline's input and the core task deaths to receive.
pub(super) fn build(
    cfg: &Config,
    cancel: &CancellationToken,
) -> Result<
    (
        Shared,
        mpsc::Receiver<Input>,
        mpsc::Receiver<supervise::TaskDeath>,
    ),
    RunError,
> {
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
    let (died, deaths) = mpsc::channel(4);
    let shared = Shared {
        queue,
        counters,
        wake,
        liveness: Arc::new(Liveness::new()),
        tx,
        drivers_cancel: cancel.child_token(),
        stopping: cancel.child_token(),
        died,
    };
    Ok((shared, rx, deaths))
}

/// The pipeline (deadband, heartbeat, seq, into the queue), reading `rx` until every
/// sender is gone; devices coming online are told to the scheduler on `online`.
pub(super) fn pipeline(
    sh: &Shared,
    cfg: &Config,
    infos: &[Arc<DeviceInfo>],
    rx: mpsc::Receiver<Input>,
    online: mpsc::Sender<String>,
) -> Part {
    let pipeline = Pipeline::new(
        pipeline_settings(cfg),
        sh.queue.clone(),
        sh.wake.clone(),
        sh.counters.clone(),
        infos,
    )
    .with_heartbeat(sh.liveness.register("pipeline"))
    .with_online(online);
    Part::core("pipeline", tokio::spawn(pipeline.run(rx)), None, sh)
}

/// The command intake: validation, dedup (persisted beside the queue), routing to the
/// drivers; with the handle the MQTT session offers commands to.
pub(super) fn commands(
    sh: &Shared,
    routes: watch::Receiver<Routes>,
    link: crate::commands::scheduled::CommandsLink,
) -> (Part, IntakeTx) {
    let store = match sh.queue.kv("cmd_ids") {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "command ids cannot be persisted; remembered in memory only");
            None
        }
    };
    let (intake, intake_rx) = crate::commands::intake::channel();
    let dedup = Dedup::open(store, now_ms());
    let commands =
        Commands::new(routes, dedup, sh.counters.clone(), sh.tx.clone()).with_schedule(link);
    let task = tokio::spawn(commands.run(intake_rx, sh.drivers_cancel.clone()));
    (Part::core("commands", task, None, sh), intake)
}

/// The lighting schedules (SPEC §10): one task, idle without `[schedule]`/`[[program]]`.
pub(super) fn scheduler(
    sh: &Shared,
    gateway: &str,
    clock: Arc<dyn crate::schedule::clock::ClockSource>,
    state: &Arc<crate::schedule::Shared>,
    inputs: crate::schedule::task::Inputs,
) -> Part {
    let scheduler =
        crate::schedule::Scheduler::new(gateway.to_string(), clock, state.clone(), &inputs);
    let task = tokio::spawn(scheduler.run(inputs, sh.drivers_cancel.clone()));
    Part::core("schedule", task, None, sh)
}

/// What the MQTT session is started with besides the configuration.
pub(super) struct SessionParts<'a> {
    pub devices: &'a Arc<AtomicUsize>,
    pub commands: &'a IntakeTx,
    pub state: &'a Arc<SessionState>,
    pub schedule: &'a Arc<crate::schedule::Shared>,
}

/// The northbound MQTT session (publisher, command subscription); reopened on reload
/// when its identity changes, so it has its own stop token.
pub(super) fn session(sh: &Shared, cfg: &Config, p: SessionParts) -> Part {
    let cancel = CancellationToken::new();
    let (session, _) = Session::with_state(
        SessionSettings {
            mqtt: cfg.mqtt.clone(),
            gateway: cfg.gateway.id.clone(),
            devices: p.devices.clone(),
            commands: cfg.commands.enabled.then(|| p.commands.clone()),
        },
        sh.queue.clone(),
        sh.wake.clone(),
        sh.counters.clone(),
        p.state.clone(),
    );
    let session = session
        .with_heartbeat(sh.liveness.register("publisher"))
        .with_schedule(p.schedule.subscribe());
    let task = tokio::spawn(session.run(cancel.clone()));
    Part::core("publisher", task, Some(cancel), sh)
}
