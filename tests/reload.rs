//! Reload (SPEC §6): SIGHUP or a file change re-reads everything; an invalid new config
//! is refused and the old one keeps running; a valid one is applied as a diff — added
//! devices start with a birth, removed ones get an offline state with reason "removed",
//! untouched ones keep polling without a new birth, and the MQTT session stays open; a
//! removed link's poll timings leave `/metrics`.

use crate::common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn device(id: &str, addr: SocketAddr) -> String {
    lamp_device(id, addr, 100)
}

fn rewrite(setup: &Setup, port: u16, devices: &str) {
    let fresh = Setup::new(port, devices);
    let text = std::fs::read_to_string(&fresh.path).unwrap();
    std::fs::write(&setup.path, text).unwrap();
}

fn births(rec: &Recorder, device: &str) -> usize {
    rec.seen
        .iter()
        .filter(|m| {
            m.topic == format!("polegate/cab-test/{device}/state") && m.json["state"] == "online"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reload_applies_the_diff_and_keeps_untouched_devices_and_the_session() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let (a, b, c) = (
        static_lamp(&cancel).await,
        static_lamp(&cancel).await,
        static_lamp(&cancel).await,
    );
    let setup = Setup::new(
        broker.port,
        &format!(
            "{}{}",
            device("lamp-a", a.addr()),
            device("lamp-b", b.addr())
        ),
    );
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let (daemon, reload) = Daemon::start_reloadable(&setup, false).await;
    rec.wait_for("a online", |m| m.topic.ends_with("lamp-a/state"))
        .await;
    rec.wait_for("b online", |m| m.topic.ends_with("lamp-b/state"))
        .await;

    // An invalid config is refused; the running one stays.
    std::fs::write(&setup.path, "[gateway]\nid = \"bad id!\"\n").unwrap();
    reload.send(()).await.unwrap();
    a.registers().lock().unwrap().holding[0] = 11;
    rec.wait_for("a still polled", |m| {
        m.topic.ends_with("lamp-a/telemetry") && m.json["points"]["dim_level"] == 11
    })
    .await;
    eventually("reload failure counted", || {
        daemon
            .handles
            .counters
            .reload_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;

    // Valid: b removed, c added, a untouched.
    let a_requests = a.requests();
    rewrite(
        &setup,
        broker.port,
        &format!(
            "{}{}",
            device("lamp-a", a.addr()),
            device("lamp-c", c.addr())
        ),
    );
    reload.send(()).await.unwrap();
    let removed = rec
        .wait_for("b removed", |m| {
            m.topic.ends_with("lamp-b/state") && m.json["state"] == "offline"
        })
        .await;
    assert_eq!(removed.json["reason"], "removed");
    rec.wait_for("c born", |m| {
        m.topic.ends_with("lamp-c/state") && m.json["state"] == "online"
    })
    .await;
    a.registers().lock().unwrap().holding[0] = 22;
    rec.wait_for("a still polled after reload", |m| {
        m.topic.ends_with("lamp-a/telemetry") && m.json["points"]["dim_level"] == 22
    })
    .await;
    assert!(a.requests() > a_requests);
    assert_eq!(births(&rec, "lamp-a"), 1, "untouched device was restarted");
    let onlines = rec
        .seen
        .iter()
        .filter(|m| m.topic.ends_with("/status") && m.json["state"] == "online")
        .count();
    assert_eq!(
        onlines, 1,
        "MQTT session was reopened although [mqtt] did not change"
    );

    // A changed device restarts and is born again.
    let changed = device("lamp-a", a.addr()).replace("poll_ms = 100", "poll_ms = 150");
    rewrite(
        &setup,
        broker.port,
        &format!("{}{}", changed, device("lamp-c", c.addr())),
    );
    reload.send(()).await.unwrap();
    rec.wait_until("a born again", |s| {
        s.iter()
            .filter(|m| m.topic.ends_with("lamp-a/state") && m.json["state"] == "online")
            .count()
            == 2
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_removed_by_a_reload_takes_its_poll_timings_out_of_the_metrics() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let (a, b) = (static_lamp(&cancel).await, static_lamp(&cancel).await);
    let setup = Setup::new(
        broker.port,
        &format!(
            "{}{}",
            device("lamp-a", a.addr()),
            device("lamp-b", b.addr())
        ),
    );
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let (daemon, reload) = Daemon::start_reloadable(&setup, false).await;
    rec.wait_for("b online", |m| m.topic.ends_with("lamp-b/state"))
        .await;
    let timings = &daemon.handles.counters.timings.poll;
    let (a_link, b_link) = (
        vec![("link", a.addr().to_string())],
        vec![("link", b.addr().to_string())],
    );
    eventually("both links timed", || {
        timings.get(&a_link).is_some() && timings.get(&b_link).is_some()
    })
    .await;

    rewrite(&setup, broker.port, &device("lamp-a", a.addr()));
    reload.send(()).await.unwrap();
    rec.wait_for("b removed", |m| {
        m.topic.ends_with("lamp-b/state") && m.json["state"] == "offline"
    })
    .await;
    eventually("b's timings forgotten", || timings.get(&b_link).is_none()).await;
    assert!(
        timings.get(&a_link).is_some(),
        "the kept link keeps its series"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_picked_up_without_a_signal() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let (a, b) = (static_lamp(&cancel).await, static_lamp(&cancel).await);
    let setup = Setup::new(broker.port, &device("lamp-a", a.addr()));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let (daemon, _reload) = Daemon::start_reloadable(&setup, true).await;
    rec.wait_for("a online", |m| m.topic.ends_with("lamp-a/state"))
        .await;
    // Editors replace files by rename: do the same.
    let fresh = Setup::new(
        broker.port,
        &format!(
            "{}{}",
            device("lamp-a", a.addr()),
            device("lamp-b", b.addr())
        ),
    );
    let tmp = setup.path.with_extension("toml.tmp");
    std::fs::copy(&fresh.path, &tmp).unwrap();
    std::fs::rename(&tmp, &setup.path).unwrap();
    rec.wait_for("b born after the file changed", |m| {
        m.topic.ends_with("lamp-b/state") && m.json["state"] == "online"
    })
    .await;
    daemon.stop().await;
}

/// The real binary: a file replaced as an editor saves it (write a temporary file,
/// rename it over: a burst of create, modify and move events) makes one reload, and the
/// reload reading the files does not trigger another (a watcher that reacted to reads
/// would reload forever).
#[test]
fn an_editors_save_makes_one_reload_and_the_reload_does_not_trigger_itself() {
    let setup = Setup::new(1, "");
    let daemon = Process::start_logged(Process::own_binary(), &setup, |_| {});
    let log = || setup.log();
    let deadline = std::time::Instant::now() + WAIT;
    while !log().contains("polegate running") {
        assert!(
            std::time::Instant::now() < deadline,
            "not running\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&setup.path).unwrap();
    let tmp = setup.path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, &setup.path).unwrap();
    while !log().contains("configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "no reload\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Long enough for a self-triggered reload to have come (debounce 500 ms + reload).
    std::thread::sleep(polegate::app::filewatch::DEBOUNCE * 4);
    let status = daemon.stop();
    let log = log();
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("configuration reloaded").count(),
        1,
        "one reload for the save\n{log}"
    );
}
