//! Every LoRa command ends with exactly one final result (SPEC §8 "LoRa commands"), with
//! a real packet forwarder on 127.0.0.1 (PUSH_DATA, PULL_DATA, PULL_RESP, TX_ACK), real
//! frames of the vectors' ABP lamp and the Semtech UDP task on a real queue: `sent` on the
//! TX_ACK, `failed` with the gateway's error, without any PULL_DATA, without a TX_ACK in
//! time or for a TX_ACK from another address; `expired`; and across a restart, for a
//! command still queued, one handed to the gateway just before, and one that expired
//! while the daemon was down. (Both receive windows missed needs a late clock: see
//! `lora_core.rs`.)

use crate::common::*;
use polegate::model::Value as V;
use polegate::model::now_ms;
use std::sync::atomic::Ordering::Relaxed;

const LONG: u64 = 60_000;

async fn rig(dir: &std::path::Path, txack_timeout_ms: u64) -> LoraRig {
    LoraRig::start(dir, 0, txack_timeout_ms, None).await
}

/// The lamp's first uplink (FCnt 1) through `f`, read back as a reading.
async fn first_uplink(r: &mut LoraRig, f: &Forwarder) {
    f.uplink(&abp_uplink(1, 80), 1_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_sent_on_the_tx_ack_of_the_address_its_pull_resp_went_to() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let f = Forwarder::start(r.port, GW_A).await;
    first_uplink(&mut r, &f).await;
    let q = r.command("c-1", &[("dim_level", V::Int(40))], None).await;
    assert_eq!(q.error, None, "queued");
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, txpk) = f.downlink().await;
    assert_eq!(txpk.tmst, 2_000 + 1_000_000);
    assert_eq!(abp_downlink_payload(txpk.phy().unwrap(), 0), [10, 1, 40]);
    assert_eq!(r.reading().await, V::Int(80));
    // A TX_ACK from the push socket (another address) is refused and counted.
    f.push
        .send(&polegate::southbound::lora::semtech::tx_ack(
            token, GW_A, None,
        ))
        .await
        .unwrap();
    f.tx_ack(token, None).await;
    let res = r.result().await;
    assert_eq!(
        (res.id.as_deref(), res.ok, res.status.as_deref()),
        (Some("c-1"), true, Some("sent"))
    );
    assert_eq!(res.points.len(), 1);
    assert_eq!(r.counters.lora_gateway_refused.load(Relaxed), 1);
    // A second TX_ACK for the same token changes nothing: the next input is a reading.
    f.tx_ack(token, None).await;
    f.uplink(&abp_uplink(3, 81), 3_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(81));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_ack_error_fails_the_command_with_the_gateways_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let f = Forwarder::start(r.port, GW_A).await;
    first_uplink(&mut r, &f).await;
    r.command("c-2", &[("dim_level", V::Int(10))], None).await;
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, _) = f.downlink().await;
    f.tx_ack(token, Some("TOO_LATE")).await;
    let res = r.result().await;
    assert_eq!((res.ok, res.status.as_deref()), (false, Some("failed")));
    let e = res.error.unwrap();
    assert_eq!(e.code(), "failed");
    let e = e.to_string();
    assert!(
        e.contains("TOO_LATE") && e.contains("aa01020304050607"),
        "{e}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_heard_through_a_gateway_that_never_sent_pull_data_fails_with_that_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let f = Forwarder::silent(r.port, GW_B).await;
    first_uplink(&mut r, &f).await;
    r.command("c-3", &[("dim_level", V::Int(10))], None).await;
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let res = r.result().await;
    assert_eq!((res.ok, res.status.as_deref()), (false, Some("failed")));
    let e = res.error.unwrap();
    assert_eq!(e.code(), "failed");
    let e = e.to_string();
    assert!(e.contains("no gateway to send through"), "{e}");
    assert!(e.contains("bb01020304050607"), "{e}");
    // The uplink itself was still published.
    assert_eq!(r.reading().await, V::Int(80));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_without_a_tx_ack_fails_when_the_timeout_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), 300).await;
    let f = Forwarder::start(r.port, GW_A).await;
    first_uplink(&mut r, &f).await;
    r.command("c-4", &[("dim_level", V::Int(10))], None).await;
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, _) = f.downlink().await;
    assert_eq!(r.reading().await, V::Int(80));
    let res = r.result().await;
    assert_eq!((res.ok, res.status.as_deref()), (false, Some("failed")));
    assert!(res.error.unwrap().to_string().contains("no TX_ACK"));
    // A TX_ACK after the verdict is ignored: exactly one final result.
    f.tx_ack(token, None).await;
    f.uplink(&abp_uplink(3, 82), 3_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(82));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_of_two_points_is_reported_once_after_its_second_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let f = Forwarder::start(r.port, GW_A).await;
    first_uplink(&mut r, &f).await;
    let w = [("dim_level", V::Int(30)), ("on", V::Bool(false))];
    assert_eq!(r.command("c-5", &w, None).await.error, None);
    for (fcnt, fcnt_down, payload) in [(2u32, 0u32, [10u8, 1, 30]), (3, 1, [10, 2, 0])] {
        f.uplink(&abp_uplink(fcnt, 80), fcnt * 1000, -90, 5.0).await;
        let (token, txpk) = f.downlink().await;
        assert_eq!(
            abp_downlink_payload(txpk.phy().unwrap(), fcnt_down),
            payload
        );
        // No result before the reading of this uplink: the first frame's TX_ACK did not end it.
        assert_eq!(r.reading().await, V::Int(80));
        f.tx_ack(token, None).await;
    }
    let res = r.result().await;
    assert_eq!((res.ok, res.status.as_deref()), (true, Some("sent")));
    assert_eq!(res.points.len(), 2);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_before_a_restart_is_sent_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let port = r.port;
    let f = Forwarder::start(port, GW_A).await;
    first_uplink(&mut r, &f).await;
    assert_eq!(
        r.command("c-6", &[("dim_level", V::Int(55))], None)
            .await
            .error,
        None
    );
    r.stop().await;

    let mut r = LoraRig::start(tmp.path(), port, LONG, None).await;
    f.pull_data().await;
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, txpk) = f.downlink().await;
    assert_eq!(abp_downlink_payload(txpk.phy().unwrap(), 0), [10, 1, 55]);
    f.tx_ack(token, None).await;
    let res = r.result().await;
    assert_eq!(
        (res.id.as_deref(), res.status.as_deref()),
        (Some("c-6"), Some("sent"))
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_handed_to_the_gateway_before_a_restart_ends_on_its_late_tx_ack_or_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let port = r.port;
    let f = Forwarder::start(port, GW_A).await;
    first_uplink(&mut r, &f).await;
    r.command("c-7", &[("dim_level", V::Int(20))], None).await;
    f.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, _) = f.downlink().await;
    r.stop().await;

    // The TX_ACK reaches the restarted task (same port), from where the PULL_RESP went.
    let mut r = LoraRig::start(tmp.path(), port, LONG, None).await;
    f.tx_ack(token, None).await;
    let res = r.result().await;
    assert_eq!(
        (res.id.as_deref(), res.status.as_deref()),
        (Some("c-7"), Some("sent"))
    );

    // Another one whose TX_ACK never comes: failed after the restart.
    r.command("c-8", &[("dim_level", V::Int(21))], None).await;
    f.pull_data().await;
    f.uplink(&abp_uplink(3, 80), 3_000, -90, 5.0).await;
    f.downlink().await;
    r.stop().await;
    let mut r = LoraRig::start(tmp.path(), port, 200, None).await;
    let res = r.result().await;
    assert_eq!(
        (res.id.as_deref(), res.ok, res.status.as_deref()),
        (Some("c-8"), false, Some("failed"))
    );
    assert!(res.error.unwrap().to_string().contains("no TX_ACK"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_expires_while_the_daemon_is_down_ends_expired_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rig(tmp.path(), LONG).await;
    let port = r.port;
    let f = Forwarder::start(port, GW_A).await;
    first_uplink(&mut r, &f).await;
    let expires = now_ms() + 300;
    let q = r
        .command("c-9", &[("dim_level", V::Int(20))], Some(expires))
        .await;
    assert_eq!(q.error, None);
    r.stop().await;
    // Down until it has expired (the wall clock is what `expires` means).
    while now_ms() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut r = LoraRig::start(tmp.path(), port, LONG, None).await;
    let res = r.result().await;
    assert_eq!(
        (res.id.as_deref(), res.ok, res.status.as_deref()),
        (Some("c-9"), false, Some("expired"))
    );
    // Nothing is left to send at the next uplink.
    f.pull_data().await;
    f.uplink(&abp_uplink(2, 83), 2_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(83));
    r.stop().await;
}
