//! The task that owns the Semtech UDP socket: datagrams and commands into [`Core`],
//! its datagrams out on the socket and its inputs into the pipeline.
//!
//! A step's output leaves only after the state it wrote is flushed (on a blocking thread,
//! never on an async worker): an uplink is published, a frame sent and a command answered
//! only once a crash could no longer undo what they depend on.

use super::driver::{Core, Out};
use crate::model::now_ms;
use crate::southbound::Wiring;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How often dedup windows, liveness and expiries are checked.
pub const TICK: Duration = Duration::from_millis(20);
/// Largest datagram read (a PUSH_DATA with several rxpk stays far below).
pub const MAX_DATAGRAM: usize = 65_507;

pub async fn run_udp(sock: UdpSocket, mut core: Core, w: Wiring) {
    let Wiring {
        mut inbox,
        out,
        cancel,
        hb,
        ..
    } = w;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inbox_open = true;
    let counters = core.counters();
    loop {
        if let Some(hb) = &hb {
            hb.beat();
        }
        let mut o = Out::default();
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => core.datagram(Instant::now(), from, &buf[..n], &mut o),
                Err(e) => tracing::debug!(error = %e, "LoRa UDP receive failed"),
            },
            req = inbox.recv(), if inbox_open => match req {
                Some(req) => core.write(*req, now_ms(), &mut o),
                None => inbox_open = false,
            },
            _ = tick.tick() => core.tick(Instant::now(), now_ms(), &mut o),
        }
        if let Some(q) = core.take_flush() {
            super::flush_state(q, &counters).await;
        }
        for (reply, outcome) in o.replies {
            let _ = reply.send(outcome);
        }
        for (addr, d) in o.datagrams {
            if let Err(e) = sock.send_to(&d, addr).await {
                tracing::warn!(error = %e, %addr, "LoRa UDP send failed");
            }
        }
        for i in o.inputs {
            if out.send(i).await.is_err() {
                return;
            }
        }
    }
}
