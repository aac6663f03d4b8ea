//! `mqtts://` end to end against mosquitto with a private CA (made here with openssl):
//! server verification through `ca_file`, mutual TLS with `cert_file`/`key_file`, and a
//! clear failure (no connection, events kept) when the CA does not match.

use crate::common::*;
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CA, server certificate for localhost, client certificate; all signed by the CA.
fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=polegate test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=cab-test",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    // An unrelated CA, for the failure case.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
        ],
    );
    // mosquitto started as root drops to its own user: let it read the test PKI.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

struct TlsBroker {
    /// Plain listener, for the test's recorder.
    plain: u16,
    tls: u16,
    _broker: Mosquitto,
}

/// mosquitto with a plain listener (for the test's recorder) and a TLS one.
async fn tls_broker(dir: &Path, require_certificate: bool) -> TlsBroker {
    let (plain, tls) = (free_port(), free_port());
    let broker = Mosquitto::start_with(
        plain,
        &format!(
            "listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate {require_certificate}\n",
            d = dir.display()
        ),
    )
    .await;
    wait_listening(tls).await;
    TlsBroker {
        plain,
        tls,
        _broker: broker,
    }
}

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
