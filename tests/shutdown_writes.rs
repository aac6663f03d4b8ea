//! A command write still running when the daemon stops is answered (issue 11 item 7):
//! the real binary gets SIGTERM while a Modbus device hangs on the write; the
//! `ok:false` result with error "stopping" goes into the queue before the final flush
//! and is published by the next run.

use crate::common::*;
use polegate::demo::sim::Fault;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_hanging_at_sigterm_is_answered_stopping_through_the_queue() {
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let mut broker = Mosquitto::start().await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-017", sim.addr(), 200));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let child = Process::start(&setup.path, |_| {});
    rec.wait_for("device online", |m| {
        m.topic.ends_with("/state") && m.json["state"] == "online"
    })
    .await;

    sim.set_fault(Fault::SilentWrites);
    publish(
        broker.port,
        "polegate/cab-test/lamp-017/cmd",
        r#"{"id":"hang-1","point":"dim_level","value":40}"#,
        false,
    )
    .await;
    eventually("the write reaches the device", || sim.writes() >= 1).await;
    // The uplink goes too: the result can only survive through the queue.
    broker.stop();
    let t0 = Instant::now();
    assert!(child.stop().success(), "a clean SIGTERM exits 0");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    sim.set_fault(Fault::None);
    let subs = rec.subscriptions();
    broker.restart().await;
    rec.wait_subscribed_after(subs).await;
    let child = Process::start(&setup.path, |_| {});
    let res = rec
        .wait_for("the stopped write's result", |m| {
            m.topic == "polegate/cab-test/lamp-017/cmd/result" && m.json["id"] == "hang-1"
        })
        .await;
    assert_eq!(res.json["ok"], false, "{}", res.json);
    assert_eq!(res.json["error"], "stopping", "{}", res.json);
    assert_eq!(res.json["code"], "stopping", "{}", res.json);
    assert_eq!(res.json["device"], "lamp-017");
    assert_eq!(res.json["historical"], true, "it waited in the queue");
    assert!(child.stop().success());
    cancel.cancel();
}
