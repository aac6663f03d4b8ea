//! The supervisor's life: the parts started in order, the running loop (status line,
//! watchdog, core task deaths, reload triggers), and the ordered stop under
//! [`SHUTDOWN_DEADLINE`].

use super::parts::{self, SessionParts, Shared};
use super::{
    RunOptions, SHUTDOWN_DEADLINE, STALL_AFTER, SUPERVISOR_TICK, Supervisor, drivers, filewatch,
    plan, supervise, views,
};
use crate::config::Config;
use crate::northbound::mqtt::SessionState;
use crate::ops::notify::{Notifier, status_line};
use crate::pipeline::{DeviceInfo, Input, Route};
use crate::profile::Registry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

impl Supervisor {
    /// Starts the parts in order: drivers, pipeline, command intake, schedules, then the
    /// MQTT session once the routes are published.
    pub(super) async fn start(
        cfg: Config,
        registry: &Registry,
        sh: Shared,
        rx: mpsc::Receiver<Input>,
        opts: &RunOptions,
    ) -> Supervisor {
        let mut running = BTreeMap::new();
        for plan in plan::plan(&cfg, registry) {
            if let Some(d) = drivers::spawn(plan, &sh).await {
                running.insert(d.key.clone(), d);
            }
        }
        let infos: Vec<Arc<DeviceInfo>> = running
            .values()
            .flat_map(|d: &drivers::RunningDriver| d.devices.iter().cloned())
            .collect();
        let (online_tx, online_rx) = mpsc::channel(crate::schedule::task::ONLINE_CAPACITY);
        let pipeline = parts::pipeline(&sh, &cfg, &infos, rx, online_tx);
        let (routes_tx, routes_rx) = watch::channel(Arc::new(HashMap::new()));
        let (schedule_link, commands_link) = crate::commands::scheduled::channels();
        let (commands, commands_tx) = parts::commands(&sh, routes_rx.clone(), commands_link);
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
        let scheduler = parts::scheduler(&sh, &cfg.gateway.id, clock, &schedule, inputs);
        let mut sup = Supervisor {
            devices_count: Arc::new(AtomicUsize::new(
                cfg.devices.iter().filter(|d| d.enabled).count(),
            )),
            cfg,
            sh,
            drivers: running,
            routes_tx,
            commands_tx,
            pipeline,
            commands,
            scheduler,
            session: None,
            session_state: Arc::new(SessionState::default()),
            fleet_tx: watch::Sender::new(Arc::new(Vec::new())),
            schedule,
            schedule_cfg,
        };
        sup.publish_routes();
        sup.start_session();
        sup
    }

