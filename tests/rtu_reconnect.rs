//! Proves that a transport which disappears and comes back is survived by the bus task
//! alone: a serial device server (RTU over TCP) closes every connection and stops
//! listening, the units behind it go offline with the connection error as the reason,
//! and when it listens again on the same address the link reconnects by itself (with
//! backoff) and the units come back online. The same drop-and-reopen path serves a USB
//! RS-485 adapter that is unplugged and plugged back.

use crate::common::*;
use polegate::config::Framing;
use polegate::demo::rtu_slave::SlaveBus;
use polegate::southbound::modbus::link::{Link, PolledDevice};
use polegate::southbound::modbus::rtu::Mode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_server_that_vanishes_and_returns_is_reconnected_without_help() {
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let serving = CancellationToken::new();
    let addr = device_server(&sim, &serving).await;

    let mut link = Link::tcp(&addr.to_string(), Framing::Rtu);
    link.request_timeout = Duration::from_millis(200);
    link.devices.push(PolledDevice::new(
        device_info("lamp-1", "generic-lamp-modbus"),
        1,
        Duration::from_millis(50),
    ));
    let mut rig = DriverRig::modbus(link);

    assert_eq!(rig.next_state().await, ("lamp-1".into(), true, None));
    // The device server goes away: connections closed, nothing listening.
    serving.cancel();
    let (_, online, reason) = rig.next_state().await;
    assert!(!online);
    let reason = reason.unwrap_or_default();
    assert!(reason.contains(&addr.to_string()), "{reason}");
    // It comes back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let serving = CancellationToken::new();
    tokio::spawn(sim.clone().serve_tcp(listener, serving.clone()));
    assert_eq!(rig.next_state().await, ("lamp-1".into(), true, None));
    assert!(sim.connections.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    rig.cancel.cancel();
    serving.cancel();
}
