//! Wiring of the operator's views (`crate::http`): the device list they show and the
//! listener's start.

use super::Supervisor;
use crate::config::Config;
use crate::http::{Fleet, FleetEntry, Sources};
use crate::ops::health::BufferHealth;
use crate::pipeline::DeviceInfo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The running devices with their configured transport.
pub(super) fn fleet(infos: &[Arc<DeviceInfo>], cfg: &Config) -> Fleet {
    Arc::new(
        infos
            .iter()
            .filter_map(|info| {
                let d = cfg.devices.iter().find(|d| d.id == info.id)?;
                Some(FleetEntry {
                    info: info.clone(),
                    transport: d.transport.clone(),
                })
            })
            .collect(),
    )
}

/// Starts `[http]` (if on); the address it answers on. Its accept loop is a core task
/// (`supervise::watch_core`): ending or panicking before the daemon stops stops it.
pub(super) async fn start_http(
    sup: &Supervisor,
    buffer_health: Arc<BufferHealth>,
    stall_after: Duration,
    cancel: CancellationToken,
) -> Option<SocketAddr> {
    let sources = Sources {
        gateway: sup.cfg.gateway.id.clone(),
        started: Instant::now(),
        queue: sup.sh.queue.clone(),
        counters: sup.sh.counters.clone(),
        session: sup.session_state.clone(),
        liveness: sup.sh.liveness.clone(),
        buffer_health,
        stall_after,
        fleet: sup.fleet_tx.subscribe(),
        schedule: Some(sup.schedule.clone()),
    };
    let started = crate::http::start(&sup.cfg.http, sources, cancel).await?;
    super::supervise::watch_core(
        "http",
        started.task,
        sup.sh.stopping.clone(),
        sup.sh.died.clone(),
    );
    started.addr
}
