//! Drivers whose devices depend on stored state (LoRa frame counters and join nonces,
//! pending downlinks) wait here until it can be read (SPEC §5): state that cannot be read
//! is never taken as absent. Meanwhile their devices are `offline` with reason
//! `state unavailable`; they come back as soon as the queue's files can be read.

use crate::buffer::{BufferError, KvStore};
use crate::model::link::LinkState;
use crate::pipeline::{DeviceInfo, Input};
use std::sync::Arc;
use std::time::Duration;

/// The reason a device waiting for its state is offline.
pub const REASON: &str = "state unavailable";
/// How often the state is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Waits until `kv` can be read (a read of `probe`). `false` when cancelled first.
pub async fn readable(
    kv: &KvStore,
    probe: &[u8],
    devices: &[Arc<DeviceInfo>],
    w: &super::Wiring,
) -> bool {
    let mut said = false;
    loop {
        match kv.get(probe) {
            Err(BufferError::StateUnavailable { .. }) => {}
            // Readable (an empty or a failing read of present state is the driver's to say).
            _ => {
                if said {
                    tracing::info!(
                        store = kv.name(),
                        "stored state readable again; devices served"
                    );
                }
                return true;
            }
        }
        if !said {
            said = true;
            tracing::warn!(
                store = kv.name(),
                devices = devices.len(),
                "stored state cannot be read: its devices are offline until it can"
            );
            for d in devices {
                if d.link.set(LinkState::Offline) {
                    let _ = w
                        .out
                        .send(Input::State {
                            device: d.clone(),
                            online: false,
                            reason: Some(REASON.to_string()),
                        })
                        .await;
                }
            }
        }
        if let Some(hb) = &w.hb {
            hb.beat();
        }
        tokio::select! {
            _ = w.cancel.cancelled() => return false,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}
