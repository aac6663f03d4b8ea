//! Every period, timeout, interval and rate a configuration sets, at its extremes (issue
//! 12 item 9): 0 and `i64::MAX` (the largest TOML integer) are either refused by
//! validation with the key and what is allowed, or accepted; and the real binary run with
//! every such key at its lowest and at its highest accepted value polls, publishes and
//! stops cleanly, without a panic or an overflow.

use crate::common::*;
use polegate::model::limits::{MAX_PERIOD_MS, MAX_PERIOD_S};
use std::path::Path;

/// The keys under test: where each goes and its name in error messages.
const KEYS: &[(&str, &str)] = &[
    ("stats", "interval_s"),
    ("buffer", "flush_every_ms"),
    ("mqtt", "keep_alive_s"),
    ("mqtt", "max_inflight"),
    ("mqtt", "replay_rate"),
    ("mqtt", "reconnect_min_ms"),
    ("mqtt", "reconnect_max_ms"),
    ("mqtt", "connect_delay_max_ms"),
    ("device", "poll_ms"),
    ("device", "heartbeat_s"),
    ("lora_device", "offline_after_s"),
    ("bus", "timeout_ms"),
    ("ocpp", "heartbeat_s"),
];

/// A configuration whose every key under test is `value(section, key)` (None: default).
fn config(dir: &Path, modbus: &str, value: impl Fn(&str, &str) -> Option<String>) -> String {
    let lines = |section: &str| -> String {
        KEYS.iter()
            .filter(|(s, _)| *s == section)
            .filter_map(|(s, k)| value(s, k).map(|v| format!("{k} = {v}\n")))
            .collect()
    };
    let inline = |section: &str| -> String {
        KEYS.iter()
            .filter(|(s, _)| *s == section)
            .filter_map(|(s, k)| value(s, k).map(|v| format!(", {k} = {v}")))
            .collect()
    };
    let port = std::fs::read_to_string(dir.join("broker-port")).unwrap_or_else(|_| "1883".into());
    format!(
        "[gateway]\nid = \"cab-test\"\nstate_dir = \"state\"\nplugins_dirs = [{plugins:?}]\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n{mqtt}\n[stats]\n{stats}\n[buffer]\n{buffer}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [lora]\nlisten = \"127.0.0.1:0\"\n\n\
         [ocpp]\nlisten = \"127.0.0.1:0\"\n{ocpp}\n\
         [[bus]]\nid = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/null\"\n{bus}\n\
         [[device]]\nid = \"lamp-017\"\nprofile = \"generic-lamp-modbus\"\n{device}\
         modbus = {{ address = \"{modbus}\", unit = 1 }}\n\n\
         [[device]]\nid = \"lamp-abp\"\nprofile = \"generic-lamp-lora\"\n\
         lora = {{ dev_eui = \"0004a30b001c0531\", activation = \"abp\", dev_addr = \"26011bda\", \
         nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\"{lora} }}\n",
        plugins = plugins_dir().display().to_string(),
        mqtt = lines("mqtt"),
        stats = lines("stats"),
        buffer = lines("buffer"),
        ocpp = lines("ocpp"),
        bus = lines("bus"),
        device = lines("device"),
        lora = inline("lora_device"),
    )
}

fn load(
    dir: &Path,
    value: impl Fn(&str, &str) -> Option<String>,
) -> Result<polegate::config::Config, Vec<(String, String)>> {
    let p = dir.join("polegate.toml");
    std::fs::write(&p, config(dir, "127.0.0.1:1", value)).unwrap();
    polegate::config::load_with_env(&p, &[])
        .map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
}

/// The key path an error about `section.key` carries.
fn path(section: &str, key: &str) -> String {
    match section {
        "device" => format!("device[0].{key}"),
        "lora_device" => format!("device[1].lora.{key}"),
        "bus" => format!("bus[0].{key}"),
        s => format!("{s}.{key}"),
    }
}

#[test]
fn zero_and_the_largest_integer_are_each_accepted_or_refused_with_the_key_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), |_, _| None).expect("the defaults are valid");
    for &(section, key) in KEYS {
        for v in [0, i64::MAX] {
            let one = |s: &str, k: &str| (s == section && k == key).then(|| v.to_string());
            match load(dir.path(), one) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.len(), 1, "{section}.{key} = {v}: one problem, got {e:?}");
                    assert_eq!(e[0].0, path(section, key), "{e:?}");
                    let m = &e[0].1;
                    assert!(
                        m.contains(&v.to_string())
                            && (m.contains("at least")
                                || m.contains("at most")
                                || m.contains("out of range")),
                        "{section}.{key} = {v}: the message says the value and the limit: {m}"
                    );
                }
            }
        }
        // A period above a year is refused, saying so in its unit.
        let long =
            |s: &str, k: &str| (s == section && k == key).then(|| (MAX_PERIOD_MS + 1).to_string());
        if key.ends_with("_ms") || key.ends_with("_s") {
            let e = load(dir.path(), long).expect_err(key);
            assert_eq!(e[0].0, path(section, key));
        }
    }
}

/// The lowest and the highest value each key accepts (found through validation itself).
fn extreme(dir: &Path, section: &str, key: &str, high: bool) -> String {
    let candidates: Vec<u64> = if high {
        // Descending: the first accepted is the highest.
        vec![
            i64::MAX as u64,
            MAX_PERIOD_MS,
            u32::MAX as u64,
            MAX_PERIOD_S,
            86_400,
            65_535,
        ]
    } else {
        vec![0, 1, 10]
    };
    // reconnect_min_ms may not exceed reconnect_max_ms: those two move together.
    let paired = |k: &str| k.starts_with("reconnect_") && key.starts_with("reconnect_");
    for c in candidates {
        let one =
            |s: &str, k: &str| (s == section && (k == key || paired(k))).then(|| c.to_string());
        if load(dir, one).is_ok() {
            return c.to_string();
        }
    }
    panic!("{section}.{key}: no accepted value among the candidates");
}

async fn runs_and_stops_cleanly(high: bool) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let broker = Mosquitto::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broker-port"), broker.port.to_string()).unwrap();
    let values: Vec<((&str, &str), String)> = KEYS
        .iter()
        .map(|&(s, k)| ((s, k), extreme(dir.path(), s, k, high)))
        .collect();
    let text = config(dir.path(), &sim.addr().to_string(), |s, k| {
        values
            .iter()
            .find(|((vs, vk), _)| *vs == s && *vk == k)
            .map(|(_, v)| v.clone())
    });
    let path = dir.path().join("polegate.toml");
    std::fs::write(&path, &text).unwrap();
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let daemon = Process::start(&path, |c| {
        c.stderr(stderr).env("RUST_LOG", "warn");
    });
    // Polled (a year between polls still polls once at start) and published.
    rec.wait_for("the lamp's telemetry", |m| {
        m.topic == "polegate/cab-test/lamp-017/telemetry"
    })
    .await;
    rec.wait_for("the gateway online", |m| {
        m.topic.ends_with("/status") && m.json["state"] == "online"
    })
    .await;
    let status = daemon.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("panicked"), "{text}\n{log}");
    assert_eq!(status.code(), Some(0), "{text}\n{log}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_with_every_period_at_its_lowest_accepted_value() {
    runs_and_stops_cleanly(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_with_every_period_at_its_highest_accepted_value() {
    runs_and_stops_cleanly(true).await;
}
