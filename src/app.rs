//! The supervisor: builds the components from a validated configuration, runs them, and
//! shuts them down in order under a deadline: drivers stop, the pipeline drains into the
//! queue and flushes it, then the MQTT session publishes `offline` and disconnects.

use crate::buffer::{Queue, QueueOptions};
use crate::commands::dedup::Dedup;
use crate::commands::{Commands, INPUT_CAPACITY as COMMANDS_CAPACITY, Route};
use crate::config::{self, Config, Transport};
use crate::model::now_ms;
use crate::northbound::mqtt::{Session, SessionSettings, SessionState};
use crate::ops::counters::Counters;
use crate::pipeline::{DeviceInfo, INPUT_CAPACITY, Pipeline, PipelineSettings};
use crate::profile::Registry;
use crate::southbound::INBOX_CAPACITY;
use crate::southbound::modbus::link::{PolledDevice, REQUEST_TIMEOUT, TcpLink, run_link};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Everything a clean stop may take; SPEC §5 promises exit within 5 s.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Buffer(#[from] crate::buffer::BufferError),
}

/// Configuration and profiles, validated together; every problem as one line.
pub struct Loaded {
    pub config: Config,
    pub registry: Registry,
    /// Problems in profile files no device uses (warnings for `run`).
    pub profile_warnings: Vec<String>,
}

/// Loads and validates the configuration and the profiles it uses.
/// `strict` (for `check`) makes every profile problem an error.
pub fn load(path: &Path, strict: bool) -> Result<Loaded, Vec<String>> {
    let cfg =
        config::load(path).map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let (registry, profile_errors) = Registry::load(&cfg.gateway.plugins_dirs);
    let mut errors: Vec<String> = config::cross_check(&cfg, &registry)
        .iter()
        .map(|e| e.to_string())
        .collect();
    let profile_errors: Vec<String> = profile_errors.iter().map(|e| e.to_string()).collect();
    if strict || !errors.is_empty() {
        errors.extend(profile_errors.iter().cloned());
    }
    if errors.is_empty() {
        Ok(Loaded {
            config: cfg,
            registry,
            profile_warnings: if strict { vec![] } else { profile_errors },
        })
    } else {
        Err(errors)
    }
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
}