    pub(super) fn device_infos(&self) -> Vec<Arc<DeviceInfo>> {
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
            self.sh.queue.len(),
            self.session_state.connected.load(Relaxed),
        )
    }

    pub(super) fn publish_routes(&self) {
        let routes: HashMap<String, Route> = self
            .drivers
            .values()
            .flat_map(|d| d.routes.iter().cloned())
            .collect();
        self.routes_tx.send_replace(Arc::new(routes));
        self.fleet_tx
            .send_replace(views::fleet(&self.device_infos(), &self.cfg));
    }

    pub(super) fn start_session(&mut self) {
        let parts = SessionParts {
            devices: &self.devices_count,
            commands: &self.commands_tx,
            state: &self.session_state,
            schedule: &self.schedule,
        };
        self.session = Some(parts::session(&self.sh, &self.cfg, parts));
    }

    pub(super) async fn stop_session(&mut self, deadline: tokio::time::Instant) {
        if let Some(s) = self.session.take() {
            s.stop(deadline).await;
        }
    }

    /// Runs until `cancel` or a core task's death (returned): refreshes `STATUS=`, pings
    /// the watchdog while every task turns its loop, and reloads from `config_path` on
    /// each trigger.
    pub(super) async fn run_until(
        &mut self,
        cancel: &CancellationToken,
        mut deaths: mpsc::Receiver<supervise::TaskDeath>,
        mut triggers: mpsc::Receiver<()>,
        notifier: &Notifier,
        config_path: Option<&Path>,
    ) -> Option<supervise::TaskDeath> {
        notifier.ready();
        let mut last_status = self.status();
        notifier.status(&last_status);
        let watchdog = notifier.watchdog_interval();
        let supervisor_hb = self.sh.liveness.register("supervisor");
        let mut tick =
            tokio::time::interval(watchdog.map_or(SUPERVISOR_TICK, |w| w.min(SUPERVISOR_TICK)));
        let mut stale_logged = false;
        loop {
            supervisor_hb.beat();
            tokio::select! {
                _ = cancel.cancelled() => return None,
                Some(death) = deaths.recv() => return Some(death),
                _ = tick.tick() => {
                    let line = self.status();
                    if line != last_status {
                        notifier.status(&line);
                        last_status = line;
                    }
                    if let Some(every) = watchdog {
                        self.watchdog(notifier, every, &mut stale_logged);
                    }
                }
                Some(()) = triggers.recv() => {
                    while triggers.try_recv().is_ok() {}
                    let Some(path) = config_path else { continue };
                    notifier.reloading();
                    self.reload(path).await;
                    notifier.ready();
                    last_status = self.status();
                    notifier.status(&last_status);
                }
            }
        }
    }

    /// Pings only while every task turns its loop: a stalled pipeline or publisher stops
    /// the pings and systemd restarts us.
    fn watchdog(&self, notifier: &Notifier, every: std::time::Duration, stale_logged: &mut bool) {
        let stale = self.sh.liveness.stale((every * 2).max(STALL_AFTER));
        if stale.is_empty() {
            // Logged before the ping it announces (a test reads them in order).
            if *stale_logged {
                tracing::info!("stalled tasks turn again: watchdog pings resumed");
                *stale_logged = false;
            }
            notifier.watchdog();
        } else if !*stale_logged {
            tracing::error!(tasks = ?stale, "tasks stalled: withholding the watchdog ping");
            *stale_logged = true;
        }
    }

    /// Stops in order under [`SHUTDOWN_DEADLINE`]: drivers, then the command intake and
    /// the schedules (they end with the drivers), then the pipeline drains and flushes
    /// once every sender is gone, then the MQTT session, then the queue's final flush.
    pub(super) async fn stop(self, notifier: &Notifier) {
        self.sh.stopping.cancel();
        notifier.stopping();
        tracing::info!("stopping");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        let Supervisor {
            sh,
            drivers,
            pipeline,
            commands,
            scheduler,
            session,
            ..
        } = self;
        sh.drivers_cancel.cancel();
        for (_, d) in drivers {
            d.stop(deadline).await;
        }
        commands.stop(deadline).await;
        scheduler.stop(deadline).await;
        let Shared { queue, tx, .. } = sh;
        drop(tx);
        // All senders are gone once the drivers are: the pipeline drains and flushes.
        if !pipeline.stop(deadline).await {
            tracing::error!("pipeline did not drain before the deadline");
        }
        if let Some(s) = session {
            s.stop(deadline).await;
        }
        final_flush(queue).await;
    }
}

/// Flushes the queue and closes its seq (the next run continues at the next value).
async fn final_flush(queue: crate::buffer::Queue) {
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
}

/// The reload triggers: the caller's (SIGHUP) and, with `watch_files`, the file
/// watcher's (kept alive by the returned watcher).
pub(super) fn triggers(
    reload: Option<mpsc::Receiver<()>>,
    opts: &RunOptions,
    cfg: &Config,
) -> (mpsc::Receiver<()>, Option<filewatch::Watcher>) {
    let (trigger_tx, triggers) = mpsc::channel::<()>(4);
    if let Some(mut r) = reload {
        let t = trigger_tx.clone();
        tokio::spawn(async move {
            while r.recv().await.is_some() {
                let _ = t.try_send(());
            }
        });
    }
    let watcher = match (&opts.config_path, opts.watch_files) {
        (Some(path), true) => filewatch::watch(path, cfg, trigger_tx),
        _ => None,
    };
    (triggers, watcher)
}
