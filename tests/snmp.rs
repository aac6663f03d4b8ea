//! SNMP (SPEC §11) against an agent nobody here wrote: `snmpsim` serving recorded data
//! of a PoE switch (RFC 3621) with writable (`writecache`) and refusing (`error`)
//! objects. Proves values and enums of several devices read in one GET, a SET recorded at
//! the agent, a power cycle's two SETs `cycle_off_s` apart while polling goes on, a
//! refused SET naming its SNMP error, `noSuchInstance` leaving one point out, v3
//! (SHA-256/AES-128) with a wrong key going offline "SNMP authentication failed" while
//! another agent goes on, a silent agent going offline "SNMP timeout", and a hostile
//! agent (malformed BER, huge datagrams, wrong request ids) costing no panic and no stall,
//! and `polegate probe snmp` (the real binary) reading with v2c and v3.

use crate::common::{SnmpSim, V3_AUTH, V3_PRIV, V3_USER, WAIT, device_info};
use polegate::config::ocpp::Secret;
use polegate::config::snmp::{AuthProto, SnmpAgentCfg, SnmpCreds};
use polegate::model::Value;
use polegate::model::command::{WriteOutcome, WriteRequest};
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input};
use polegate::profile::Profile;
use polegate::southbound::INBOX_CAPACITY;
use polegate::southbound::snmp::{SnmpAgent, SnmpDevice, spawn_agent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "1.3.6.1.2.1.105.1.1.1.3.1";
const DETECT: &str = "1.3.6.1.2.1.105.1.1.1.6.1";

/// A PoE switch: sysUpTime, its main PSE, ports 1 and 2 writable, port 3 refusing SETs,
/// port 4 reporting a fault and no admin state (noSuchInstance).
fn switch_records() -> String {
    [
        "1.3.6.1.2.1.1.3.0|67|123456".to_string(),
        format!("{ADMIN}.1|2:writecache|value=1"),
        format!("{ADMIN}.2|2:writecache|value=1"),
        format!("{ADMIN}.3|2:error|op=set,status=notwritable,value=1"),
        format!("{DETECT}.1|2|3"),
        format!("{DETECT}.2|2|2"),
        format!("{DETECT}.3|2|3"),
        format!("{DETECT}.4|2|4"),
        "1.3.6.1.2.1.105.1.3.1.1.2.1|66|370".to_string(),
        "1.3.6.1.2.1.105.1.3.1.1.4.1|66|42".to_string(),
    ]
    .join("\n")
        + "\n"
}

fn v2c(address: &str) -> SnmpAgentCfg {
    SnmpAgentCfg {
        address: address.into(),
        creds: SnmpCreds::V2c {
            community: Secret(crate::common::COMMUNITY.into()),
        },
        timeout_ms: 1000,
        retries: 1,
        max_oids: 20,
    }
}

fn v3(address: &str, auth_key: &str) -> SnmpAgentCfg {
    SnmpAgentCfg {
        creds: SnmpCreds::V3 {
            user: V3_USER.into(),
            context: crate::common::COMMUNITY.into(),
            auth: AuthProto::Sha256,
            auth_key: Secret(auth_key.into()),
            priv_key: Secret(V3_PRIV.into()),
        },
        ..v2c(address)
    }
}

/// A device of profile `profile` (power cycles shortened to `cycle_off_s` 1).
fn device(id: &str, profile: &str, index: Option<u32>, poll_ms: u64) -> SnmpDevice {
    let shipped = device_info(id, profile);
    let mut p: Profile = (*shipped.profile).clone();
    if let Some(s) = &mut p.snmp {
        s.cycle_off_s = 1;
    }
    let info = Arc::new(DeviceInfo::new(id, Arc::new(p), Default::default(), 0));
    SnmpDevice::new(info, index, Duration::from_millis(poll_ms)).expect("snmp device")
}

struct Rig {
    input: mpsc::Receiver<Input>,
    inbox: mpsc::Sender<WriteRequest>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    ids: Vec<String>,
}

impl Rig {
    fn start(id: &str, cfg: SnmpAgentCfg, devices: Vec<SnmpDevice>) -> Rig {
        let (tx, input) = mpsc::channel(INPUT_CAPACITY);
        let (inbox, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let ids = devices.iter().map(|d| d.info.id.clone()).collect();
        let agent = SnmpAgent {
            id: id.into(),
            cfg,
            devices,
        };
        spawn_agent(agent, inbox_rx, &tx, &counters, &cancel, None);
        Rig {
            input,
            inbox,
            counters,
            cancel,
            ids,
        }
    }

    /// The next reading of `device`, by point name.
    async fn reading(&mut self, device: &str) -> HashMap<String, Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.input.recv())
                .await
                .expect("a reading in time")
                .expect("driver alive");
            if let Input::Reading {
                device: d, values, ..
            } = m
                && d.id == device
            {
                return values
                    .into_iter()
                    .map(|(i, v)| (d.profile.points[i].name.clone(), v))
                    .collect();
            }
        }
    }

    /// The next transition of `device` to `online`; its reason.
    async fn state(&mut self, device: &str, online: bool) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.input.recv())
                .await
                .expect("a state change in time")
                .expect("driver alive");
            if let Input::State {
                device: d,
                online: o,
                reason,
            } = m
                && d.id == device
                && o == online
            {
                return reason;
            }
        }
    }

    /// Writes `point = value` on device `device` (by name) and waits for the outcome.
    async fn write(&mut self, device: &str, point: &str, value: Value) -> WriteOutcome {
        let i = self.ids.iter().position(|d| d == device).expect("device");
        let profile_points = device_profile_index(self, device, point).await;
        let (reply, rx) = oneshot::channel();
        let req = WriteRequest {
            device: i,
            writes: vec![(profile_points, value)],
            id: Some("c-1".into()),
            expires_ms: None,
            reply,
        };
        self.inbox.send(req).await.expect("inbox");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("an outcome in time")
            .expect("an outcome")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The index of `point` in `device`'s profile (from its next reading's device info).
