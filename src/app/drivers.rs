//! Planning driver tasks from a configuration, and starting/stopping them. A plan has a
//! key (the connection or bus it owns) and a fingerprint (everything that shapes its
//! behaviour: transport settings, device entries, their profiles); reload compares
//! fingerprints so an untouched driver keeps running and misses no poll.

use super::supervise;
use crate::config::{self, Config, Transport};
use crate::model::command::WriteRequest;
use crate::ops::backoff::Backoff;
use crate::ops::counters::Counters;
use crate::ops::notify::{Heartbeat, Liveness};
use crate::pipeline::Route;
use crate::pipeline::{DeviceInfo, Input};
use crate::profile::Registry;
use crate::southbound::INBOX_CAPACITY;
use crate::southbound::modbus::LinkSet;
use crate::southbound::modbus::link::{Link, run_link_beating};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to run one planned driver (cloned for every restart).
#[derive(Debug, Clone)]
pub enum DriverKind {
    Modbus(Link),
    /// The cabinet's LoRa source (Semtech UDP or ChirpStack) and its devices.
    Lora(
        Box<crate::config::lora::LoraCfg>,
        Vec<crate::southbound::lora::driver::LoraDevice>,
    ),
    Serial(crate::southbound::serial::SerialBus),
    /// The OCPP listener (`[ocpp]`) and its connector devices.
    Ocpp(
        Box<crate::config::ocpp::OcppCfg>,
        Vec<crate::southbound::ocpp::OcppDevice>,
    ),
    /// An SNMP agent and the devices read through it (SPEC §11).
    Snmp(crate::southbound::snmp::SnmpAgent),
    /// Every device with `reach` (SPEC §11).
    Reach(Vec<crate::southbound::reach::ReachDevice>),
}

#[derive(Debug)]
pub struct DriverPlan {
    pub key: String,
    pub fingerprint: String,
    pub devices: Vec<Arc<DeviceInfo>>,
    pub kind: DriverKind,
}

