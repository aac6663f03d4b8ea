//! Serial line-protocol equipment end to end over pseudo-terminal pairs (parity none):
//! the simulated PA-100 amplifier decoded through its Rhai profile into MQTT telemetry,
//! an unsolicited alarm, a command round trip with read-back, noise and overlong frames,
//! scripts that loop forever or return garbage, a device that never answers, and the
//! shared bus scheduler's backoff: a dead device on a line costs a live one no poll rate.

use crate::common::*;
use polegate::demo::pa::PaSim;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn bus(id: &str, sim: &PaSim) -> String {
    format!(
        "[[bus]]\nid = \"{id}\"\nkind = \"serial\"\nport = \"{}\"\nbaud = 9600\nparity = \"none\"\ntimeout_ms = 300\n",
        sim.path.display()
    )
}

fn device(id: &str, profile: &str, bus: &str, address: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nprofile = \"{profile}\"\npoll_ms = 200\n\
         serial = {{ bus = \"{bus}\", address = \"{address}\" }}\n"
    )
}

/// One amplifier at `address` alone on line `pa-line`, as device `pa-{address}`: its
/// simulator's cancel token, the simulator and the configuration naming it.
fn amplifier(address: &str) -> (CancellationToken, PaSim, String) {
    let cancel = CancellationToken::new();
    let sim = PaSim::spawn(address, cancel.clone()).unwrap();
    let config = bus("pa-line", &sim)
        + &*device(
            &format!("pa-{address}"),
            "generic-pa-serial",
            "pa-line",
            address,
        );
    (cancel, sim, config)
}

