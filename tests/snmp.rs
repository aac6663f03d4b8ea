//! SNMP (SPEC §11) against an agent nobody here wrote: `snmpsim` serving recorded data
//! of a PoE switch (RFC 3621) with writable (`writecache`) and refusing (`error`)
//! objects. Proves values and enums of several devices read in one GET, a SET recorded at
//! the agent, a power cycle's two SETs `cycle_off_s` apart while polling goes on, a
//! refused SET naming its SNMP error, `noSuchInstance` leaving one point out, v3
//! (SHA-256/AES-128) with a wrong key going offline "SNMP authentication failed" while
//! another agent goes on, a silent agent going offline "SNMP timeout", and a hostile
//! agent (malformed BER, huge datagrams, wrong request ids) costing no panic and no stall,
//! and a port that will not switch back on failing the power cycle and being retried.

use crate::common::*;
use polegate::model::Value;
use polegate::model::command::WriteRequest;
use polegate::pipeline::Input;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_switch_and_its_ports_are_read_with_their_enums_in_one_get() {
    let mut sim = SnmpSim::start(&switch_records()).await;
    let mut rig = AgentRig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![
            snmp_device("sw", "snmp-poe-switch", None, 300),
            snmp_device("cam-1", "snmp-poe-port-camera", Some(1), 300),
            snmp_device("cam-2", "snmp-poe-port-camera", Some(2), 300),
        ],
    );
    let sw = rig.reading("sw").await;
    assert_eq!(sw["uptime"], Value::Float(1234.56));
    assert_eq!(sw["poe_budget"], Value::Int(370));
    assert_eq!(sw["poe_power_total"], Value::Int(42));
    let cam1 = rig.reading("cam-1").await;
    assert_eq!(cam1["poe_enabled"], Value::Bool(true));
    assert_eq!(cam1["poe_status"], Value::Text("delivering".into()));
    let cam2 = rig.reading("cam-2").await;
    assert_eq!(cam2["poe_status"], Value::Text("searching".into()));
    // The three devices (7 OIDs) go out in one request.
    let oids = [
        "1.3.6.1.2.1.1.3.0".to_string(),
        "1.3.6.1.2.1.105.1.3.1.1.4.1".to_string(),
        format!("{ADMIN}.1="),
        format!("{DETECT}.2="),
    ];
    let deadline = Instant::now() + WAIT;
    loop {
        let together = sim
            .requests()
            .iter()
            .any(|(_, r)| oids.iter().all(|o| r.contains(o.as_str())));
        if together {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no GET carried all three devices: {:#?}",
            sim.requests()
        );
        let _ = rig.reading("sw").await;
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_set_is_recorded_at_the_agent_and_read_back() {
    let sim = SnmpSim::start(&switch_records()).await;
    let mut rig = AgentRig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![snmp_device("cam-1", "snmp-poe-port-camera", Some(1), 500)],
    );
    let out = rig.write("cam-1", "poe_enabled", Value::Bool(false)).await;
    assert_eq!(out.error, None);
    assert_eq!(
        out.points.first().map(|p| p.1.clone()),
        Some(Value::Bool(false))
    );
    assert_eq!(
        agent_value(&sim.address(), &format!("{ADMIN}.1")).await,
        Some(2)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_power_cycle_switches_the_port_off_then_on_cycle_off_s_apart_while_polling_goes_on() {
    let sim = SnmpSim::start(&switch_records()).await;
    let address = sim.address();
    let mut rig = AgentRig::start(
        "poe-sw-1",
        v2c(&address),
        vec![
            snmp_device("cam-1", "snmp-poe-port-camera", Some(1), 200),
            snmp_device("cam-2", "snmp-poe-port-camera", Some(2), 200),
        ],
    );
    let _ = rig.reading("cam-1").await;
    // Watch the port at the agent while the command runs.
    let watch = tokio::spawn({
        let address = address.clone();
        async move {
            let mut seen: Vec<(Instant, i64)> = Vec::new();
            let end = Instant::now() + Duration::from_secs(4);
            while Instant::now() < end {
                if let Some(v) = agent_value(&address, &format!("{ADMIN}.1")).await
                    && seen.last().is_none_or(|(_, last)| *last != v)
                {
                    seen.push((Instant::now(), v));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            seen
        }
    });
    let i = rig.ids.iter().position(|d| d == "cam-1").expect("cam-1");
    let point = device_profile_index(&mut rig, "cam-1", "power_cycle").await;
    let (reply, mut rx) = oneshot::channel();
    let started = Instant::now();
    rig.inbox
        .send(Box::new(WriteRequest {
            device: i,
            writes: vec![(point, Value::Bool(true))],
            id: Some("cycle".into()),
            expires_ms: None,
            reply,
        }))
        .await
        .expect("inbox");
    // The other port keeps being polled during the off time.
    let mut cam2_readings = 0;
    let out = loop {
        tokio::select! {
            o = &mut rx => break o.expect("outcome"),
            m = rig.input.recv() => if let Some(Input::Reading { device, .. }) = m && device.id == "cam-2" {
                cam2_readings += 1;
            },
            _ = tokio::time::sleep_until(started + WAIT) => panic!("no outcome"),
        }
    };
    assert_eq!(out.error, None, "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        cam2_readings >= 2,
        "cam-2 was polled {cam2_readings} times during the cycle"
    );
    let seen = watch.await.expect("watcher");
    let values: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [1, 2, 1], "the agent saw off then on: {seen:?}");
    let off = seen[2].0.duration_since(seen[1].0);
    assert!(
        off >= Duration::from_millis(900) && off <= Duration::from_millis(1600),
        "off for {off:?}, cycle_off_s = 1"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_refused_set_names_the_snmp_error_and_no_such_instance_leaves_one_point_out() {
    let sim = SnmpSim::start(&switch_records()).await;
    let mut rig = AgentRig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![
            snmp_device("cam-3", "snmp-poe-port-camera", Some(3), 300),
            snmp_device("cam-4", "snmp-poe-port-camera", Some(4), 300),
        ],
    );
    let out = rig.write("cam-3", "poe_enabled", Value::Bool(false)).await;
    let error = out.error.expect("refused");
    assert!(error.to_string().contains("notWritable"), "{error}");
    assert_eq!(error.code(), "device_error");
    let cam4 = rig.reading("cam-4").await;
    assert_eq!(cam4.get("poe_status"), Some(&Value::Text("fault".into())));
    assert!(!cam4.contains_key("poe_enabled"), "{cam4:?}");
    assert!(rig.counters.snmp_no_such.load(Relaxed) >= 1);
    assert!(rig.counters.snmp_refused.load(Relaxed) >= 1);
    sim.stop().await;
}

#[tokio::test]
async fn v3_with_a_wrong_key_goes_offline_with_authentication_failed_while_another_agent_goes_on() {
    let sim = SnmpSim::start(&switch_records()).await;
    let mut bad = AgentRig::start(
        "bad",
        v3(&sim.address(), "wrongpass123"),
        vec![snmp_device("sw-bad", "snmp-poe-switch", None, 100)],
    );
    let mut good = AgentRig::start(
        "good",
        v3(&sim.address(), V3_AUTH),
        vec![snmp_device("sw-good", "snmp-poe-switch", None, 100)],
    );
    let r = good.reading("sw-good").await;
    assert_eq!(r["poe_budget"], Value::Int(370));
    let reason = bad.state("sw-bad", false).await;
    assert_eq!(reason.as_deref(), Some("SNMP authentication failed"));
    // The good agent keeps its pace while the other one fails.
    let _ = good.reading("sw-good").await;
    assert!(bad.counters.snmp_auth_failed.load(Relaxed) >= 3);
    sim.stop().await;
}

#[tokio::test]
async fn a_silent_agent_goes_offline_with_snmp_timeout() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let address = silent.local_addr().expect("addr").to_string();
    let mut cfg = v2c(&address);
    cfg.timeout_ms = 100;
    cfg.retries = 0;
    let mut rig = AgentRig::start(
        "silent",
        cfg,
        vec![snmp_device("sw", "snmp-poe-switch", None, 100)],
    );
    let reason = rig.state("sw", false).await;
    assert_eq!(reason.as_deref(), Some("SNMP timeout"));
    assert!(rig.counters.snmp_timeout.load(Relaxed) >= 3);
}

/// Answers every datagram with garbage, a 60 kB datagram and a well-formed response
/// carrying another request id.
async fn hostile_agent(socket: tokio::net::UdpSocket, cancel: CancellationToken) {
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => return },
        };
        let _ = socket
            .send_to(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02], from)
            .await;
        let _ = socket.send_to(&vec![0x30; 60_000], from).await;
        // The request with its request id bytes flipped and its PDU tag turned into a
        // Response (0xa2): valid BER, wrong id.
        let mut reply = buf[..n].to_vec();
        if let Some(p) = reply.iter().position(|b| *b == 0xa0) {
            reply[p] = 0xa2;
            if let Some(id) = reply.get_mut(p + 4) {
                *id ^= 0x55;
            }
        }
        let _ = socket.send_to(&reply, from).await;
    }
}

