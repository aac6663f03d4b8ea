//! The embedded MQTT broker of `polegate demo` and of tests: rumqttd, configured in code.
//!
//! Invariants and limits:
//! - [`start`] returns only once the broker accepts TCP connections on [`Broker::port`]
//!   (or fails within [`READY_TIMEOUT`]); it blocks the calling thread while it waits, so
//!   async callers run it under `tokio::task::spawn_blocking`.
//! - rumqttd runs on its own threads (a router thread and one per listener, each with its
//!   own tokio runtime) and **cannot be stopped in-process**: dropping [`Broker`] leaves
//!   it running until the process exits. Tests that need a broker outage or restart use
//!   an external mosquitto instead.
//! - rumqttd reports neither the bound port nor a bind failure (it only logs it), so for
//!   port 0 we bind the address ourselves to learn a free port, release it and hand that
//!   port to rumqttd. Another process could take the port in between; then [`start`]
//!   fails or, in the worst case, waits on the wrong listener. Acceptable for demo/tests.
//!
//! What was checked against rumqttd 0.20 (see the tests): QoS 1 publish and subscribe;
//! retained QoS 1 messages delivered to a later subscriber with the retain flag set;
//! persistent sessions (`clean_session = false`) keep subscriptions across a reconnect,
//! answer `session_present`, and deliver QoS 1 messages published while the client was
//! away.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

/// How long [`start`] waits for the broker to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Interval between readiness probes.
const READY_PROBE: Duration = Duration::from_millis(20);
/// Largest accepted MQTT payload; events and command replies stay far below.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Unacknowledged QoS 1 messages per connection, above any gateway's publish window.
pub const MAX_INFLIGHT: usize = 200;
/// Concurrent client connections.
const MAX_CONNECTIONS: usize = 1_000;

/// Why the embedded broker did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: cannot bind {addr}: {source} (is another broker running there?)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("embedded broker: cannot start its thread: {0}")]
    Thread(#[source] io::Error),
    #[error("embedded broker: rumqttd refused to start: {0}")]
    Start(String),
    #[error("embedded broker: nothing accepts connections on {addr} after {waited:?}")]
    NotReady { addr: SocketAddr, waited: Duration },
}

/// A running embedded broker. It lives until the process exits (see the module notes).
#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
}

impl Broker {
    /// The address it listens on, with the real port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// An `mqtt://` URL clients on this host can use.
    pub fn url(&self) -> String {
        let probe = probe_addr(self.addr);
        format!("mqtt://{probe}")
    }
}

/// Starts rumqttd with an MQTT 3.1.1 listener on `bind` (port 0: a free port) and waits
/// until it accepts connections.
pub fn start(bind: SocketAddr) -> Result<Broker, BrokerError> {
    let addr = TcpListener::bind(bind)
        .and_then(|listener| listener.local_addr())
        .map_err(|source| BrokerError::Bind { addr: bind, source })?;
    // The probe listener is dropped here, freeing the port for rumqttd.

    let config = config(addr);
    let (failed_tx, failed_rx) = mpsc::channel();
    thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            // Blocks for the life of the listeners; returns only on a config error.
            if let Err(err) = broker.start() {
                let _ = failed_tx.send(err.to_string());
            }
        })
        .map_err(BrokerError::Thread)?;

    let probe = probe_addr(addr);
    let started = Instant::now();
    loop {
        if let Ok(reason) = failed_rx.try_recv() {
            return Err(BrokerError::Start(reason));
        }
        if TcpStream::connect_timeout(&probe, READY_PROBE).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(Broker { addr });
        }
        if started.elapsed() >= READY_TIMEOUT {
            return Err(BrokerError::NotReady {
                addr,
                waited: READY_TIMEOUT,
            });
        }
        thread::sleep(READY_PROBE);
    }
}

/// Where to connect to reach a listener bound on `addr` (loopback for a wildcard).
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    let mut probe = addr;
    if addr.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    probe
}

fn config(listen: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "polegate-demo-v4".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: MAX_INFLIGHT,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests;
