//! Commands from the control room end to end (SPEC §5 `cmd`/`cmd/result`, §8): a write
//! reaches the simulated register, is read back and answered `ok` with the read-back
//! value and a telemetry event; every bad command class gets `ok:false` with its precise
//! error and leaves the registers untouched.

use crate::common::*;
use polegate::demo::sim::{Registers, Sim};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "polegate/cab-test/lamp-017/cmd";

/// The daemon with one lamp (`profile`) on a Modbus TCP simulator, online.
async fn lamp(profile: &str, profiles: &[(&str, &str)]) -> Rig<Sim> {
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let config = format!(
        "[[device]]\nid = \"lamp-017\"\nprofile = \"{profile}\"\npoll_ms = 200\n\
         modbus = {{ address = \"{}\", unit = 1 }}\n",
        sim.addr()
    );
    let mut r = Rig::start(cancel, sim, &config, profiles).await;
    r.rec
        .wait_for("device online", |m| {
            m.topic.ends_with("/state") && m.json["state"] == "online"
        })
        .await;
    r
}

fn snapshot(sim: &Sim) -> Registers {
    sim.registers().lock().unwrap().clone()
}

async fn result_for(rec: &mut Recorder, device: &str, id: Option<&str>) -> serde_json::Value {
    let topic = format!("polegate/cab-test/{device}/cmd/result");
    let id = id.map(|s| json!(s)).unwrap_or(serde_json::Value::Null);
    // Skip replays of results from before a restart (same seq, "historical").
    rec.wait_for_new("command result", |m| {
        m.topic == topic && m.json["id"] == id && m.json.get("historical").is_none()
    })
    .await
    .json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dim_command_writes_the_register_and_answers_with_the_read_back_value() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    r.publish(
        TOPIC,
        r#"{"id":"c-17","point":"dim_level","value":40}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("c-17")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["points"], json!({"dim_level": 40}));
    assert_eq!(res["device"], "lamp-017");
    assert!(res["seq"].is_u64() && res["ts"].is_string() && res["gateway"] == "cab-test");
    assert_eq!(r.sim.registers().lock().unwrap().holding[0], 40);
    r.rec
        .wait_for("read-back telemetry", |m| {
            m.topic.ends_with("/telemetry") && m.json["points"]["dim_level"] == 40
        })
        .await;

    // Multi-point, in order: a coil and a register.
    r.publish(
        TOPIC,
        r#"{"id":"c-18","points":{"on":false,"dim_level":0}}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("c-18")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["points"], json!({"on": false, "dim_level": 0}));
    let regs = snapshot(&r.sim);
    assert!(!regs.coils[0]);
    assert_eq!(regs.holding[0], 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_command_gets_its_error_and_leaves_the_registers_untouched() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    let before = snapshot(&r.sim);
    let cases: &[(&str, &str, Option<&str>, &str, &str)] = &[
        ("lamp-017", "{not json", None, "not valid JSON", "malformed"),
        (
            "lamp-017",
            r#"{"point":"dim_level","value":1}"#,
            None,
            "missing 'id'",
            "malformed",
        ),
        (
            "nope-1",
            r#"{"id":"u-1","point":"dim_level","value":1}"#,
            Some("u-1"),
            "unknown device",
            "unknown_device",
        ),
        (
            "lamp-017",
            r#"{"id":"b-1","point":"nope","value":1}"#,
            Some("b-1"),
            "unknown point 'nope'",
            "unknown_point",
        ),
        (
            "lamp-017",
            r#"{"id":"b-2","point":"power","value":1}"#,
            Some("b-2"),
            "point 'power' is not writable",
            "not_writable",
        ),
        (
            "lamp-017",
            r#"{"id":"b-3","point":"dim_level","value":150}"#,
            Some("b-3"),
            "out of range 0..=100",
            "out_of_range",
        ),
        (
            "lamp-017",
            r#"{"id":"b-4","point":"on","value":"yes"}"#,
            Some("b-4"),
            "true, false, 0 or 1",
            "wrong_type",
        ),
        (
            "lamp-017",
            r#"{"id":"b-5","point":"dim_level","value":10,"expires":"2020-01-01T00:00:00Z"}"#,
            Some("b-5"),
            "expired",
            "expired",
        ),
        // All or nothing: a valid point beside an invalid one is not written either.
        (
            "lamp-017",
            r#"{"id":"b-6","points":{"dim_level":10,"power":5}}"#,
            Some("b-6"),
            "not writable",
            "not_writable",
        ),
    ];
    for (device, payload, id, frag, code) in cases {
        r.publish(&format!("polegate/cab-test/{device}/cmd"), payload, false)
            .await;
        let res = result_for(&mut r.rec, device, *id).await;
        assert_eq!(res["ok"], false, "{payload} -> {res}");
        let err = res["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(frag),
            "{payload}: error {err:?} lacks {frag:?}"
        );
        assert_eq!(res["code"], *code, "{payload} -> {res}");
    }

    // Duplicate id: the first runs, the second is refused.
    r.publish(
        TOPIC,
        r#"{"id":"d-1","point":"dim_level","value":80}"#,
        false,
    )
    .await;
    assert_eq!(
        result_for(&mut r.rec, "lamp-017", Some("d-1")).await["ok"],
        true
    );
    r.sim.registers().lock().unwrap().holding[0] = 80;
    r.publish(
        TOPIC,
        r#"{"id":"d-1","point":"dim_level","value":10}"#,
        false,
    )
    .await;
    r.rec
        .wait_until("duplicate refused", |s| {
            s.iter()
                .filter(|m| m.topic.ends_with("/cmd/result") && m.json["id"] == "d-1")
                .count()
                == 2
        })
        .await;
    let dup = r
        .rec
        .seen
        .iter()
        .filter(|m| m.topic.ends_with("/cmd/result") && m.json["id"] == "d-1")
        .nth(1)
        .unwrap()
        .json
        .clone();
    assert!(
        dup["error"].as_str().unwrap().contains("duplicate"),
        "{dup}"
    );

    let after = snapshot(&r.sim);
    assert_eq!(
        before.holding[..4],
        after.holding[..4],
        "holding registers changed"
    );
    assert_eq!(before.coils[..4], after.coils[..4], "coils changed");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_runs_once_and_is_not_replayed_after_a_restart() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    r.publish(
        TOPIC,
        r#"{"id":"ret-1","point":"dim_level","value":33}"#,
        true,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("ret-1")).await;
    assert_eq!(
        res["ok"], true,
        "a live retained publish is a live command: {res}"
    );
    assert_eq!(r.sim.registers().lock().unwrap().holding[0], 33);
    r.sim.registers().lock().unwrap().holding[0] = 80;

    // After a restart the broker replays the retained command on subscribe: refused.
    r.stop_daemon().await;
    r.start_daemon().await;
    let res = result_for(&mut r.rec, "lamp-017", Some("ret-1")).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(
        r.sim.registers().lock().unwrap().holding[0],
        80,
        "replayed command was written"
    );
    r.publish(TOPIC, "", true).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commands_is_rate_limited_per_device() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    // One burst: the rate limit must trip whatever the machine's speed.
    let payloads: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"id":"r-{i}","point":"dim_level","value":{}}}"#, 50 + i))
        .collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    publish_all(r.broker.port, TOPIC, &refs, false).await;
    r.rec
        .wait_until("12 results", |s| {
            s.iter()
                .filter(|m| m.topic.ends_with("/cmd/result"))
                .count()
                >= 12
        })
        .await;
    let limited = r
        .rec
        .seen
        .iter()
        .filter(|m| {
            m.topic.ends_with("/cmd/result")
                && m.json["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("rate limit"))
        })
        .count();
    assert!(limited >= 1, "no command was rate limited");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_points_take_a_label_or_its_number_and_refuse_others() {
    let profile = r#"
name = "test-ev-mode"
kind = "ev_charger"
protocol = "modbus"
[[point]]
name = "x_mode"
table = "holding"
address = 1
type = "u16"
writable = true
values = { "0" = "eco", "1" = "boost" }
[[point]]
name = "x_flag"
table = "holding"
address = 2
bit = 3
type = "bool"
writable = true
[[point]]
name = "x_limit"
table = "holding"
address = 4
type = "u32"
order = "CDAB"
scale = 0.5
writable = true
"#;
    let mut r = lamp("test-ev-mode", &[("test-ev-mode.toml", profile)]).await;
    r.publish(
        TOPIC,
        r#"{"id":"e-1","point":"x_mode","value":"boost"}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("e-1")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["points"], json!({"x_mode": "boost"}));
    assert_eq!(r.sim.registers().lock().unwrap().holding[1], 1);
    r.publish(
        TOPIC,
        r#"{"id":"e-2","point":"x_mode","value":"turbo"}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("e-2")).await;
    assert!(
        res["error"]
            .as_str()
            .unwrap()
            .contains("not one of eco, boost"),
        "{res}"
    );
    assert_eq!(r.sim.registers().lock().unwrap().holding[1], 1);

    // One bit of a holding register: read-modify-write keeps the other bits.
    r.sim.registers().lock().unwrap().holding[2] = 0b1000_0001;
    r.publish(
        TOPIC,
        r#"{"id":"e-3","points":{"x_flag":true,"x_limit":100000.5}}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("e-3")).await;
    assert_eq!(
        res["points"],
        json!({"x_flag": true, "x_limit": 100000.5}),
        "{res}"
    );
    let regs = snapshot(&r.sim);
    assert_eq!(regs.holding[2], 0b1000_1001);
    // 100000.5 / 0.5 = 200001 = 0x00030D41, CDAB: low word first.
    assert_eq!(&regs.holding[4..6], &[0x0D41, 0x0003]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_published_while_the_gateway_was_away_runs_when_it_returns() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    r.stop_daemon().await;
    // The persistent session keeps QoS 1 commands for the gateway.
    r.publish(
        TOPIC,
        r#"{"id":"away-1","point":"dim_level","value":25}"#,
        false,
    )
    .await;
    r.start_daemon().await;
    let res = result_for(&mut r.rec, "lamp-017", Some("away-1")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(r.sim.registers().lock().unwrap().holding[0], 25);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_an_offline_device_fails_fast() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    r.sim.set_fault(polegate::demo::sim::Fault::Silent);
    r.rec
        .wait_for("offline", |m| {
            m.topic.ends_with("/state") && m.json["state"] == "offline"
        })
        .await;
    r.publish(
        TOPIC,
        r#"{"id":"off-1","point":"dim_level","value":25}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("off-1")).await;
    assert_eq!(res["error"], "device offline", "{res}");
    assert_eq!(res["code"], "device_offline", "{res}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_commands_is_counted_but_answered_only_up_to_the_refusal_rate() {
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    let junk: Vec<String> = (0..60).map(|i| format!("{{not json {i}")).collect();
    let refs: Vec<&str> = junk.iter().map(String::as_str).collect();
    publish_all(r.broker.port, TOPIC, &refs, false).await;
    publish_all(r.broker.port, "polegate/cab-test/nope-9/cmd", &refs, false).await;
    let counters = r.daemon().handles.counters.clone();
    use std::sync::atomic::Ordering::Relaxed;
    eventually("120 refusals counted", || {
        counters.command_rejected.load(Relaxed) == 120
    })
    .await;
    // A good command still runs and is answered: the flood silenced refusals only.
    r.publish(
        TOPIC,
        r#"{"id":"after","point":"dim_level","value":30}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("after")).await;
    assert_eq!(res["ok"], true, "{res}");
    let answered = |dev: &str| {
        let topic = format!("polegate/cab-test/{dev}/cmd/result");
        r.rec
            .seen
            .iter()
            .filter(|m| m.topic == topic && m.json["ok"] == false)
            .count()
    };
    // The burst (20), plus at most two per second of the test's run.
    let bound = 20 + 2 * r.started.elapsed().as_secs() as usize + 2;
    assert!(
        answered("lamp-017") <= bound,
        "{} results",
        answered("lamp-017")
    );
    assert!(
        answered("nope-9") <= bound,
        "{} results",
        answered("nope-9")
    );
    assert!(answered("lamp-017") >= 20);
    r.stop().await;
}

/// A packet over the MQTT incoming limit (64 KiB) cannot be read, and the broker would
/// offer it again on every reconnect of the persistent session. The gateway discards it
/// with one clean-session reconnect (counted in `command_dropped`) instead of looping:
/// the next command runs and the session stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_packet_costs_one_reconnect_and_does_not_wedge_the_session() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = lamp("generic-lamp-modbus", &[]).await;
    let handles = r.daemon().handles.clone();
    let huge = format!(
        r#"{{"id":"big","point":"dim_level","value":40,"pad":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    r.publish(TOPIC, &huge, false).await;
    eventually("the oversized packet dropped", || {
        handles.counters.command_dropped.load(Relaxed) == 1
    })
    .await;
    eventually("connected again", || {
        handles.session.connected.load(Relaxed)
    })
    .await;
    r.publish(
        TOPIC,
        r#"{"id":"after-big","point":"dim_level","value":30}"#,
        false,
    )
    .await;
    let res = result_for(&mut r.rec, "lamp-017", Some("after-big")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(handles.counters.mqtt_connection_lost.load(Relaxed), 1);
    assert_eq!(handles.counters.command_dropped.load(Relaxed), 1);
    r.stop().await;
}
