//! Reachability (SPEC §11) through the reach task as the daemon runs it: a reach-only
//! camera checked by TCP connect is online with `reachable`/`rtt` while a listener
//! accepts, and offline with reason `unreachable` after 3 failed checks once it is gone;
//! ICMP echo to the loopback answers (a ping socket where `net.ipv4.ping_group_range`
//! allows it, else a raw socket with CAP_NET_RAW, as the tests run); a device with
//! another transport only gets the two points, its state stays its driver's.

use crate::common::{WAIT, device_info};
use polegate::config::snmp::ReachCfg;
use polegate::model::Value;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input};
use polegate::southbound::INBOX_CAPACITY;
use polegate::southbound::reach::{ReachDevice, spawn};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Rig {
    input: mpsc::Receiver<Input>,
    _inbox: polegate::model::command::InboxSender,
    cancel: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn start(devices: Vec<ReachDevice>) -> Rig {
    let (tx, input) = mpsc::channel(INPUT_CAPACITY);
    let (inbox, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
    let cancel = CancellationToken::new();
    spawn(
        devices,
        inbox_rx,
        tx,
        Arc::new(Counters::default()),
        cancel.clone(),
        None,
    );
    Rig {
        input,
        _inbox: inbox,
        cancel,
    }
}

fn device(info: Arc<DeviceInfo>, target: ReachCfg, alone: bool) -> ReachDevice {
    ReachDevice {
        info,
        target,
        poll: Duration::from_millis(100),
        alone,
    }
}

enum Seen {
    Reading(HashMap<String, Value>),
    State(bool, Option<String>),
}

async fn next(rig: &mut Rig) -> Seen {
    let m = tokio::time::timeout(WAIT, rig.input.recv())
        .await
        .expect("a message in time")
        .expect("task alive");
    match m {
        Input::Reading { device, values, .. } => Seen::Reading(
            values
                .into_iter()
                .map(|(i, v)| (device.profile.points[i].name.clone(), v))
                .collect(),
        ),
        Input::State { online, reason, .. } => Seen::State(online, reason),
        _ => Box::pin(next(rig)).await,
    }
}

#[tokio::test]
async fn a_reach_only_camera_is_online_while_its_port_accepts_and_offline_unreachable_after() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accept = tokio::spawn(async move {
        loop {
            if listener.accept().await.is_err() {
                return;
            }
        }
    });
    let cam = device_info("cam", "reach-camera");
    let mut rig = start(vec![device(cam, ReachCfg::Tcp(addr), true)]);
    let mut online = false;
    let reading = loop {
        match next(&mut rig).await {
            Seen::State(true, _) => online = true,
            Seen::Reading(r) => break r,
            Seen::State(false, r) => panic!("offline: {r:?}"),
        }
    };
    assert!(online, "online before its first reading");
    assert_eq!(reading["reachable"], Value::Bool(true));
    assert!(matches!(reading["rtt"], Value::Float(ms) if (0.0..1000.0).contains(&ms)));
    accept.abort();
    let _ = accept.await;
    let deadline = Instant::now() + WAIT;
    let reason = loop {
        assert!(Instant::now() < deadline, "never offline");
        match next(&mut rig).await {
            Seen::State(false, reason) => break reason,
            Seen::Reading(r) if r.get("reachable") == Some(&Value::Bool(false)) => {
                assert!(!r.contains_key("rtt"), "no rtt when unreachable: {r:?}");
            }
            _ => {}
        }
    };
    assert_eq!(reason.as_deref(), Some("unreachable"));
}

#[tokio::test]
async fn icmp_echo_to_the_loopback_is_answered() {
    let cam = device_info("cam", "reach-camera");
    let mut rig = start(vec![device(cam, ReachCfg::Icmp("127.0.0.1".into()), true)]);
    loop {
        match next(&mut rig).await {
            Seen::Reading(r) => {
                assert_eq!(r["reachable"], Value::Bool(true), "{r:?}");
                assert!(r.contains_key("rtt"));
                break;
            }
            Seen::State(false, reason) => panic!("ICMP failed: {reason:?}"),
            Seen::State(true, _) => {}
        }
    }
}

#[tokio::test]
async fn a_device_with_a_transport_gets_reachable_and_rtt_but_keeps_its_state() {
    let sw = device_info("sw", "snmp-poe-switch");
    let profile = Arc::new(polegate::profile::snmp::with_reach(&sw.profile));
    assert!(profile.point("reachable").is_some() && profile.point("rtt").is_some());
    let info = Arc::new(DeviceInfo::new("sw", profile, Default::default(), 0));
    // Nothing listens on this port: unreachable, but no state event from this task.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let mut rig = start(vec![device(info, ReachCfg::Tcp(closed), false)]);
    for _ in 0..4 {
        match next(&mut rig).await {
            Seen::Reading(r) => assert_eq!(r["reachable"], Value::Bool(false)),
            Seen::State(o, r) => panic!("the reach task changed the state: {o} {r:?}"),
        }
    }
}
