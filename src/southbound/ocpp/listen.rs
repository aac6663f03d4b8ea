//! The listener chargers connect to: TLS (`wss://`) when configured, the WebSocket
//! handshake with its refusals (404 unknown charge point, 401 bad credentials, 400 no
//! `ocpp1.6`), bounded connections and a handshake deadline; in proxy mode the upstream
//! connection is opened before the charger's handshake completes its first frame.

use super::hub::Hub;
use super::stream::Io;
use crate::ops::counters::Counters;
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

/// Connections open at once (chargers and clients still in their handshake).
pub const MAX_CONNECTIONS: usize = 256;
/// A client has this long for TLS and the WebSocket upgrade.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// Per connection: frames up to `MAX_FRAME_BYTES`; a 4 KiB read buffer instead of
/// tungstenite's 128 KiB (it is allocated per connection; OCPP frames are small and
/// slow, and a street of chargers should not cost 128 KiB each), and frames written out
/// at once (an OCPP answer is due now, not when 128 KiB have accumulated).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(super::frame::MAX_FRAME_BYTES))
        .max_frame_size(Some(super::frame::MAX_FRAME_BYTES))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

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
        tracing::info!(charge_point = cp, "unknown charge point refused");
        return Err(refuse(StatusCode::NOT_FOUND, "unknown charge point"));
    };
    if let Some(pw) = devs
        .iter()
        .find_map(|&d| hub.devices[d].cfg.password.as_ref())
    {
        let want = base64::engine::general_purpose::STANDARD.encode(format!("{cp}:{}", pw.0));
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(str::trim);
        if given != Some(want.as_str()) {
            tracing::info!(
                charge_point = cp,
                "charger refused: bad or missing Basic credentials"
            );
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
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
        let (hub, tls, cancel) = (hub.clone(), tls.clone(), cancel.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let io = match tls {
                None => Io::Plain(tcp),
                Some(acc) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                    Ok(Ok(s)) => Io::Tls(Box::new(s.into())),
                    _ => {
                        tracing::info!(%peer, "OCPP TLS handshake failed");
                        return;
                    }
                },
            };
            let mut cp = None;
            #[allow(clippy::result_large_err)]
            let cb = |req: &Request, resp: Response| {
                check_request(&hub, req, resp).map(|(id, resp)| {
                    cp = Some(id);
                    resp
                })
            };
            let hs = tokio_tungstenite::accept_hdr_async_with_config(io, cb, Some(ws_config()));
            let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hs).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "OCPP handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "OCPP handshake timed out");
                    return;
                }
            };
            let Some(cp) = cp else { return };
            tracing::info!(charge_point = %cp, %peer, "charger connected");
            match hub.cfg.upstream.clone() {
                None => super::conn::serve::<_, Io>(hub, cp, ws, None, cancel).await,
                Some(url) => {
                    let up = if hub.upstream_due(&cp) {
                        let r = super::upstream::connect(&hub, &url, &cp).await;
                        hub.upstream_outcome(&cp, r.is_ok());
                        r.map_err(|e| e.to_string())
                    } else {
                        Err("still within the retry backoff".to_string())
                    };
                    match up {
                        Ok(up) => super::conn::serve(hub, cp, ws, Some(up), cancel).await,
                        Err(e) => {
                            tracing::warn!(charge_point = %cp, error = %e, "upstream CSMS unreachable; charger connection closed");
                            let mut ws = ws;
                            let _ = ws.close(None).await;
                            hub.set_cp_state(&cp, false, Some(super::UPSTREAM_DOWN))
                                .await;
                        }
                    }
                }
            }
        });
    }
}
