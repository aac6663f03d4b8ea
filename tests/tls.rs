//! `mqtts://` end to end against mosquitto with a private CA (made here with openssl):
//! server verification through `ca_file`, mutual TLS with `cert_file`/`key_file`, and a
//! clear failure (no connection, events kept) when the CA does not match.

use crate::common::*;
use std::path::Path;

fn setup_tls(tls_port: u16, dir: &Path, ca: &str, client: bool) -> Setup {
    let setup = Setup::new(tls_port, "");
    let mut cfg = std::fs::read_to_string(&setup.path).unwrap();
    cfg = cfg.replace(
        &format!("url = \"mqtt://127.0.0.1:{tls_port}\""),
        &format!(
            "url = \"mqtts://localhost:{tls_port}\"\nca_file = \"{}/{ca}\"",
            dir.display()
        ),
    );
    if client {
        cfg = cfg.replace(
            "reconnect_min_ms",
            &format!(
                "cert_file = \"{d}/client.pem\"\nkey_file = \"{d}/client.key\"\nreconnect_min_ms",
                d = dir.display()
            ),
        );
    }
    std::fs::write(&setup.path, cfg).unwrap();
    setup
}

/// Runs the gateway against the TLS listener and waits for its online status.
async fn publishes_online_over_tls(require_certificate: bool, client_cert: bool) {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = tls_broker(pki.path(), require_certificate).await;
    let mut rec = Recorder::start(broker.plain, "polegate/#").await;
    let setup = setup_tls(broker.tls, pki.path(), "ca.pem", client_cert);
    let daemon = Daemon::start(&setup).await;
    let s = rec
        .wait_for("status over TLS", |m| m.topic.ends_with("/status"))
        .await;
    assert_eq!(s.json["state"], "online");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_publishes_over_tls_verified_with_its_ca_file() {
    publishes_online_over_tls(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    // The broker requires a client certificate: without ours it would refuse.
    publishes_online_over_tls(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused_and_nothing_is_published() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = tls_broker(pki.path(), false).await;
    let setup = setup_tls(broker.tls, pki.path(), "other.pem", false);
    let daemon = Daemon::start(&setup).await;
    eventually("connection attempts fail", || {
        daemon
            .handles
            .counters
            .mqtt_connection_lost
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
    assert!(
        !daemon
            .handles
            .session
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    daemon.stop().await;
}
