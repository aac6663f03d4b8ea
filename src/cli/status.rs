//! `polegate status [--config PATH] [--json]`: the running daemon's view, asked from its
//! `[http]` listener (`/api/status`), printed as lines or JSON. Exit 3 when none
//! answers, naming the address tried.

use super::exit::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::http::status::{Status, text};
use base64::Engine as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);
/// An answer larger than this is not the daemon's.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("no polegate answers at http://{addr}/api/status: {source}")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http://{addr}/api/status answered {line}")]
    Refused { addr: SocketAddr, line: String },
    #[error("http://{addr}/api/status answered something that is not polegate's status: {why}")]
    Garbled { addr: SocketAddr, why: String },
}

/// Where to connect for a listener bound to `listen` (a wildcard means this host).
fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn fetch(
    addr: SocketAddr,
    auth: Option<&crate::config::http::Credentials>,
) -> Result<Status, StatusError> {
    let unreachable = |source| StatusError::Unreachable { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    let mut req = format!("GET /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", a.username, a.password));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(unreachable)?;
    let garbled = |why: &str| StatusError::Garbled {
        addr,
        why: why.to_string(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| garbled("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let line = head.lines().next().unwrap_or("").to_string();
    if line.split(' ').nth(1) != Some("200") {
        return Err(StatusError::Refused { addr, line });
    }
    serde_json::from_slice(&raw[split + 4..]).map_err(|e| garbled(&e.to_string()))
}

pub fn status(config: &Path, json: bool) -> i32 {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            for e in &e.0 {
                eprintln!("{e}");
            }
            return EXIT_CONFIG;
        }
    };
    let Some(listen) = cfg.http.listen else {
        eprintln!(
            "polegate status: the [http] listener is off in {} (http.listen = \"\"); nothing to ask",
            config.display()
        );
        return EXIT_RUNTIME;
    };
    match fetch(target(listen), cfg.http.auth.as_ref()) {
        Ok(s) if json => match serde_json::to_string_pretty(&s) {
            Ok(j) => {
                println!("{j}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("polegate status: {e}");
                EXIT_RUNTIME
            }
        },
        Ok(s) => {
            print!("{}", text(&s));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("polegate status: {e}");
            EXIT_RUNTIME
        }
    }
}
