//! Persisted LoRaWAN state per device: the session (DevAddr, keys, frame counters), the
//! DevNonces already used, and the downlinks waiting for the next uplink or for the
//! gateway's TX_ACK.
//!
//! Stored as JSON in the queue's database (`Queue::kv("lora")`), keyed by DevEUI, so one
//! flush makes events and counters durable together. The driver writes a device's state
//! before it acts on it (publishes, sends a join-accept or a downlink).

use crate::buffer::{BufferError, KvStore};
use serde::{Deserialize, Serialize};

/// DevNonces remembered per device (LoRaWAN 1.0.x nonces are random: keep a window).
pub const MAX_DEV_NONCES: usize = 1024;
/// Downlinks queued per device.
pub const MAX_PENDING: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Big-endian value (as written in configs).
    pub dev_addr: u32,
    pub nwk_s_key: [u8; 16],
    pub app_s_key: [u8; 16],
    /// Last accepted uplink counter; None: the next may be 0 (after a join).
    pub fcnt_up: Option<u32>,
    /// Next downlink counter.
    pub fcnt_down: u32,
}

/// A command's payload waiting for the device's next uplink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Downlink {
    /// The command id (None for bare acknowledgements).
    pub id: Option<String>,
    pub fport: u8,
    pub bytes: Vec<u8>,
    /// Wall clock, ms.
    pub expires_ms: u64,
    /// The points the command wrote, reported in `cmd/result`.
    pub points: Vec<(String, serde_json::Value)>,
    /// Set (and persisted) before its PULL_RESP goes out; the entry then waits for the
    /// gateway's TX_ACK, also across a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Sent>,
}

/// A downlink handed to a gateway and not yet acknowledged by its TX_ACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// The PULL_RESP token the TX_ACK must carry.
    pub token: u16,
    /// Where the PULL_RESP went: the only address whose TX_ACK is accepted.
    pub to: std::net::SocketAddr,
    pub gateway: [u8; 8],
    /// Wall clock, ms.
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceState {
    pub session: Option<Session>,
    #[serde(default)]
    pub dev_nonces: Vec<u16>,
    #[serde(default)]
    pub pending: Vec<Downlink>,
}

/// Keys: `d/<dev_eui hex>` for devices, `join_nonce` for the server's JoinNonce.
#[derive(Debug, Clone)]
pub struct Store {
    kv: Option<KvStore>,
}

pub use crate::model::bytes::hex_lower as hex;

impl Store {
    pub fn new(kv: KvStore) -> Store {
        Store { kv: Some(kv) }
    }

    /// Keeps nothing (tests and benchmarks of the pure logic).
    pub fn memory() -> Store {
        Store { kv: None }
    }

    pub fn load(&self, dev_eui: &[u8; 8]) -> Option<DeviceState> {
        let kv = self.kv.as_ref()?;
        let raw = kv.get(format!("d/{}", hex(dev_eui)).as_bytes()).ok()??;
        match serde_json::from_slice(&raw) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(dev_eui = %hex(dev_eui), error = %e, "stored LoRa session unreadable; starting fresh");
                None
            }
        }
    }

    pub fn save(&self, dev_eui: &[u8; 8], st: &DeviceState) -> Result<(), BufferError> {
        let Some(kv) = &self.kv else { return Ok(()) };
        let v = serde_json::to_vec(st).unwrap_or_default();
        kv.insert(format!("d/{}", hex(dev_eui)).as_bytes(), &v)?;
        Ok(())
    }

    pub fn join_nonce(&self) -> u32 {
        self.kv
            .as_ref()
            .and_then(|kv| kv.get(b"join_nonce").ok().flatten())
            .and_then(|v| v.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0)
    }

    pub fn save_join_nonce(&self, n: u32) -> Result<(), BufferError> {
        if let Some(kv) = &self.kv {
            kv.insert(b"join_nonce", &n.to_be_bytes())?;
        }
        Ok(())
    }
}
