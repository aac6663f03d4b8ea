//! An accepted uplink's frame counter is durable before the uplink is published (SPEC §7
//! "a replayed frame counter", issue 11 item 6): the real binary in a child process takes
//! an uplink, publishes it and is killed with SIGKILL right after; the next run rejects
//! the same frame as a replay and takes the next one. The buffer's own flush timer is set
//! to a minute and the frame comes after a few others (the first events of a run reserve
//! a seq block, which flushes), so only the LoRa task's flush makes the counter durable:
//! without it this test fails (not every run: sled sometimes writes on its own).

use crate::common::*;
use std::sync::atomic::Ordering::Relaxed;

fn config(lora_port: u16) -> String {
    format!(
        "[buffer]\nflush_every_ms = 60000\n\n\
         [lora]\nlisten = \"127.0.0.1:{lora_port}\"\nnet_id = \"000013\"\n\n\
         [[device]]\nid = \"lamp-abp\"\nprofile = \"generic-lamp-lora\"\n\
         lora = {{ dev_eui = \"0004a30b001c0531\", activation = \"abp\", dev_addr = \"26011bda\", \
         nwk_s_key = \"{ABP_NWK}\", app_s_key = \"{ABP_APP}\" }}\n"
    )
}

fn dim_telemetry(m: &Msg, dim: i64) -> bool {
    m.topic == "polegate/cab-test/lamp-abp/telemetry" && m.json["points"]["dim_level"] == dim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_published_just_before_a_kill_9_is_rejected_as_a_replay_after_the_restart() {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::custom(
        "cab-test",
        &format!("url = \"mqtt://127.0.0.1:{}\"\n", broker.port),
        &config(port),
    );
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let child = Process::start(&setup.path, |_| {});
    // The child binds its socket when it is up: retry the first PULL_DATA until it answers.
    let f = Forwarder::silent(port, GW_A).await;
    let mut b = [0u8; 64];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        f.pull
            .send(&polegate::southbound::lora::semtech::pull_data(1, GW_A))
            .await
            .unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_millis(100), f.pull.recv(&mut b));
        if let Ok(Ok(_)) = r.await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon never answered"
        );
    }
    // A few uplinks first: the buffer's own flushes (a new seq block) are behind us.
    for fcnt in 1..=5u32 {
        f.uplink(&abp_uplink(fcnt, 60 + fcnt as u8), fcnt * 1000, -90, 5.0)
            .await;
        rec.wait_for("an uplink published", |m| {
            dim_telemetry(m, 60 + i64::from(fcnt))
        })
        .await;
    }
    let frame = abp_uplink(6, 80);
    f.uplink(&frame, 6_000, -90, 5.0).await;
    rec.wait_for("the uplink published", |m| dim_telemetry(m, 80))
        .await;
    child.kill();
    rec.drain();
    let before = rec.seen.len();

    let daemon = Daemon::start(&setup).await;
    f.pull_data().await;
    f.uplink(&frame, 7_000, -90, 5.0).await;
    f.uplink(&abp_uplink(7, 50), 8_000, -90, 5.0).await;
    rec.wait_for_new("the next frame published", |m| dim_telemetry(m, 50))
        .await;
    assert_eq!(daemon.handles.counters.lora_replay.load(Relaxed), 1);
    rec.drain();
    // The buffer may deliver the old event again (at least once, same seq); a new event
    // of the replayed frame would carry a new seq.
    let old: Vec<&serde_json::Value> = rec.seen[..before]
        .iter()
        .filter(|m| dim_telemetry(m, 80))
        .map(|m| &m.json["seq"])
        .collect();
    assert!(
        rec.seen[before..]
            .iter()
            .filter(|m| dim_telemetry(m, 80))
            .all(|m| old.contains(&&m.json["seq"])),
        "the replayed frame was published again as a new event"
    );
    daemon.stop().await;
}
