//! SNMP agents for the tests: `snmpsim` (PyPI, an agent nobody here wrote) serving
//! recorded data (`.snmprec`, with the `writecache` and `error` variations for writable
//! and refusing objects), a silent UDP socket, and a raw UDP responder sending hostile
//! datagrams. The interpreter is the one of the OCPP peer (`POLEGATE_TEST_PYTHON`).

use super::WAIT;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// v3 user of the simulated agents: SHA-256 authentication, AES-128 privacy.
pub const V3_USER: &str = "tech";
pub const V3_AUTH: &str = "authpass123";
pub const V3_PRIV: &str = "privpass123";
/// The community (v2c) and context (v3) the recorded data answers to.
pub const COMMUNITY: &str = "public";

/// A running snmpsim agent on 127.0.0.1:`port`.
pub struct SnmpSim {
    pub port: u16,
    child: Child,
    /// Every request the agent logged: (when, the line).
    log: tokio::sync::mpsc::UnboundedReceiver<(tokio::time::Instant, String)>,
    pub lines: Vec<(tokio::time::Instant, String)>,
    _dir: tempfile::TempDir,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

impl SnmpSim {
    /// Serves `records` (`.snmprec` lines, sorted by OID) as community/context `public`,
    /// with the v3 user [`V3_USER`].
    pub async fn start(records: &str) -> SnmpSim {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::write(data.join(format!("{COMMUNITY}.snmprec")), records).expect("records");
        // As root, snmpsim drops to nobody: it must read the data and write its index.
        for p in [dir.path().to_path_buf(), data.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let port = free_udp_port();
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let mut cmd = Command::new(super::python());
        // Modules snmpsim imports lazily are imported before it drops privileges (the
        // interpreter may live where nobody cannot read).
        cmd.arg("-c").arg(
            "import sys, dbm, dbm.dumb, encodings.latin_1, encodings.ascii, encodings.idna; \
             from snmpsim.commands.responder import main; sys.argv[0] = 'snmpsim'; sys.exit(main())",
        );
        cmd.arg(format!("--data-dir={}", data.display()))
            .arg(format!(
                "--cache-dir={}",
                dir.path().join("cache").display()
            ))
            .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
            .arg(format!("--v3-user={V3_USER}"))
            .arg(format!("--v3-auth-key={V3_AUTH}"))
            .arg("--v3-auth-proto=SHA256")
            .arg(format!("--v3-priv-key={V3_PRIV}"))
            .arg("--v3-priv-proto=AES")
            .arg("--logging-method=stdout")
            .arg("--log-level=info");
        if root {
            cmd.args(["--process-user=nobody", "--process-group=nogroup"]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start snmpsim");
        let (tx, mut log) = tokio::sync::mpsc::unbounded_channel();
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let _ = tx.send((tokio::time::Instant::now(), l));
                }
            });
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, log.recv()).await {
                Ok(Some((_, l))) if l.contains("Listening at UDP/IPv4 endpoint") => break,
                Ok(Some(l)) => seen.push(l.1),
                _ => panic!(
                    "snmpsim did not start (needs snmpsim 1.2 with pysmi and cryptography: tests/requirements.txt):\n{}",
                    seen.join("\n")
                ),
            }
        }
        SnmpSim {
            port,
            child,
            log,
            lines: Vec::new(),
            _dir: dir,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The agent's log lines so far.
    pub fn drain(&mut self) -> &[(tokio::time::Instant, String)] {
        while let Ok(l) = self.log.try_recv() {
            self.lines.push(l);
        }
        &self.lines
    }

    /// The requests the agent received so far (`Request var-binds: ...` lines).
    pub fn requests(&mut self) -> Vec<(tokio::time::Instant, String)> {
        self.drain()
            .iter()
            .filter(|(_, l)| l.contains("Request var-binds"))
            .cloned()
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A file holding `secret` in `dir` (community, v3 passphrases).
pub fn secret_file(dir: &std::path::Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, secret).expect("secret file");
    p
}
