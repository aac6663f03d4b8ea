//! Bus tasks beat the watchdog (issue 11 item 4): a Modbus link turns its loop and beats
//! at least every second, also between distant polls, and a link that is stuck (here:
//! blocked sending to a pipeline that no longer reads) stops beating, so the liveness
//! check that gates `WATCHDOG=1` and `/healthz` names it. The listener drivers do the
//! same: the LoRa source (Semtech UDP) and the OCPP listener beat while idle, and a LoRa
//! source stuck on a full pipeline goes stale.

use crate::common::*;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lora_source_stuck_on_a_full_pipeline_goes_stale_while_an_idle_one_keeps_beating() {
    let live = Liveness::new();
    let idle_dir = tempfile::tempdir().expect("tempdir");
    let idle = LoraRig::wired(
        idle_dir.path(),
        0,
        2_000,
        None,
        Some(live.register("lora idle")),
        64,
    )
    .await;
    // An input channel of one that nobody reads: the second input of the uplinks blocks.
    let stuck_dir = tempfile::tempdir().expect("tempdir");
    let stuck = LoraRig::wired(
        stuck_dir.path(),
        0,
        2_000,
        None,
        Some(live.register("lora stuck")),
        1,
    )
    .await;
    let f = Forwarder::start(stuck.port, [1, 2, 3, 4, 5, 6, 7, 8]).await;
    for fcnt in 1..=3 {
        f.send_uplink(&abp_uplink(fcnt, 80), fcnt * 1_000, -90, 5.0)
            .await;
    }
    eventually("the stuck LoRa source goes stale", || {
        live.stale(FRESH) == vec!["lora stuck".to_string()]
    })
    .await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(live.stale(FRESH), vec!["lora stuck".to_string()]);
    }
    idle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_ocpp_listener_keeps_beating() {
    let live = Liveness::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue =
        polegate::buffer::Queue::open(&buffer_dir(dir.path()), Default::default()).expect("queue");
    let cancel = CancellationToken::new();
    let (out, _inputs) = mpsc::channel(64);
    let (_inbox_tx, inbox) = mpsc::channel(4);
    let cfg = polegate::config::ocpp::OcppCfg {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls: None,
        heartbeat_s: 60,
        authorize: polegate::config::ocpp::Authorize::Accept,
        id_tags: vec![],
        upstream: None,
    };
    let task = polegate::southbound::ocpp::spawn(
        &cfg,
        vec![],
        &queue,
        polegate::southbound::Wiring {
            inbox,
            out,
            counters: Arc::new(Counters::default()),
            cancel: cancel.clone(),
            hb: Some(live.register("ocpp")),
        },
    )
    .await
    .expect("OCPP listener");
    // Nothing connects and no command comes: it must still beat, past the freshness age.
    let until = tokio::time::Instant::now() + FRESH + Duration::from_millis(1000);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            live.stale(FRESH).is_empty(),
            "the idle OCPP listener went stale"
        );
    }
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stopped in time")
        .expect("task");
}
