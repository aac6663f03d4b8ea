//! Starting planned drivers (`plan.rs`) under supervision, and stopping them.

use super::parts::{Part, Shared};
use super::plan::{DriverKind, DriverPlan, DriverSettings};
use super::supervise;
use crate::model::command::Inbox;
use crate::ops::backoff::Backoff;
use crate::ops::counters::Counters;
use crate::ops::notify::Heartbeat;
use crate::pipeline::Route;
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::INBOX_CAPACITY;
use crate::southbound::modbus::link::run_link_beating;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningDriver {
    pub key: String,
    /// What it was planned with; a reload restarts it when the new plan's differ.
    pub settings: DriverSettings,
    pub devices: Vec<Arc<DeviceInfo>>,
    pub routes: Vec<(String, Route)>,
    /// The supervised task (`supervise::Driver`), stopped through its own token.
    part: Part,
}

impl RunningDriver {
    /// Stops the task (bounded by `deadline`).
    pub async fn stop(self, deadline: tokio::time::Instant) {
        if !self.part.stop(deadline).await {
            tracing::warn!(driver = %self.key, "driver did not stop in time");
        }
    }
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
    fn wiring(self, inbox: Inbox) -> crate::southbound::Wiring {
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
async fn start(kind: DriverKind, inbox: Inbox, env: Env) -> Option<JoinHandle<()>> {
    match kind {
        DriverKind::Modbus(link) => Some(tokio::spawn(run_link_beating(
            link,
            inbox,
            env.tx,
            env.counters,
            env.cancel,
            env.hb,
        ))),
        DriverKind::Serial(bus) => {
            Some(crate::southbound::serial::spawn_bus(bus, env.wiring(inbox)))
        }
        DriverKind::Snmp(agent) => Some(crate::southbound::snmp::spawn_agent(
            agent,
            env.wiring(inbox),
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
/// heartbeat in the shared liveness named by its key, beaten on each turn of its loop.
pub(super) async fn spawn(plan: DriverPlan, sh: &Shared) -> Option<RunningDriver> {
    let cancel = sh.drivers_cancel.child_token();
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
        queue: sh.queue.clone(),
        tx: sh.tx.clone(),
        counters: sh.counters.clone(),
        cancel: cancel.clone(),
        hb: Some(sh.liveness.register(plan.key.clone())),
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
        settings: plan.settings,
        devices: plan.devices,
        routes,
        part: Part::new(task, cancel),
    })
}

/// The task of a listener-driver that started, or None after one error line naming it.
fn started<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Option<T> {
    r.map_err(|e| tracing::error!(error = %e, "{what} not started"))
        .ok()
}
