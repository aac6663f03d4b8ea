//! LoRaWAN devices (SPEC §2 `[lora]`, §3 LoRa profiles, §8 "LoRaWAN", "LoRa commands").
//!
//! Layout: `semtech.rs` (Semtech UDP v2 codec, pure), `netserver.rs` (the network-server
//! logic: LoRaWAN 1.0.x uplinks, joins and downlinks over the `lorawan` crate, pure),
//! `driver.rs` (the driver's state machine, sans-IO), `downlink.rs` (queued downlinks, their
//! receive windows and final results), `gateways.rs` (the packet forwarders heard, bounded),
//! `session.rs` (state persisted in the queue's database), `script.rs` (profile scripts:
//! `decode_uplink`/`encode_downlink`), `udp.rs` (the task that owns the UDP socket),
//! `chirpstack.rs` (the same devices behind an existing network server), `ns_pending.rs`
//! (its downlinks awaiting a txack, persisted).

pub mod chirpstack;
mod downlink;
pub mod driver;
pub mod gateways;
pub mod netserver;
pub mod ns_pending;
pub mod script;
pub mod semtech;
pub mod session;
pub mod udp;

use crate::buffer::{BufferError, Queue};
use crate::config::lora::{LoraCfg, LoraSource};
use crate::ops::counters::Counters;
use crate::southbound::Wiring;
use tokio::task::JoinHandle;

/// Why the LoRa source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The session store in the queue's database.
    #[error(transparent)]
    Store(#[from] BufferError),
    #[error("cannot listen on {listen} (lora.listen): {source}")]
    Listen {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Starts the LoRa source of `cfg`: the Semtech UDP socket on `listen`, or the ChirpStack
/// integration. Sessions live in the queue's database (`kv:lora`).
pub async fn spawn(
    cfg: &LoraCfg,
    devices: Vec<driver::LoraDevice>,
    queue: &Queue,
    w: Wiring,
) -> Result<JoinHandle<()>, StartError> {
    match &cfg.source {
        LoraSource::SemtechUdp => {
            let kv = queue.kv("lora")?;
            let sock = tokio::net::UdpSocket::bind(cfg.listen)
                .await
                .map_err(|source| StartError::Listen {
                    listen: cfg.listen,
                    source,
                })?;
            tracing::info!(listen = %cfg.listen, devices = devices.len(), "LoRa Semtech UDP listening");
            let infos: Vec<_> = devices.iter().map(|d| d.info.clone()).collect();
            let (cfg, queue) = (cfg.clone(), queue.clone());
            Ok(tokio::spawn(async move {
                // Sessions are read once, here: never from state that cannot be read.
                if !super::stored_state::readable(&kv, b"join_nonce", &infos, &w).await {
                    return;
                }
                let core = driver::Core::new(
                    &cfg,
                    devices,
                    session::Store::new(kv),
                    Some(queue),
                    w.counters.clone(),
                    std::time::Instant::now(),
                );
                udp::run_udp(sock, core, w).await
            }))
        }
        LoraSource::Chirpstack(c) => {
            let kv = queue.kv("lora")?;
            tracing::info!(url = %c.broker.url, application_id = %c.application_id, devices = devices.len(), "LoRa devices through the ChirpStack integration");
            let infos: Vec<_> = devices.iter().map(|d| d.info.clone()).collect();
            let (c, queue) = (c.clone(), queue.clone());
            Ok(tokio::spawn(async move {
                // Pending downlinks are read once, here: never from state that cannot be read.
                if !super::stored_state::readable(&kv, b"", &infos, &w).await {
                    return;
                }
                let pending = ns_pending::Pending::load(kv, queue, |e| {
                    devices
                        .iter()
                        .position(|d| session::hex(&d.cfg.dev_eui) == e)
                });
                chirpstack::run_chirpstack(c, devices, pending, w).await
            }))
        }
    }
}

/// Makes the LoRa state written so far durable, on a blocking thread (never on an async
/// worker), before the task acts on it. A failing flush turns the queue degraded (it logs
/// that once and keeps the writes in memory until it can store again, SPEC §5 "Storage
/// faults"); the task then goes ahead, as every other source does meanwhile.
async fn flush_state(q: Queue, counters: &Counters) {
    match tokio::task::spawn_blocking(move || q.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            Counters::inc(&counters.buffer_error);
            tracing::debug!(error = %e, "LoRa state flush failed");
        }
        Err(e) => tracing::error!(error = %e, "LoRa state flush task failed"),
    }
}
