//! EV chargers over OCPP 1.6J (SPEC §2 `[ocpp]`, §9).
//!
//! Layout: `frame.rs` (OCPP-J framing, pure), `map.rs` (messages → normalized points and
//! the central system's answers, pure), `command.rs` (MQTT commands → CS→charger calls,
//! pure), `hub.rs` (what all connections share: devices, live connections, transaction
//! ids in `kv:ocpp`), `listen.rs` (TCP/TLS listener and the WebSocket handshake),
//! `conn.rs` (one charger's connection), `central.rs` (central-system mode: answers, taps,
//! the command being carried out), `upstream.rs` (proxy mode's CSMS connection),
//! `stream.rs` (plain or TLS stream), `ws.rs` (the WebSocket settings both sides share).
//!
//! One connection per charge point: a second connection with the same id replaces the
//! first. Commands reach the connection of their charge point through a bounded channel.

mod central;
pub mod command;
// Public for tests/fuzz.rs, which drives a charger session over an in-memory stream.
#[doc(hidden)]
pub mod conn;
pub mod frame;
pub mod hub;
pub mod listen;
pub mod map;
mod stream;
mod upstream;
pub mod ws;

use crate::buffer::{BufferError, Queue};
use crate::config::ocpp::OcppCfg;
use crate::model::command::{Inbox, Refusal, WriteOutcome, WriteRequest};
use crate::ops::notify::{BEAT_EVERY, Heartbeat};
use crate::southbound::Wiring;
pub use hub::OcppDevice;
use hub::{ConnCmd, Hub};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The offline reason while proxy mode cannot reach the operator's CSMS.
pub const UPSTREAM_DOWN: &str = "upstream CSMS unreachable";

#[derive(Debug, thiserror::Error)]
pub enum OcppError {
    #[error(transparent)]
    Store(#[from] BufferError),
    #[error("cannot listen on {listen} (ocpp.listen): {source}")]
    Listen {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ocpp.cert_file/key_file: {0}")]
    Pem(#[from] crate::ops::pem::PemError),
    #[error("ocpp TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("upstream CSMS {url}: {what}")]
    Upstream { url: String, what: String },
}

pub(crate) use crate::ops::lock::lock;

fn acceptor(cfg: &OcppCfg) -> Result<Option<tokio_rustls::TlsAcceptor>, OcppError> {
    let Some((cert, key)) = &cfg.tls else {
        return Ok(None);
    };
    let certs = crate::ops::pem::read_certs(cert)?;
    let key = crate::ops::pem::read_key(key)?;
    let sc = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc))))
}

/// Starts the listener of `cfg` for `devices`; open transactions and transaction ids
/// live in the queue's database (`kv:ocpp`).
pub async fn spawn(
    cfg: &OcppCfg,
    devices: Vec<OcppDevice>,
    queue: &Queue,
    w: Wiring,
) -> Result<JoinHandle<()>, OcppError> {
    let Wiring {
        inbox,
        out,
        counters,
        cancel,
        hb,
    } = w;
    let kv = queue.kv("ocpp")?;
    let tls = acceptor(cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| OcppError::Listen {
            listen: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    tracing::info!(listen = %addr, tls = tls.is_some(), upstream = cfg.upstream.as_deref(), devices = devices.len(), "OCPP listening");
    let hub = Arc::new(Hub::new(
        cfg.clone(),
        devices,
        kv,
        queue.clone(),
        out,
        counters,
    ));
    let accept = tokio::spawn(listen::run(hub.clone(), listener, tls, cancel.clone()));
    Ok(tokio::spawn(async move {
        route_commands(&hub, inbox, &cancel, hb).await;
        let _ = accept.await;
    }))
}

/// Hands each command to the connection of its charge point.
async fn route_commands(
    hub: &Hub,
    mut inbox: Inbox,
    cancel: &CancellationToken,
    hb: Option<Heartbeat>,
) {
    let mut beat = tokio::time::interval(BEAT_EVERY);
    loop {
        if let Some(hb) = &hb {
            hb.beat();
        }
        let req = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = beat.tick() => continue,
            r = inbox.recv() => match r { Some(r) => r, None => return },
        };
        let fail = |req: Box<WriteRequest>, e: Refusal| {
            let _ = req.reply.send(WriteOutcome::refused(e));
        };
        let Some(dev) = hub.devices.get(req.device) else {
            fail(req, Refusal::UnknownDevice);
            continue;
        };
        if hub.cfg.upstream.is_some() {
            fail(req, Refusal::UpstreamManaged);
            continue;
        }
        let profile = &dev.info.profile;
        let writes = req
            .writes
            .iter()
            .filter_map(|(i, v)| {
                profile
                    .points
                    .get(*i)
                    .map(|p| (p.name.clone(), *i, v.clone()))
            })
            .collect();
        let sender = lock(&hub.live)
            .get(&dev.cfg.charge_point_id)
            .map(|l| l.cmds.clone());
        let Some(sender) = sender else {
            fail(req, Refusal::DeviceOffline("charger not connected".into()));
            continue;
        };
        let cmd = ConnCmd {
            device: req.device,
            writes,
            reply: req.reply,
        };
        if let Err(e) = sender.try_send(cmd) {
            let cmd = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
            };
            let e = "charger busy: too many commands waiting".to_string();
            let _ = cmd.reply.send(WriteOutcome::refused(Refusal::Busy(e)));
        }
    }
}
