//! Proves that a transport which disappears and comes back is survived by the bus task
//! alone: a serial device server (RTU over TCP) closes every connection and stops
//! listening, the units behind it go offline with the connection error as the reason,
//! and when it listens again on the same address the link reconnects by itself (with
//! backoff) and the units come back online. The same drop-and-reopen path serves a USB
//! RS-485 adapter that is unplugged and plugged back.

use polegate::config::Framing;
use polegate::demo::rtu_slave::SlaveBus;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::profile::Registry;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link};
use polegate::southbound::modbus::rtu::Mode;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn next_state(rx: &mut mpsc::Receiver<Input>) -> (String, bool, Option<String>) {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(Input::State {
                    device,
                    online,
                    reason,
                }) => return (device.id.clone(), online, reason),
                Some(_) => {}
                None => panic!("link ended"),
            }
        }
    })
    .await
    .expect("a state change in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_server_that_vanishes_and_returns_is_reconnected_without_help() {
    let (reg, _) = Registry::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    let profile = reg.get("generic-lamp-modbus").expect("profile").clone();
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = CancellationToken::new();
    tokio::spawn(sim.clone().serve_tcp(listener, serving.clone()));

    let mut link = Link::tcp(&addr.to_string(), Framing::Rtu);
    link.request_timeout = Duration::from_millis(200);
    let info = Arc::new(DeviceInfo {
        id: "lamp-1".into(),
        link: Default::default(),
        kind: profile.kind,
        profile: profile.clone(),
        meta: Default::default(),
        heartbeat_ms: 0,
    });
    link.devices
        .push(PolledDevice::new(info, 1, Duration::from_millis(50)));
    let (tx, mut rx) = mpsc::channel(256);
    let (_inbox, inbox_rx) = mpsc::channel(1);
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    tokio::spawn(run_link(
        link,
        inbox_rx,
        tx,
        counters.clone(),
        cancel.clone(),
    ));

    assert_eq!(next_state(&mut rx).await, ("lamp-1".into(), true, None));
    // The device server goes away: connections closed, nothing listening.
    serving.cancel();
    let (_, online, reason) = next_state(&mut rx).await;
    assert!(!online);
    let reason = reason.unwrap_or_default();
    assert!(reason.contains(&addr.to_string()), "{reason}");
    // It comes back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let serving = CancellationToken::new();
    tokio::spawn(sim.clone().serve_tcp(listener, serving.clone()));
    assert_eq!(next_state(&mut rx).await, ("lamp-1".into(), true, None));
    assert!(sim.connections.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    cancel.cancel();
    serving.cancel();
}
