//! The WebSocket settings both sides of OCPP share: the listener chargers connect to
//! (`listen.rs`) and, in proxy mode, the connection to the upstream CSMS (`upstream.rs`).

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client has this long for TLS and the WebSocket upgrade (the upstream CSMS as long).
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
