//! Proxy mode: the connection to the operator's CSMS for one charger,
//! `<upstream>/<charge point id>` with `ocpp1.6` and the device's Basic credentials.

use super::OcppError;
use super::hub::Hub;
use super::stream::Io;
use super::ws::{HANDSHAKE_TIMEOUT, SUBPROTOCOL, ws_config};
use base64::Engine;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn roots() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Opens the upstream WebSocket for charge point `cp`.
pub async fn connect(hub: &Hub, base: &str, cp: &str) -> Result<WebSocketStream<Io>, OcppError> {
    let url = format!("{base}/{cp}");
    let up = |what: String| OcppError::Upstream {
        url: url.clone(),
        what,
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| up(e.to_string()))?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let pw = hub
        .by_cp
        .get(cp)
        .into_iter()
        .flatten()
        .find_map(|&d| hub.devices[d].cfg.upstream_password.as_ref());
    if let Some(pw) = pw {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{cp}:{}", pw.0));
        let v = HeaderValue::from_str(&format!("Basic {b}")).map_err(|e| up(e.to_string()))?;
        req.headers_mut().insert("authorization", v);
    }
    let host = req
        .uri()
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let tls = req.uri().scheme_str() == Some("wss");
    let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let fut = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| up(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io = if tls {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| up(e.to_string()))?;
            // The system's root store is files: read on the blocking pool.
            let roots = tokio::task::spawn_blocking(roots)
                .await
                .map_err(|e| up(e.to_string()))?
                .map_err(|e| up(e.to_string()))?;
            let s = tokio_rustls::TlsConnector::from(roots)
                .connect(name, tcp)
                .await
                .map_err(|e| up(e.to_string()))?;
            Io::Tls(Box::new(s.into()))
        } else {
            Io::Plain(tcp)
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, io, Some(ws_config()))
            .await
            .map_err(|e| up(e.to_string()))?;
        Ok(ws)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| up("timed out".into()))?
}
