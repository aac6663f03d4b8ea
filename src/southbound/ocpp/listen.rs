//! The listener chargers connect to: TLS (`wss://`) when configured, the WebSocket
//! handshake with its refusals (404 unknown charge point, 401 bad credentials, 400 no
//! `ocpp1.6`), bounded handshakes with a deadline; in proxy mode the upstream
//! connection is opened before the charger's handshake completes its first frame.
//!
//! At most [`HANDSHAKE_SLOTS`] clients are in their TLS or WebSocket handshake at once;
//! when all are taken, a newcomer takes the slot of the oldest (`ops::slots`; counted in
//! `ocpp_handshake_evicted`), so half-open clients cannot keep a real charger out. After
//! its handshake a connection belongs to a configured charge point and replaces that
//! charge point's previous one, so established connections are at most one per charge
//! point (plus those closing, each within `conn::WRITE_TIMEOUT`). The password is
//! compared in constant time against every device of the charge point (`check` makes
//! them agree). Refused handshakes are counted and logged once, then summarized.

use super::hub::Hub;
use super::stream::Io;
use super::ws::{HANDSHAKE_TIMEOUT, SUBPROTOCOL, ws_config};
use crate::ops::counters::Counters;
use crate::ops::slots::{Admitted, Slot, Slots};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

/// Clients in their TLS or WebSocket handshake at once.
pub const HANDSHAKE_SLOTS: usize = 64;
fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = status;
    r
}

/// The handshake decision: the charge point id, or the refusal.
// The error type is tungstenite's handshake `Callback`'s, large by its design.
#[allow(clippy::result_large_err)]
pub fn check_request(
    hub: &Hub,
    req: &Request,
    mut resp: Response,
) -> Result<(String, Response), ErrorResponse> {
    let path = req.uri().path();
    let Some(cp) = path
        .strip_prefix("/ocpp/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
    else {
        Counters::inc(&hub.counters.ocpp_unknown_charger);
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "chargers connect to /ocpp/<charge point id>",
        ));
    };
    let Some(devs) = hub.by_cp.get(cp) else {
        Counters::inc(&hub.counters.ocpp_unknown_charger);
        hub.refused(cp, "unknown charge point");
        return Err(refuse(StatusCode::NOT_FOUND, "unknown charge point"));
    };
    let passwords: Vec<&str> = devs
        .iter()
        .filter_map(|&d| hub.devices[d].cfg.password.as_ref())
        .map(|p| p.0.as_str())
        .collect();
    if !passwords.is_empty() {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .unwrap_or_default();
        // Every device of the charge point must accept it (a device without a password
        // while another has one cannot pass `check`), each compared in constant time.
        let ok = passwords.iter().fold(true, |ok, pw| {
            ok & crate::ops::ct_eq(&given, format!("{cp}:{pw}").as_bytes())
        });
        if !ok {
            hub.refused(cp, "bad or missing Basic credentials");
            let mut r = refuse(StatusCode::UNAUTHORIZED, "Basic credentials required");
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"ocpp\""),
            );
            return Err(r);
        }
    }
    let offered: Vec<&str> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if offered.contains(&SUBPROTOCOL) {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    } else if !offered.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "subprotocol ocpp1.6 required",
        ));
    }
    Ok((cp.to_string(), resp))
}

/// Accepts chargers until `cancel`.
pub async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    let slots = Slots::new(HANDSHAKE_SLOTS);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "OCPP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let slot = match slots.admit() {
            Admitted::Free(s) => s,
            Admitted::Evicted(s) => {
                Counters::inc(&hub.counters.ocpp_handshake_evicted);
                hub.refused("-", "handshake slots full: the oldest handshake was closed");
                s
            }
            // Handshake slots are never busy: not reached.
            Admitted::Full => continue,
        };
        let (hub, tls, cancel) = (hub.clone(), tls.clone(), cancel.clone());
        tokio::spawn(async move {
            let Some((cp, ws)) = handshake(&hub, tcp, peer, tls, slot).await else {
                return;
            };
            tracing::info!(charge_point = %cp, %peer, "charger connected");
            match hub.cfg.upstream.clone() {
                None => super::conn::serve::<_, Io>(hub, cp, ws, None, cancel).await,
                Some(url) => proxy(hub, cp, ws, &url, cancel).await,
            }
        });
    }
}

/// TLS (when configured) and the WebSocket upgrade, each under [`HANDSHAKE_TIMEOUT`]
/// and given up when `slot` is evicted; the charge point id and its WebSocket.
async fn handshake(
    hub: &Hub,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slot: Slot,
) -> Option<(String, WebSocketStream<Io>)> {
    let io = match tls {
        None => Io::Plain(tcp),
        Some(acc) => {
            let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp));
            match tokio::select! { r = hs => Some(r), _ = slot.evicted() => None } {
                Some(Ok(Ok(s))) => Io::Tls(Box::new(s.into())),
                _ => {
                    tracing::debug!(%peer, "OCPP TLS handshake failed");
                    return None;
                }
            }
        }
    };
    let mut cp = None;
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| {
        check_request(hub, req, resp).map(|(id, resp)| {
            cp = Some(id);
            resp
        })
    };
    let hs = tokio_tungstenite::accept_hdr_async_with_config(io, cb, Some(ws_config()));
    let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, hs);
    let ws = match tokio::select! { r = hs => Some(r), _ = slot.evicted() => None } {
        Some(Ok(Ok(ws))) => ws,
        Some(Ok(Err(e))) => {
            tracing::debug!(%peer, error = %e, "OCPP handshake refused");
            return None;
        }
        Some(Err(_)) => {
            tracing::debug!(%peer, "OCPP handshake timed out");
            return None;
        }
        None => return None,
    };
    drop(slot);
    Some((cp?, ws))
}

/// Proxy mode: serves the charger with its upstream connection, or closes it when the
/// upstream cannot be reached (or is within its retry backoff).
async fn proxy(
    hub: Arc<Hub>,
    cp: String,
    mut ws: WebSocketStream<Io>,
    url: &str,
    cancel: CancellationToken,
) {
    let up = if hub.upstream_due(&cp) {
        let r = super::upstream::connect(&hub, url, &cp).await;
        hub.upstream_outcome(&cp, r.is_ok());
        r.map_err(|e| e.to_string())
    } else {
        Err("still within the retry backoff".to_string())
    };
    match up {
        Ok(up) => super::conn::serve(hub, cp, ws, Some(up), cancel).await,
        Err(e) => {
            tracing::warn!(charge_point = %cp, error = %e, "upstream CSMS unreachable; charger connection closed");
            super::conn::close(&mut ws, None).await;
            hub.set_cp_state(&cp, false, Some(super::UPSTREAM_DOWN))
                .await;
        }
    }
}
