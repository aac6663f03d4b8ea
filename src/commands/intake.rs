//! The channel from the MQTT session to the command task, bounded in slots *and* in
//! bytes (SPEC §7: a flood of commands must not eat the cabinet's memory). Payloads
//! above [`MAX_COMMAND_BYTES`] are cut to that size plus one byte before they are queued:
//! the command task refuses them by their length, and a 1 MiB payload never sits in a
//! queue. The session never waits on this channel: when it is full the command is
//! dropped and counted (`command_dropped`).

use super::CommandIn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::sync::mpsc;

/// Largest command payload accepted (a multi-point command is a few hundred bytes).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// Slots of the channel.
pub const INPUT_CAPACITY: usize = 256;
/// Bytes of payload the channel may hold at once.
pub const INPUT_MAX_BYTES: usize = 512 * 1024;
/// Largest MQTT packet the session reads (rumqttc `max_incoming_packet_size`): room for
/// a topic and a payload well above [`MAX_COMMAND_BYTES`], so an oversized command still
/// gets its refusal; a larger packet closes the connection (rumqttc's limit) and the next
/// connection reads it once (`northbound::mqtt`, `MAX_WIDENED_PACKET`).
pub const MAX_INCOMING_PACKET: usize = 64 * 1024;

/// The session's end.
#[derive(Debug, Clone)]
pub struct IntakeTx {
    tx: mpsc::Sender<CommandIn>,
    bytes: Arc<AtomicUsize>,
}

/// The command task's end.
#[derive(Debug)]
pub struct IntakeRx {
    rx: mpsc::Receiver<CommandIn>,
    bytes: Arc<AtomicUsize>,
}

pub fn channel() -> (IntakeTx, IntakeRx) {
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        IntakeTx {
            tx,
            bytes: bytes.clone(),
        },
        IntakeRx { rx, bytes },
    )
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("the command queue is full ({INPUT_CAPACITY} commands)")]
    Slots,
    #[error("the command queue holds {INPUT_MAX_BYTES} bytes already")]
    Bytes,
    #[error("the command task has stopped")]
    Closed,
}

impl IntakeTx {
    /// Queues one command without waiting; oversized payloads are cut (see the module).
    pub fn offer(&self, device: &str, payload: &[u8], retained: bool) -> Result<(), Full> {
        let payload = payload[..payload.len().min(MAX_COMMAND_BYTES + 1)].to_vec();
        let n = payload.len();
        if self.bytes.fetch_add(n, Relaxed) + n > INPUT_MAX_BYTES {
            self.bytes.fetch_sub(n, Relaxed);
            return Err(Full::Bytes);
        }
        let c = CommandIn {
            device: device.to_string(),
            payload,
            retained,
        };
        self.tx.try_send(c).map_err(|e| {
            self.bytes.fetch_sub(n, Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => Full::Slots,
                mpsc::error::TrySendError::Closed(_) => Full::Closed,
            }
        })
    }
}

impl IntakeRx {
    pub async fn recv(&mut self) -> Option<CommandIn> {
        let c = self.rx.recv().await?;
        self.bytes.fetch_sub(c.payload.len(), Relaxed);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    //! The channel refuses by bytes as well as by slots, and never holds a payload
    //! longer than the command limit plus one byte.
    use super::*;

    #[tokio::test]
    async fn oversized_payloads_are_cut_and_the_byte_budget_refuses_before_the_slots_run_out() {
        let (tx, mut rx) = channel();
        let huge = vec![b'x'; 1 << 20];
        tx.offer("lamp", &huge, false).unwrap();
        let c = rx.recv().await.unwrap();
        assert_eq!(c.payload.len(), MAX_COMMAND_BYTES + 1);
        let mut queued = 0;
        let err = loop {
            match tx.offer("lamp", &huge, false) {
                Ok(()) => queued += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, Full::Bytes);
        assert_eq!(queued, INPUT_MAX_BYTES / (MAX_COMMAND_BYTES + 1));
        assert!(queued < INPUT_CAPACITY);
        rx.recv().await.unwrap();
        tx.offer("lamp", b"{}", false)
            .expect("room again after a receive");
    }
}
