//! A private PKI made with openssl (CA, server certificate for localhost, client
//! certificate, an unrelated CA) and a mosquitto with a plain and a TLS listener.

use super::{Mosquitto, free_port, wait_listening};
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

/// A self-signed CA: `<stem>.key` and `<stem>.pem` in `dir`, valid two days.
fn self_signed_ca(dir: &Path, stem: &str, subject: &str) {
    let (key, pem) = (format!("{stem}.key"), format!("{stem}.pem"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-days", "2", "-subj", subject,
        ],
    );
}

/// A key and a certificate signed by `ca.pem`: `<stem>.key`, `<stem>.pem`, with the
/// extensions of the file `ext`.
fn signed_by_ca(dir: &Path, stem: &str, subject: &str, ext: &str) {
    let (key, csr, pem) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.pem"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    );
}

/// CA, server certificate for localhost, client certificate; all signed by the CA.
pub fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    self_signed_ca(dir, "ca", "/CN=polegate test CA");
    signed_by_ca(dir, "server", "/CN=localhost", "san.ext");
    signed_by_ca(dir, "client", "/CN=cab-test", "client.ext");
    // An unrelated CA, for the failure case.
    self_signed_ca(dir, "other", "/CN=other CA");
    // mosquitto started as root drops to its own user: let it read the test PKI.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

pub struct TlsBroker {
    /// Plain listener, for the test's recorder.
    pub plain: u16,
    pub tls: u16,
    _broker: Mosquitto,
}

/// mosquitto with a plain listener (for the test's recorder) and a TLS one.
pub async fn tls_broker(dir: &Path, require_certificate: bool) -> TlsBroker {
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
