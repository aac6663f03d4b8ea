//! SNMP and reach end to end (SPEC §11), through the same entry point as `polegate run`:
//! a configuration with a `[[bus]] kind = "snmp"` (v2c, community from a file), a switch
//! and a camera on port 1 by `index`, and a reach-only camera, against snmpsim and a real
//! mosquitto. Proves the births carry the new kinds, telemetry carries the RFC 3621 enum
//! labels and reach points, and a control-room `power_cycle` gets `ok:true`.

use crate::common::*;
use tokio_util::sync::CancellationToken;

const RECORDS: &str = "1.3.6.1.2.1.1.3.0|67|123456
1.3.6.1.2.1.105.1.1.1.3.1.1|2:writecache|value=1
1.3.6.1.2.1.105.1.1.1.6.1.1|2|3
1.3.6.1.2.1.105.1.3.1.1.2.1|66|370
1.3.6.1.2.1.105.1.3.1.1.4.1|66|42
";

const CAMERA: &str = r#"name = "test-poe-camera"
kind = "camera"
protocol = "snmp"
poll_ms = 200
[snmp]
cycle_off_s = 1
[[point]]
name = "poe_enabled"
oid = "1.3.6.1.2.1.105.1.1.1.3.1.{index}"
type = "bool"
writable = true
[[point]]
name = "poe_status"
oid = "1.3.6.1.2.1.105.1.1.1.6.1.{index}"
type = "i32"
values = { "1" = "disabled", "2" = "searching", "3" = "delivering", "4" = "fault", "5" = "test", "6" = "other_fault" }
[[point]]
name = "power_cycle"
type = "bool"
writable = true
"#;

#[tokio::test]
async fn a_switch_and_cameras_publish_over_snmp_and_reach_and_a_power_cycle_succeeds() {
    let sim = SnmpSim::start(RECORDS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let community = secret_file(dir.path(), "snmp.community", COMMUNITY);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let rtsp = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listener.accept() => if r.is_err() { return },
                }
            }
        }
    });
    let config = format!(
        r#"
[[bus]]
id = "poe-sw-1"
kind = "snmp"
address = "{agent}"
version = "2c"
community_file = "{community}"
timeout_ms = 1000

[[device]]
id = "sw"
profile = "snmp-poe-switch"
poll_ms = 200
snmp = {{ bus = "poe-sw-1" }}

[[device]]
id = "cam-1"
profile = "test-poe-camera"
snmp = {{ bus = "poe-sw-1", index = 1 }}
reach = {{ tcp = "{rtsp}" }}

[[device]]
id = "cam-9"
profile = "reach-camera"
poll_ms = 200
reach = {{ tcp = "{rtsp}" }}
"#,
        agent = sim.address(),
        community = community.display(),
    );
    let mut rig = Rig::start(cancel, (), &config, &[("test-poe-camera.toml", CAMERA)]).await;
    let birth = rig
        .rec
        .wait_for("camera birth", |m| {
            m.topic == "polegate/cab-test/cam-1/state" && m.json["state"] == "online"
        })
        .await;
    assert_eq!(birth.json["kind"], "camera");
    assert!(
        birth.json["points"].get("reachable").is_some(),
        "{}",
        birth.json
    );
    let t = rig
        .rec
        .wait_for("camera telemetry", |m| {
            m.topic == "polegate/cab-test/cam-1/telemetry"
                && m.json["points"].get("poe_status").is_some()
        })
        .await;
    assert_eq!(t.json["points"]["poe_status"], "delivering");
    rig.rec
        .wait_for("camera reach", |m| {
            m.topic == "polegate/cab-test/cam-1/telemetry" && m.json["points"]["reachable"] == true
        })
        .await;
    rig.rec
        .wait_for("switch telemetry", |m| {
            m.topic == "polegate/cab-test/sw/telemetry" && m.json["points"]["poe_budget"] == 370
        })
        .await;
    rig.rec
        .wait_for("reach-only camera online", |m| {
            m.topic == "polegate/cab-test/cam-9/state" && m.json["state"] == "online"
        })
        .await;
    rig.publish(
        "polegate/cab-test/cam-1/cmd",
        r#"{"id":"cycle-1","point":"power_cycle","value":true}"#,
        false,
    )
    .await;
    let result = rig
        .rec
        .wait_for("power cycle result", |m| {
            m.topic == "polegate/cab-test/cam-1/cmd/result" && m.json["id"] == "cycle-1"
        })
        .await;
    assert_eq!(result.json["ok"], true, "{}", result.json);
    rig.stop().await;
    sim.stop().await;
}