fn pa_profile_with_script(name: &str, script: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"pa_speaker\"\nprotocol = \"serial\"\n\
         [serial]\ndelimiter = \"\\r\\n\"\npoll = [\"@{{address}}?\\r\\n\"]\nscript = \"{script}\"\n\
         [[point]]\nname = \"volume\"\nunit = \"%\"\ntype = \"u16\"\n\
         [[point]]\nname = \"temperature\"\nunit = \"°C\"\ntype = \"f32\"\n\
         [[point]]\nname = \"muted\"\ntype = \"bool\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pa_amplifier_is_polled_decoded_and_its_unsolicited_alarm_is_published() {
    let (cancel, sim, config) = amplifier("01");
    let mut r = Rig::start(cancel, sim, &config, &[]).await;

    let state = r
        .rec
        .wait_for("birth", |m| m.topic == "polegate/cab-test/pa-01/state")
        .await;
    assert_eq!(state.json["state"], "online");
    assert_eq!(state.json["kind"], "pa_speaker");
    let t = r
        .rec
        .wait_for("telemetry", |m| {
            m.topic == "polegate/cab-test/pa-01/telemetry"
        })
        .await;
    assert_eq!(
        t.json["points"],
        json!({"volume": 40, "muted": false, "playing": false, "amp_ok": true,
               "line_fault": false, "temperature": 31.5})
    );

    // The amplifier pushes an alarm on its own, between two polls.
    r.sim.push_line("!01 LINE=FAULT").await;
    let alarm = r
        .rec
        .wait_for("alarm", |m| {
            m.topic.ends_with("/pa-01/telemetry") && m.json["points"]["line_fault"] == true
        })
        .await;
    assert_eq!(alarm.json["points"], json!({"line_fault": true}));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_encoded_acknowledged_and_read_back() {
    let (cancel, sim, config) = amplifier("07");
    let mut r = Rig::start(cancel, sim, &config, &[]).await;
    r.rec
        .wait_for("telemetry", |m| m.topic.ends_with("/pa-07/telemetry"))
        .await;

    let (client, mut el) =
        AsyncClient::new(MqttOptions::new("ctl", "127.0.0.1", r.broker.port), 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let cmd = |id: &str, points: serde_json::Value| {
        json!({"id": id, "points": points}).to_string().into_bytes()
    };
    let topic = "polegate/cab-test/pa-07/cmd";
    client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            cmd("c1", json!({"volume": 55, "muted": true})),
        )
        .await
        .unwrap();
    let res = r
        .rec
        .wait_for("result c1", |m| {
            m.topic.ends_with("/pa-07/cmd/result") && m.json["id"] == "c1"
        })
        .await;
    assert_eq!(res.json["ok"], true, "{}", res.json);
    assert_eq!(res.json["points"], json!({"volume": 55, "muted": true}));
    {
        let s = r.sim.state.lock().unwrap();
        assert_eq!(s.volume, 55);
        assert!(
            s.received.iter().any(|l| l == "@07V055"),
            "{:?}",
            s.received
        );
        assert!(s.received.iter().any(|l| l == "@07M1"));
    }
    // A write-only point: the written value stands in the result.
    client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            cmd("c2", json!({"play": 7})),
        )
        .await
        .unwrap();
    let res = r
        .rec
        .wait_for("result c2", |m| {
            m.topic.ends_with("/pa-07/cmd/result") && m.json["id"] == "c2"
        })
        .await;
    assert_eq!(res.json["ok"], true, "{}", res.json);
    assert_eq!(res.json["points"], json!({"play": 7}));
    assert!(r.sim.state.lock().unwrap().playing);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_and_overlong_frames_are_dropped_and_decoding_resumes() {
    let (cancel, sim, config) = amplifier("01");
    let mut r = Rig::start(cancel, sim, &config, &[]).await;
    r.rec
        .wait_for("telemetry", |m| m.topic.ends_with("/pa-01/telemetry"))
        .await;
    // Binary noise, then a 1000-byte line (max_frame is 128), then a real alarm.
    let _ = r.sim.inject.send(vec![0x00, 0xFF, 0x13, 0x80, 0x7F]).await;
    let _ = r.sim.inject.send(vec![b'Z'; 1000]).await;
    let _ = r.sim.inject.send(b"\r\n".to_vec()).await;
    r.sim.push_line("!01 AMP=FAIL").await;
    r.rec
        .wait_for("alarm after noise", |m| {
            m.topic.ends_with("/pa-01/telemetry") && m.json["points"]["amp_ok"] == false
        })
        .await;
    let counters = r.daemon().handles.counters.clone();
    eventually("overlong frame counted", || {
        counters.serial_frame_error.load(Relaxed) >= 1
    })
    .await;
    // Polling goes on.
    r.sim.state.lock().unwrap().volume = 12;
    r.rec
        .wait_for("telemetry after noise", |m| {
            m.topic.ends_with("/pa-01/telemetry") && m.json["points"]["volume"] == 12
        })
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_script_and_a_garbage_script_are_contained_and_other_buses_keep_going() {
    let cancel = CancellationToken::new();
    let good = PaSim::spawn("01", cancel.clone()).unwrap();
    let looping = PaSim::spawn("01", cancel.clone()).unwrap();
    let garbage = PaSim::spawn("01", cancel.clone()).unwrap();
    let config = [
        bus("good", &good),
        bus("loop", &looping),
        bus("garbage", &garbage),
        device("pa-good", "generic-pa-serial", "good", "01"),
        device("pa-loop", "test-pa-loop", "loop", "01"),
        device("pa-garbage", "test-pa-garbage", "garbage", "01"),
    ]
    .concat();
    let mut r = Rig::start(
        cancel,
        (good, looping, garbage),
        &config,
        &[
            (
                "loop.toml",
                &pa_profile_with_script("test-pa-loop", "loop.rhai"),
            ),
            (
                "loop.rhai",
                "fn decode(frame) {\n  let n = 0;\n  loop { n += 1; }\n}\n",
            ),
            (
                "garbage.toml",
                &pa_profile_with_script("test-pa-garbage", "garbage.rhai"),
            ),
            (
                "garbage.rhai",
                "fn decode(frame) {\n  #{ volume: [1, 2], muted: \"yes\", x_nope: 1, temperature: 20.5 }\n}\n",
            ),
        ],
    )
    .await;

    let off = r
        .rec
        .wait_for("looping device offline", |m| {
            m.topic.ends_with("/pa-loop/state") && m.json["state"] == "offline"
        })
        .await;
    let reason = off.json["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("loop.rhai:1:"), "{reason}");
    // The operation limit, or the wall-time deadline on a loaded machine / debug build.
    assert!(
        reason.contains("operations") || reason.contains("stopped after 50 ms"),
        "{reason}"
    );
    // Garbage values are dropped, the valid one is published.
    let t = r
        .rec
        .wait_for("garbage telemetry", |m| {
            m.topic.ends_with("/pa-garbage/telemetry")
        })
        .await;
    assert_eq!(t.json["points"], json!({"temperature": 20.5}));
    // The good amplifier is unaffected and keeps reporting.
    r.sim.0.state.lock().unwrap().volume = 77;
    r.rec
        .wait_for("good telemetry", |m| {
            m.topic.ends_with("/pa-good/telemetry") && m.json["points"]["volume"] == 77
        })
        .await;
    let c = &r.daemon().handles.counters;
    assert!(c.script_error.load(Relaxed) >= 3);
    assert!(c.decode_error.load(Relaxed) >= 3);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_answers_goes_offline_and_commands_to_it_fail() {
    let (cancel, sim, config) = amplifier("01");
    sim.state.lock().unwrap().silent = true;
    let mut r = Rig::start(cancel, sim, &config, &[]).await;
    let off = r
        .rec
        .wait_for("offline", |m| {
            m.topic.ends_with("/pa-01/state") && m.json["state"] == "offline"
        })
        .await;
    assert!(r.started.elapsed() < Duration::from_secs(5));
    let reason = off.json["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no reply to @01?"), "{reason}");
    assert!(r.daemon().handles.counters.serial_timeout.load(Relaxed) >= 3);
    // It comes back when it answers again.
    r.sim.state.lock().unwrap().silent = false;
    r.rec
        .wait_for("online again", |m| {
            m.topic.ends_with("/pa-01/state") && m.json["state"] == "online"
        })
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_is_probed_at_the_backed_off_rate_while_a_live_one_on_the_line_keeps_its_poll_rate()
 {
    // The simulator answers address 01 only: 02 on the same line never replies.
    let (cancel, sim, config) = amplifier("01");
    let config = config + &*device("pa-02", "generic-pa-serial", "pa-line", "02");
    let mut r = Rig::start(cancel, sim, &config, &[]).await;
    r.rec
        .wait_for("dead device offline", |m| {
            m.topic.ends_with("/pa-02/state") && m.json["state"] == "offline"
        })
        .await;

    // From now on the dead device is backed off. Each probe of it burns a 300 ms
    // timeout; the live one is polled every 200 ms.
    let live_polls = || {
        let s = r.sim.state.lock().unwrap();
        s.received.iter().filter(|l| *l == "@01?").count()
    };
    let counters = r.daemon().handles.counters.clone();
    let dead_probes = || counters.serial_timeout.load(Relaxed);
    let (live0, dead0) = (live_polls(), dead_probes());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (live, dead) = (live_polls() - live0, dead_probes() - dead0);

    // At its poll rate the dead device would take ~12 probes (3.6 s of line time) in
    // 6 s; backed off to <= 10 % of the line it gets at most one probe every 3 s.
    assert!(
        (1..=3).contains(&dead),
        "dead device probed {dead} times in 6 s"
    );
    // The live device keeps nearly all of its 30 slots (a probe may push one aside).
    assert!(live >= 22, "live device polled {live} times in 6 s");
    r.rec.drain();
    assert!(
        !r.rec
            .seen
            .iter()
            .any(|m| m.topic.ends_with("/pa-01/state") && m.json["state"] == "offline"),
        "the live device went offline"
    );
    r.stop().await;
}