async fn device_profile_index(rig: &mut Rig, device: &str, point: &str) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, rig.input.recv())
            .await
            .expect("a message in time")
            .expect("driver alive");
        let d = match &m {
            Input::Reading { device: d, .. } | Input::State { device: d, .. } => d,
            _ => continue,
        };
        if d.id == device {
            return d.profile.point(point).expect("point").0;
        }
    }
}

/// The agent's current value of `oid` (an independent GET with the crate's client).
async fn agent_value(address: &str, oid: &str) -> Option<i64> {
    let client = async_snmp::Client::builder(address, async_snmp::Auth::v2c("public"))
        .request_timeout(Duration::from_millis(300))
        .connect()
        .await
        .ok()?;
    let r = client.get(&async_snmp::Oid::parse(oid).ok()?).await.ok()?;
    r.varbinds.first()?.value.as_i32().map(i64::from)
}

#[tokio::test]
async fn a_switch_and_its_ports_are_read_with_their_enums_in_one_get() {
    let mut sim = SnmpSim::start(&switch_records()).await;
    let mut rig = Rig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![
            device("sw", "snmp-poe-switch", None, 300),
            device("cam-1", "snmp-poe-port-camera", Some(1), 300),
            device("cam-2", "snmp-poe-port-camera", Some(2), 300),
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
    let mut rig = Rig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![device("cam-1", "snmp-poe-port-camera", Some(1), 500)],
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
    let mut rig = Rig::start(
        "poe-sw-1",
        v2c(&address),
        vec![
            device("cam-1", "snmp-poe-port-camera", Some(1), 200),
            device("cam-2", "snmp-poe-port-camera", Some(2), 200),
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
        .send(WriteRequest {
            device: i,
            writes: vec![(point, Value::Bool(true))],
            id: Some("cycle".into()),
            expires_ms: None,
            reply,
        })
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
    let mut rig = Rig::start(
        "poe-sw-1",
        v2c(&sim.address()),
        vec![
            device("cam-3", "snmp-poe-port-camera", Some(3), 300),
            device("cam-4", "snmp-poe-port-camera", Some(4), 300),
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
    let mut bad = Rig::start(
        "bad",
        v3(&sim.address(), "wrongpass123"),
        vec![device("sw-bad", "snmp-poe-switch", None, 100)],
    );
    let mut good = Rig::start(
        "good",
        v3(&sim.address(), V3_AUTH),
        vec![device("sw-good", "snmp-poe-switch", None, 100)],
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
    let mut rig = Rig::start(
        "silent",
        cfg,
        vec![device("sw", "snmp-poe-switch", None, 100)],
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
    let mut hostile = Rig::start(
        "hostile",
        cfg,
        vec![device("victim", "snmp-poe-switch", None, 100)],
    );
    let mut good = Rig::start(
        "good",
        v2c(&sim.address()),
        vec![device("sw", "snmp-poe-switch", None, 100)],
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

/// `polegate probe snmp` as the technician runs it (the real binary, blocking: run on a
/// blocking thread so the agent's log reader keeps going).
async fn probe(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_polegate"))
            .arg("probe")
            .arg("snmp")
            .args(args)
            .output()
            .expect("run polegate probe snmp")
    })
    .await
    .expect("probe thread")
}

#[tokio::test]
async fn the_probe_reads_oids_with_v2c_and_v3_and_names_a_wrong_key() {
    let sim = SnmpSim::start(&switch_records()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, s: &str| {
        crate::common::secret_file(dir.path(), name, s)
            .display()
            .to_string()
    };
    let (community, auth, wrong, privacy) = (
        file("c", crate::common::COMMUNITY),
        file("a", V3_AUTH),
        file("w", "wrongpass123"),
        file("p", V3_PRIV),
    );
    let oids = [
        "--oid".to_string(),
        "1.3.6.1.2.1.1.3.0".into(),
        "--oid".into(),
        format!("{DETECT}.1"),
        "--oid".into(),
        format!("{ADMIN}.9"),
    ];
    let mut args = vec![
        "--agent".to_string(),
        sim.address(),
        "--community-file".into(),
        community,
    ];
    args.extend(oids.iter().cloned());
    let out = probe(args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1.3.6.1.2.1.1.3.0 = time_ticks"), "{text}");
    assert!(text.contains(&format!("{DETECT}.1 = integer 3")), "{text}");
    assert!(
        text.contains(&format!("{ADMIN}.9 = no_such_instance")),
        "{text}"
    );
    let v3 = |key: String| {
        let mut a = vec![
            "--agent".to_string(),
            sim.address(),
            "--user".into(),
            V3_USER.into(),
            "--auth".into(),
            "sha256".into(),
            "--auth-key-file".into(),
            key,
            "--privacy".into(),
            "aes128".into(),
            "--priv-key-file".into(),
            privacy.clone(),
            "--context".into(),
            crate::common::COMMUNITY.into(),
            "--timeout-ms".into(),
            "500".into(),
        ];
        a.extend(oids[..2].iter().cloned());
        a
    };
    let out = probe(v3(auth)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = probe(v3(wrong)).await;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SNMP authentication failed"), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn an_agent_name_that_does_not_resolve_goes_offline_naming_it() {
    let mut cfg = v2c("camera.invalid:161");
    cfg.timeout_ms = 200;
    let mut rig = Rig::start(
        "nowhere",
        cfg,
        vec![device("cam", "snmp-uptime-camera", None, 50)],
    );
    let reason = rig.state("cam", false).await.expect("a reason");
    assert!(reason.starts_with("SNMP error"), "{reason}");
    assert!(
        rig.counters.snmp_error.load(Relaxed) >= 3,
        "each failed cycle is counted"
    );
}
