//! The SNMP driver under test without the rest of the daemon (tests/snmp*.rs): one agent
//! task started as the daemon starts it, its channels, the recorded PoE switch the
//! snmpsim agent serves, and an independent GET to read what the agent holds.

use super::{COMMUNITY, V3_PRIV, V3_USER, WAIT, device_info};
use polegate::config::ocpp::Secret;
use polegate::config::snmp::{AuthProto, SnmpAgentCfg, SnmpCreds};
use polegate::model::Value;
use polegate::model::command::{InboxSender, WriteOutcome, WriteRequest};
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input};
use polegate::profile::Profile;
use polegate::southbound::INBOX_CAPACITY;
use polegate::southbound::Wiring;
use polegate::southbound::snmp::{SnmpAgent, SnmpDevice, spawn_agent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "1.3.6.1.2.1.105.1.1.1.3.1";
pub const DETECT: &str = "1.3.6.1.2.1.105.1.1.1.6.1";

/// A PoE switch: sysUpTime, its main PSE, ports 1 and 2 writable, port 3 refusing SETs,
/// port 4 reporting a fault and no admin state (noSuchInstance).
pub fn switch_records() -> String {
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

pub fn v2c(address: &str) -> SnmpAgentCfg {
    SnmpAgentCfg {
        address: address.into(),
        creds: SnmpCreds::V2c {
            community: Secret(COMMUNITY.into()),
        },
        timeout_ms: 1000,
        retries: 1,
        max_oids: 20,
    }
}

pub fn v3(address: &str, auth_key: &str) -> SnmpAgentCfg {
    SnmpAgentCfg {
        creds: SnmpCreds::V3 {
            user: V3_USER.into(),
            context: COMMUNITY.into(),
            auth: AuthProto::Sha256,
            auth_key: Secret(auth_key.into()),
            priv_key: Secret(V3_PRIV.into()),
        },
        ..v2c(address)
    }
}

/// A device of profile `profile` (power cycles shortened to `cycle_off_s` 1).
pub fn snmp_device(id: &str, profile: &str, index: Option<u32>, poll_ms: u64) -> SnmpDevice {
    let shipped = device_info(id, profile);
    let mut p: Profile = (*shipped.profile).clone();
    if let Some(s) = &mut p.snmp {
        s.cycle_off_s = 1;
    }
    let info = Arc::new(DeviceInfo::new(id, Arc::new(p), Default::default(), 0));
    SnmpDevice::new(info, index, Duration::from_millis(poll_ms)).expect("snmp device")
}

pub struct AgentRig {
    pub input: mpsc::Receiver<Input>,
    pub inbox: InboxSender,
    pub counters: Arc<Counters>,
    pub cancel: CancellationToken,
    pub ids: Vec<String>,
}

impl AgentRig {
    pub fn start(id: &str, cfg: SnmpAgentCfg, devices: Vec<SnmpDevice>) -> AgentRig {
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
        let wiring = Wiring {
            inbox: inbox_rx,
            out: tx,
            counters: counters.clone(),
            cancel: cancel.clone(),
            hb: None,
        };
        spawn_agent(agent, wiring);
        AgentRig {
            input,
            inbox,
            counters,
            cancel,
            ids,
        }
    }

    /// The next reading of `device`, by point name.
    pub async fn reading(&mut self, device: &str) -> HashMap<String, Value> {
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
    pub async fn state(&mut self, device: &str, online: bool) -> Option<String> {
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
    pub async fn write(&mut self, device: &str, point: &str, value: Value) -> WriteOutcome {
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
        self.inbox.send(Box::new(req)).await.expect("inbox");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("an outcome in time")
            .expect("an outcome")
    }
}

impl Drop for AgentRig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The index of `point` in `device`'s profile (from its next reading's device info).
pub async fn device_profile_index(rig: &mut AgentRig, device: &str, point: &str) -> usize {
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
pub async fn agent_value(address: &str, oid: &str) -> Option<i64> {
    let client = async_snmp::Client::builder(address, async_snmp::Auth::v2c("public"))
        .request_timeout(Duration::from_millis(300))
        .connect()
        .await
        .ok()?;
    let r = client.get(&async_snmp::Oid::parse(oid).ok()?).await.ok()?;
    r.varbinds.first()?.value.as_i32().map(i64::from)
}