pub struct RunningDriver {
    pub key: String,
    pub fingerprint: String,
    pub devices: Vec<Arc<DeviceInfo>>,
    pub routes: Vec<(String, Route)>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningDriver {
    /// Stops the task (bounded by `deadline`).
    pub async fn stop(self, deadline: tokio::time::Instant) {
        self.cancel.cancel();
        if tokio::time::timeout_at(deadline, self.task).await.is_err() {
            tracing::warn!(driver = %self.key, "driver did not stop in time");
        }
    }
}

/// Device infos for every enabled device whose profile exists, by id.
fn device_info(d: &config::DeviceCfg, registry: &Registry) -> Option<Arc<DeviceInfo>> {
    let Some(profile) = registry.get(&d.profile) else {
        tracing::error!(device_id = %d.id, profile = %d.profile, "profile not found; device skipped");
        return None;
    };
    // A device with `reach` also publishes reachable/rtt (SPEC §11).
    let profile = match &d.reach {
        Some(_) if profile.protocol != crate::profile::Protocol::Reach => {
            Arc::new(crate::profile::snmp::with_reach(profile))
        }
        _ => profile.clone(),
    };
    Some(Arc::new(DeviceInfo::new(
        d.id.clone(),
        profile,
        d.meta.clone(),
        d.heartbeat_s.saturating_mul(1000),
    )))
}

/// Groups the configuration's enabled devices into driver tasks.
pub fn plan(cfg: &Config, registry: &Registry) -> Vec<DriverPlan> {
    let mut modbus = LinkSet::new(&cfg.buses);
    let mut serial = crate::southbound::serial::Buses::default();
    let mut lora = Vec::new();
    let mut ocpp = Vec::new();
    let mut snmp = crate::southbound::snmp::Agents::default();
    let mut reach = Vec::new();
    let script_engine = crate::script::Engine::new();
    for d in cfg.devices.iter().filter(|d| d.enabled) {
        let Some(info) = device_info(d, registry) else {
            continue;
        };
        let poll = Duration::from_millis(d.effective_poll_ms(info.profile.poll_ms));
        if let Some(target) = &d.reach {
            reach.push(crate::southbound::reach::ReachDevice {
                info: info.clone(),
                target: target.clone(),
                poll,
                alone: d.transport == Transport::Reach,
            });
        }
        match &d.transport {
            Transport::Reach => {}
            Transport::Serial { bus, address } => {
                serial.add(cfg, bus, info, address, poll);
            }
            Transport::Lora(l) if cfg.lora.is_some() => {
                let codec =
                    crate::southbound::lora::script::LoraCodec::new(&script_engine, &info.profile);
                if codec.is_none() {
                    tracing::error!(device_id = %d.id, profile = %d.profile, "not a LoRa profile; uplinks not decoded");
                }
                lora.push(crate::southbound::lora::driver::LoraDevice {
                    info,
                    cfg: l.clone(),
                    codec,
                });
            }
            Transport::Snmp(s) => {
                snmp.add(cfg, s, info, poll);
            }
            Transport::Ocpp(o) if cfg.ocpp.is_some() => {
                ocpp.push(crate::southbound::ocpp::OcppDevice {
                    info,
                    cfg: o.clone(),
                });
            }
            other => {
                if let Err(transport) = modbus.add(other, info, poll) {
                    tracing::warn!(device_id = %d.id, transport, "transport not supported by this build yet; device skipped");
                }
            }
        }
    }
    // Fingerprints are taken from freshly planned drivers, so runtime state never
    // enters them; any difference in settings, devices or profiles restarts the driver.
    let mut plans: Vec<DriverPlan> = modbus
        .into_links()
        .into_iter()
        .map(|(key, link)| DriverPlan {
            fingerprint: format!("{link:?}"),
            devices: link.devices.iter().map(|d| d.info.clone()).collect(),
            key: format!("modbus {key}"),
            kind: DriverKind::Modbus(link),
        })
        .collect();
    // LoRa: one UDP socket (or the network server's MQTT) only when [lora] is present.
    if let Some(lcfg) = &cfg.lora {
        let fp: String = lora
            .iter()
            .map(|d| format!("{:?}{:?}", d.info, d.cfg))
            .collect();
        plans.push(DriverPlan {
            fingerprint: format!("{lcfg:?}|{fp}"),
            devices: lora.iter().map(|d| d.info.clone()).collect(),
            key: "lora".into(),
            kind: DriverKind::Lora(Box::new(lcfg.clone()), lora),
        });
    }
    // OCPP: one listener only when [ocpp] is present.
    if let Some(ocfg) = &cfg.ocpp {
        let fp: String = ocpp
            .iter()
            .map(|d| format!("{:?}{:?}", d.info, d.cfg))
            .collect();
        plans.push(DriverPlan {
            fingerprint: format!("{ocfg:?}|{fp}"),
            devices: ocpp.iter().map(|d| d.info.clone()).collect(),
            key: "ocpp".into(),
            kind: DriverKind::Ocpp(Box::new(ocfg.clone()), ocpp),
        });
    }
    for bus in serial.into_buses() {
        plans.push(DriverPlan {
            fingerprint: format!("{bus:?}"),
            devices: bus.devices.iter().map(|d| d.info.clone()).collect(),
            key: format!("serial {}", bus.cfg.id),
            kind: DriverKind::Serial(bus),
        });
    }
    if !reach.is_empty() {
        let fp: String = reach.iter().map(|d| format!("{d:?}")).collect();
        plans.push(DriverPlan {
            fingerprint: fp,
            // Commands and state belong to the transport's driver; only reach-only
            // devices are this task's own.
            devices: reach
                .iter()
                .filter(|d| d.alone)
                .map(|d| d.info.clone())
                .collect(),
            key: "reach".into(),
            kind: DriverKind::Reach(reach),
        });
    }
    for agent in snmp.into_agents() {
        plans.push(DriverPlan {
            fingerprint: agent.fingerprint(),
            devices: agent.devices.iter().map(|d| d.info.clone()).collect(),
            key: format!("snmp {}", agent.id),
            kind: DriverKind::Snmp(agent),
        });
    }
    plans
}

/// What every incarnation of a driver is started with.
#[derive(Clone)]
struct Env {
    queue: crate::buffer::Queue,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    /// Beaten on every turn of the driver's loop.
    hb: Option<Heartbeat>,
}

impl Env {
    fn wiring(self, inbox: mpsc::Receiver<WriteRequest>) -> crate::southbound::Wiring {
        crate::southbound::Wiring {
            inbox,
            out: self.tx,
            counters: self.counters,
            cancel: self.cancel,
            hb: self.hb,
        }
    }
}

/// Starts one incarnation of a driver; None when it cannot start (logged).
async fn start(
    kind: DriverKind,
    inbox: mpsc::Receiver<WriteRequest>,
    env: Env,
) -> Option<JoinHandle<()>> {
    match kind {
        DriverKind::Modbus(link) => Some(tokio::spawn(run_link_beating(
            link,
            inbox,
            env.tx,
            env.counters,
            env.cancel,
            env.hb,
        ))),
        DriverKind::Serial(bus) => Some(crate::southbound::serial::spawn_bus(
            bus,
            inbox,
            &env.tx,
            &env.counters,
            &env.cancel,
            env.hb,
        )),
        DriverKind::Snmp(agent) => Some(crate::southbound::snmp::spawn_agent(
            agent,
            inbox,
            &env.tx,
            &env.counters,
            &env.cancel,
            env.hb,
        )),
        DriverKind::Reach(devices) => Some(crate::southbound::reach::spawn(
            devices,
            inbox,
            env.tx,
            env.counters,
            env.cancel,
            env.hb,
        )),
        DriverKind::Lora(lcfg, devices) => {
            let queue = env.queue.clone();
            started(
                "LoRa source",
                crate::southbound::lora::spawn(&lcfg, devices, &queue, env.wiring(inbox)).await,
            )
        }
        DriverKind::Ocpp(ocfg, devices) => {
            let queue = env.queue.clone();
            started(
                "OCPP listener",
                crate::southbound::ocpp::spawn(&ocfg, devices, &queue, env.wiring(inbox)).await,
            )
        }
    }
}

/// Starts a planned driver under supervision (`supervise::Driver`: restarted with backoff
/// when it ends or panics); its devices' command routes come back with it. None when it
/// cannot start (logged; e.g. the LoRa UDP port is taken). Every driver registers a
/// heartbeat in `liveness` named by its key, beaten on each turn of its loop.
pub async fn spawn(
    plan: DriverPlan,
    queue: &crate::buffer::Queue,
    tx: &mpsc::Sender<Input>,
    counters: &Arc<Counters>,
    parent: &CancellationToken,
    liveness: &Liveness,
) -> Option<RunningDriver> {
    let cancel = parent.child_token();
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
    let routes = plan
        .devices
        .iter()
        .enumerate()
        .map(|(index, info)| {
            (
                info.id.clone(),
                Route {
                    info: info.clone(),
                    inbox: inbox_tx.clone(),
                    index,
                },
            )
        })
        .collect();
    let env = Env {
        queue: queue.clone(),
        tx: tx.clone(),
        counters: counters.clone(),
        cancel: cancel.clone(),
        hb: Some(liveness.register(plan.key.clone())),
    };
    let (first_tx, first_rx) = mpsc::channel(INBOX_CAPACITY);
    let first = start(plan.kind.clone(), first_rx, env.clone()).await?;
    let kind = plan.kind;
    let heartbeat = env.hb.clone();
    let driver = supervise::Driver {
        key: plan.key.clone(),
        start: Box::new(move |rx| Box::pin(start(kind.clone(), rx, env.clone()))),
        cancel: cancel.clone(),
        heartbeat,
        backoff: Backoff::new(supervise::RESTART_MIN, supervise::RESTART_MAX),
    };
    let task = tokio::spawn(driver.run(first, first_tx, inbox_rx));
    Some(RunningDriver {
        key: plan.key,
        fingerprint: plan.fingerprint,
        devices: plan.devices,
        routes,
        cancel,
        task,
    })
}

/// The task of a listener-driver that started, or None after one error line naming it.
fn started<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Option<T> {
    r.map_err(|e| tracing::error!(error = %e, "{what} not started"))
        .ok()
}
