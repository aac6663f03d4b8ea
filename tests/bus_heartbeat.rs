//! Bus tasks beat the watchdog (issue 11 item 4): a Modbus link turns its loop and beats
//! at least every second, also between distant polls, and a link that is stuck (here:
//! blocked sending to a pipeline that no longer reads) stops beating, so the liveness
//! check that gates `WATCHDOG=1` and `/healthz` names it.

mod common;

use common::*;
use polegate::config::Framing;
use polegate::ops::counters::Counters;
use polegate::ops::notify::Liveness;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link_beating};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const FRESH: Duration = Duration::from_millis(2500);

fn link(addr: std::net::SocketAddr, id: &str, poll: Duration) -> Link {
    let mut link = Link::tcp(&addr.to_string(), Framing::Tcp);
    link.devices.push(PolledDevice::new(
        device_info(id, "generic-lamp-modbus"),
        1,
        poll,
    ));
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_bus_task_goes_stale_while_an_idle_one_keeps_beating() {
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let live = Liveness::new();
    let counters = Arc::new(Counters::default());

    // Polls once a minute: idle between polls, it must still beat.
    let (idle_tx, mut idle_rx) = mpsc::channel(64);
    let (_idle_inbox, idle_inbox_rx) = mpsc::channel(4);
    tokio::spawn(run_link_beating(
        link(sim.addr(), "idle-1", Duration::from_secs(60)),
        idle_inbox_rx,
        idle_tx,
        counters.clone(),
        cancel.clone(),
        Some(live.register("modbus idle")),
    ));
    tokio::spawn(async move { while idle_rx.recv().await.is_some() {} });

    // Polls fast into a channel of one that nobody reads: blocked on its second send.
    let (stuck_tx, _stuck_rx) = mpsc::channel(1);
    let (_stuck_inbox, stuck_inbox_rx) = mpsc::channel(4);
    tokio::spawn(run_link_beating(
        link(sim.addr(), "stuck-1", Duration::from_millis(50)),
        stuck_inbox_rx,
        stuck_tx,
        counters.clone(),
        cancel.clone(),
        Some(live.register("modbus stuck")),
    ));

    eventually("the stuck link goes stale", || {
        live.stale(FRESH) == vec!["modbus stuck".to_string()]
    })
    .await;
    // Staleness is sticky for the stuck one and never reaches the idle one.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(live.stale(FRESH), vec!["modbus stuck".to_string()]);
    }
    cancel.cancel();
}
