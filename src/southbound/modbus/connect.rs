//! Opening a link's transport: a TCP connect under [`CONNECT_TIMEOUT`] or a serial port
//! through the shared opener, and our [`FramedClient`] on it for every framing: Modbus
//! TCP, RTU and ASCII. `polegate probe` gets it wrapped in a tokio-modbus [`Context`].

use super::fault_counter::FaultCounter;
use super::rtu::{FramedClient, LineStream, LinkClient, Mode, Timing};
use crate::config::{BusCfg, Framing, Parity};
use crate::ops::counters::Counters;
use crate::southbound::serial_port::{self, OpenError};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_modbus::client::{Client, Context};

/// Timeout of a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3000);

/// Where a link's transactions go.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `host:port`, Modbus TCP or RTU frames over TCP.
    Tcp { address: String, framing: Framing },
    /// A serial line (RS-485) in RTU or ASCII mode.
    Serial { bus: BusCfg, mode: Mode },
}

/// Why a link's transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {address} timed out after {ms} ms")]
    Timeout { address: String, ms: u128 },
    #[error("connect to {address} failed: {source}")]
    Tcp {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serial(#[from] OpenError),
}

/// Opens a transport and wraps it in a tokio-modbus context; its framing errors are
/// counted process-wide only (`polegate probe`).
pub async fn connect(
    endpoint: &Endpoint,
    counters: &Arc<Counters>,
) -> Result<Context, ConnectError> {
    let client = connect_with(endpoint, &FaultCounter::process_only(counters.clone())).await?;
    Ok(Context::from(Box::new(client) as Box<dyn Client>))
}

/// Opens a transport whose framing errors go to `faults`.
pub(super) async fn connect_with(
    endpoint: &Endpoint,
    faults: &FaultCounter,
) -> Result<LinkClient, ConnectError> {
    match endpoint {
        Endpoint::Tcp { address, framing } => {
            let stream =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                    Err(_) => {
                        return Err(ConnectError::Timeout {
                            address: address.clone(),
                            ms: CONNECT_TIMEOUT.as_millis(),
                        });
                    }
                    Ok(Err(source)) => {
                        return Err(ConnectError::Tcp {
                            address: address.clone(),
                            source,
                        });
                    }
                    Ok(Ok(s)) => s,
                };
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn LineStream> = Box::new(stream);
            Ok(match framing {
                Framing::Tcp => FramedClient::tcp(stream, faults.clone()),
                Framing::Rtu => {
                    FramedClient::new(stream, Mode::Rtu, Timing::none(), faults.clone())
                }
            })
        }
        Endpoint::Serial { bus, mode } => {
            let port = serial_port::open(bus)?;
            let timing = Timing::new(
                bus.baud,
                bus.data_bits,
                bus.parity != Parity::None,
                bus.stop_bits,
            );
            Ok(FramedClient::new(
                Box::new(port),
                *mode,
                timing,
                faults.clone(),
            ))
        }
    }
}