/// Runs the daemon until `cancel`, then stops in order. `ready` is called once the
/// buffer and drivers are up (it does not wait for the broker).
pub async fn run(
    cfg: Config,
    registry: Registry,
    cancel: CancellationToken,
    ready: impl FnOnce(&Handles),
) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.gateway.state_dir).map_err(|source| RunError::StateDir {
        path: cfg.gateway.state_dir.display().to_string(),
        source,
    })?;
    let counters = Arc::new(Counters::default());
    let queue = Queue::open(
        &cfg.gateway.state_dir.join("buffer"),
        QueueOptions {
            max_bytes: cfg.buffer.max_bytes,
            on_full: cfg.buffer.on_full,
            ..QueueOptions::default()
        },
    )?;
    let recovered = queue.stats().corrupt_recoveries;
    Counters::add(&counters.buffer_corrupt_recovered, recovered);

    // Devices and their links.
    let mut infos = Vec::new();
    let mut lora_devices = Vec::new();
    let script_engine = crate::script::Engine::new();
    let mut links: BTreeMap<(String, bool), TcpLink> = BTreeMap::new();
    for d in cfg.devices.iter().filter(|d| d.enabled) {
        let Some(profile) = registry.get(&d.profile) else {
            tracing::error!(device_id = %d.id, profile = %d.profile, "profile not found; device skipped");
            continue;
        };
        let info = Arc::new(DeviceInfo {
            id: d.id.clone(),
            online: Default::default(),
            kind: profile.kind,
            profile: profile.clone(),
            meta: d.meta.clone(),
            heartbeat_ms: d.heartbeat_s.saturating_mul(1000),
        });
        let poll = Duration::from_millis(d.effective_poll_ms(profile.poll_ms));
        match &d.transport {
            Transport::ModbusTcp {
                address,
                unit,
                framing,
            } => {
                let key = (address.clone(), *framing == config::Framing::Rtu);
                links
                    .entry(key)
                    .or_insert_with(|| TcpLink {
                        address: address.clone(),
                        framing: *framing,
                        devices: Vec::new(),
                        request_timeout: REQUEST_TIMEOUT,
                    })
                    .devices
                    .push(PolledDevice::new(info.clone(), *unit, poll));
            }
            Transport::Lora(l) if cfg.lora.is_some() => {
                let codec = match crate::southbound::lora::codec::LoraCodec::load(
                    &script_engine,
                    profile,
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(device_id = %d.id, error = %e, "LoRa profile script unusable; uplinks not decoded");
                        None
                    }
                };
                lora_devices.push(crate::southbound::lora::core::LoraDevice {
                    info: info.clone(),
                    cfg: l.clone(),
                    codec,
                });
            }
            other => {
                tracing::warn!(device_id = %d.id, transport = other.label(), "transport not supported by this build yet (a LoRa device needs [lora]); device skipped");
                continue;
            }
        }
        infos.push(info);
    }

    let wake = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let pipeline = Pipeline::new(
        PipelineSettings {
            gateway: cfg.gateway.id.clone(),
            topic_prefix: cfg.mqtt.topic_prefix.clone(),
            flush_every: Duration::from_millis(cfg.buffer.flush_every_ms.max(1)),
            stats_every: (cfg.stats.interval_s > 0)
                .then(|| Duration::from_secs(cfg.stats.interval_s)),
        },
        queue.clone(),
        wake.clone(),
        counters.clone(),
        &infos,
    );
    let pipeline_task = tokio::spawn(pipeline.run(rx));

    let drivers = cancel.child_token();
    let mut driver_tasks = Vec::new();
    let mut routes = HashMap::new();
    for link in links.into_values() {
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        for (index, d) in link.devices.iter().enumerate() {
            routes.insert(
                d.info.id.clone(),
                Route {
                    info: d.info.clone(),
                    inbox: inbox_tx.clone(),
                    index,
                },
            );
        }
        driver_tasks.push(tokio::spawn(run_link(
            link,
            inbox_rx,
            tx.clone(),
            counters.clone(),
            drivers.clone(),
        )));
    }

    // LoRa: one UDP socket (or the network server's MQTT) only when [lora] is present.
    if let Some(lcfg) = &cfg.lora {
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        for (index, d) in lora_devices.iter().enumerate() {
            routes.insert(
                d.info.id.clone(),
                Route {
                    info: d.info.clone(),
                    inbox: inbox_tx.clone(),
                    index,
                },
            );
        }
        match crate::southbound::lora::spawn(
            lcfg,
            lora_devices,
            &queue,
            counters.clone(),
            inbox_rx,
            tx.clone(),
            drivers.clone(),
        )
        .await
        {
            Ok(task) => driver_tasks.push(task),
            Err(e) => tracing::error!(error = %e, "LoRa source not started"),
        }
    }

    // Commands: validation, dedup (persisted beside the queue), routing to the drivers.
    let commands_tx = if cfg.commands.enabled {
        let store = match queue.kv("cmd_ids") {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "command ids cannot be persisted; remembered in memory only");
                None
            }
        };
        let (ctx, crx) = mpsc::channel(COMMANDS_CAPACITY);
        let cmds = Commands::new(routes, Dedup::open(store, now_ms()), tx.clone());
        driver_tasks.push(tokio::spawn(cmds.run(crx, drivers.clone())));
        Some(ctx)
    } else {
        None
    };
    // Held until the drivers have stopped, so the pipeline (stats) runs even with no
    // devices; then dropped so the pipeline drains and ends.
    let input = tx.downgrade();

    let session_cancel = CancellationToken::new();
    let (session, session_state) = Session::new(
        SessionSettings {
            mqtt: cfg.mqtt.clone(),
            gateway: cfg.gateway.id.clone(),
            devices: cfg.devices.iter().filter(|d| d.enabled).count(),
            commands: commands_tx,
        },
        queue.clone(),
        wake,
        counters.clone(),
    );
    let session_task = tokio::spawn(session.run(session_cancel.clone()));

    let handles = Handles {
        queue: queue.clone(),
        counters: counters.clone(),
        session: session_state,
        input,
    };
    tracing::info!(gateway = %cfg.gateway.id, devices = infos.len(), buffered = queue.len(), "polegate running");
    ready(&handles);

    cancel.cancelled().await;
    tracing::info!("stopping");
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    drivers.cancel();
    for t in driver_tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    drop(tx);
    // All senders are gone once the drivers are: the pipeline drains and flushes.
    if tokio::time::timeout_at(deadline, pipeline_task)
        .await
        .is_err()
    {
        tracing::error!("pipeline did not drain before the deadline");
    }
    session_cancel.cancel();
    let _ = tokio::time::timeout_at(deadline, session_task).await;
    if let Err(e) = queue.flush() {
        tracing::error!(error = %e, "final buffer flush failed");
    }
    tracing::info!(buffered = queue.len(), "stopped");
    Ok(())
}