#[tokio::test]
async fn a_hostile_agent_causes_no_panic_and_no_stall_of_other_agents() {
    let sim = SnmpSim::start(&switch_records()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hostile_address = socket.local_addr().expect("addr").to_string();
    let cancel = CancellationToken::new();
    tokio::spawn(hostile_agent(socket, cancel.clone()));
    let mut cfg = v2c(&hostile_address);
    cfg.timeout_ms = 150;
    let mut hostile = AgentRig::start(
        "hostile",
        cfg,
        vec![snmp_device("victim", "snmp-poe-switch", None, 100)],
    );
    let mut good = AgentRig::start(
        "good",
        v2c(&sim.address()),
        vec![snmp_device("sw", "snmp-poe-switch", None, 100)],
    );
    let reason = hostile.state("victim", false).await;
    assert_eq!(reason.as_deref(), Some("SNMP timeout"));
    // Meanwhile the other agent was read at its pace.
    let started = Instant::now();
    for _ in 0..5 {
        let _ = good.reading("sw").await;
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // The hostile agent's task is still alive: it still sends the victim's failures.
    let before = hostile.counters.snmp_timeout.load(Relaxed);
    crate::common::eventually("more timeouts", || {
        hostile.counters.snmp_timeout.load(Relaxed) > before
    })
    .await;
    cancel.cancel();
    sim.stop().await;
}

#[tokio::test]
async fn a_port_that_will_not_switch_back_on_fails_the_power_cycle_and_is_retried() {
    // Port 1 takes "off" (2) and refuses "on" (1), as a switch with a stuck PSE would.
    let records =
        format!("{ADMIN}.1|2:error|op=set,vlist=eq:1:notwritable,value=1\n{DETECT}.1|2|3\n");
    let sim = SnmpSim::start(&records).await;
    let mut rig = AgentRig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![snmp_device("cam-1", "snmp-poe-port-camera", Some(1), 300)],
    );
    let out = rig.write("cam-1", "power_cycle", Value::Bool(true)).await;
    let error = out.error.expect("switching on failed").to_string();
    assert!(error.contains("switching on failed (retrying)"), "{error}");
    assert!(error.contains("notWritable"), "{error}");
    assert_eq!(
        agent_value(&sim.address(), &format!("{ADMIN}.1")).await,
        Some(2)
    );
    // Tried again (every 5 s) without another command.
    let refused = rig.counters.snmp_refused.load(Relaxed);
    let deadline = Instant::now() + Duration::from_secs(8);
    while rig.counters.snmp_refused.load(Relaxed) == refused {
        assert!(
            Instant::now() < deadline,
            "no second attempt to switch the port on"
        );
        let _ = rig.reading("cam-1").await;
    }
    sim.stop().await;
}
