//! The independent OCPP peer: the mobilityhouse `ocpp` Python library (schema-validating)
//! driven through `tests/ocpp/*.py` over stdin/stdout JSON lines. The interpreter comes
//! from `POLEGATE_TEST_PYTHON` (set by `tests/run`) or `target/pyenv/bin/python3`; a
//! missing one fails the test with the command that installs it.

use super::WAIT;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub fn python() -> PathBuf {
    python_with(
        "ocpp, websockets",
        "the OCPP test peer needs Python with ocpp 2.1.0 and websockets",
        "ocpp==2.1.0 websockets",
    )
}

/// The tests' Python (`POLEGATE_TEST_PYTHON`, else `target/pyenv`), checked to import
/// `modules`; a missing one fails the test with the command that installs `packages`.
pub fn python_with(modules: &str, why: &str, packages: &str) -> PathBuf {
    let p = std::env::var_os("POLEGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python3")
        });
    let ok = std::process::Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{why} at {}: run the tests with tests/run (it installs tests/requirements.txt, \
         {packages} among them, into target/pyenv), or set POLEGATE_TEST_PYTHON",
        p.display()
    );
    p
}

/// One Python peer process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
    cursor: usize,
}

impl Peer {
    /// `script` in tests/ocpp/ with `args`.
    pub fn start(script: &str, args: &[&str]) -> Peer {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/ocpp")
            .join(script);
        let mut child = Command::new(python())
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python OCPP peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Peer {
            child,
            stdin,
            rx,
            seen: vec![],
            cursor: 0,
        }
    }

    /// A charge point connecting to `url` (`ws://127.0.0.1:P/ocpp`) as `cp`.
    pub fn charger(url: &str, cp: &str, password: Option<&str>, proto: Option<&str>) -> Peer {
        Peer::start(
            "charger.py",
            &[url, cp, password.unwrap_or("-"), proto.unwrap_or("-")],
        )
    }

    pub async fn send(&mut self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("peer stdin");
        self.stdin.flush().await.expect("peer stdin");
    }

    /// The next line (after the last one matched) satisfying `pred`.
    pub async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.seen[self.cursor..].iter().position(&mut pred) {
            self.cursor += i + 1;
            return self.seen[self.cursor - 1].clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("peer: timed out waiting for {what}; seen {:#?}", self.seen)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "peer exited while waiting for {what}; seen {:#?}",
                        self.seen
                    )
                });
            self.seen.push(v.clone());
            if pred(&v) {
                self.cursor = self.seen.len();
                return v;
            }
        }
    }

    pub async fn op(&mut self, op: &str) -> Value {
        self.wait(op, |v| v["op"] == op).await
    }

    /// Sends a call and returns the CS's answer payload (panics on a CALLERROR).
    pub async fn call(&mut self, action: &str, payload: Value) -> Value {
        self.call_with(action, payload, false).await
    }

    pub async fn call_with(&mut self, action: &str, payload: Value, skip: bool) -> Value {
        self.send(json!({"op": "call", "action": action, "payload": payload, "skip": skip}))
            .await;
        let v = self
            .wait(action, |v| {
                v["action"] == action && (v["op"] == "result" || v["op"] == "callerror")
            })
            .await;
        assert_eq!(v["op"], "result", "{action} failed: {v}");
        v["payload"].clone()
    }

    pub async fn close(mut self) {
        self.send(json!({"op": "close"})).await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// A raw WebSocket charger (no OCPP library): `ws://127.0.0.1:port/ocpp/<cp>` offering
/// `ocpp1.6`. For hostile input and load, which no conforming library would produce.
pub async fn ws_charger(
    port: u16,
    cp: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut req = format!("ws://127.0.0.1:{port}/ocpp/{cp}").into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    assert_eq!(resp.headers()["sec-websocket-protocol"], "ocpp1.6");
    Ok(ws)
}
