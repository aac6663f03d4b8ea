//! The broker side of the harness: mosquitto as a child process, a recorder of what the
//! gateway publishes, a publisher standing in for the control room, and a TCP proxy that
//! cuts the uplink.

use super::{WAIT, free_port, wait_listening};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A mosquitto broker on 127.0.0.1:port, without persistence (a restart loses every
/// session and in-flight message, the worst case for delivery).
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra configuration lines (e.g. a TLS listener).
    extra: String,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        Mosquitto::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_with(port, "").await
    }

    /// Starts on `port` with `extra` configuration lines appended; waits for `port`.
    pub async fn start_with(port: u16, extra: &str) -> Mosquitto {
        let mut m = Mosquitto {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            extra: extra.to_string(),
        };
        m.restart().await;
        m
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 1000000\nlistener {} 127.0.0.1\n{}",
                self.port, self.extra
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        self.child = Some(child);
        wait_listening(self.port).await;
    }

    /// Kills the broker (SIGKILL): connections drop, nothing is persisted.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub json: serde_json::Value,
    pub retain: bool,
}

/// Subscribes to `filter` and records every message.
pub struct Recorder {
    rx: mpsc::UnboundedReceiver<Msg>,
    pub seen: Vec<Msg>,
    task: JoinHandle<()>,
    subs: tokio::sync::watch::Receiver<u64>,
    cursor: usize,
}

impl Recorder {
    pub async fn start(port: u16, filter: &str) -> Recorder {
        let mut opts = MqttOptions::new(format!("rec-{}", fastrand::u32(..)), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let filter = filter.to_string();
        let (sub_tx, mut subs) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let _keep = client.clone();
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        sub_tx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        // Command topics carry test input that may be invalid on purpose;
                        // everything the gateway publishes must be JSON.
                        let json = match serde_json::from_slice(&p.payload) {
                            Ok(j) => j,
                            Err(e) if p.topic.ends_with("/cmd") => {
                                let _ = e;
                                serde_json::Value::String(
                                    String::from_utf8_lossy(&p.payload).into(),
                                )
                            }
                            Err(e) => {
                                panic!("payload on {} is not JSON ({e}): {:?}", p.topic, p.payload)
                            }
                        };
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            json,
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subs.wait_for(|n| *n >= 1))
            .await
            .expect("recorder subscribed in time")
            .expect("recorder alive");
        Recorder {
            rx,
            seen: Vec::new(),
            task,
            subs,
            cursor: 0,
        }
    }

    /// Subscriptions acknowledged so far (one per broker connection).
    pub fn subscriptions(&self) -> u64 {
        *self.subs.borrow()
    }

    /// Waits until the recorder has subscribed more than `n` times (after a broker restart).
    pub async fn wait_subscribed_after(&mut self, n: u64) {
        tokio::time::timeout(WAIT, self.subs.wait_for(|s| *s > n))
            .await
            .expect("recorder resubscribed in time")
            .expect("recorder alive");
    }

    /// Takes every message already received without waiting.
    pub fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
    }

    /// Waits until a message satisfying `pred` arrives; returns it.
    pub async fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; seen: {:#?}",
                        self.seen
                            .iter()
                            .map(|m| (&m.topic, &m.json))
                            .collect::<Vec<_>>()
                    )
                })
                .expect("recorder alive");
            self.seen.push(m.clone());
            if pred(&m) {
                return m;
            }
        }
    }

    /// Like `wait_for`, but only messages not yet looked at count (the next match).
    pub async fn wait_for_new(&mut self, what: &str, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        let start = self.cursor;
        if let Some(i) = self.seen[start..].iter().position(&mut pred) {
            self.cursor = start + i + 1;
            return self.seen[start + i].clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("recorder alive");
            self.seen.push(m.clone());
            if pred(&m) {
                self.cursor = self.seen.len();
                return m;
            }
        }
    }

    /// Waits until `pred` holds over everything seen so far.
    pub async fn wait_until(&mut self, what: &str, mut pred: impl FnMut(&[Msg]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !pred(&self.seen) {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; seen {} messages",
                        self.seen.len()
                    )
                })
                .expect("recorder alive");
            self.seen.push(m);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes `payload` on `topic` (QoS 1) from a throwaway client and waits for the PUBACK.
pub async fn publish(port: u16, topic: &str, payload: &str, retain: bool) {
    publish_all(port, topic, &[payload], retain).await;
}

/// Publishes every payload in one burst from one client (QoS 1, in order) and waits for
/// all their PUBACKs.
pub async fn publish_all(port: u16, topic: &str, payloads: &[&str], retain: bool) {
    let mut opts = MqttOptions::new(format!("pub-{}", fastrand::u32(..)), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    // Tests publish oversized payloads on purpose (rumqttc's default cap is 10 KiB).
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, payloads.len() + 8);
    for p in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, retain, p.as_bytes().to_vec())
            .await
            .expect("queue publish");
    }
    let mut acked = 0;
    tokio::time::timeout(WAIT, async {
        while acked < payloads.len() {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
        }
    })
    .await
    .expect("pubacks in time");
    let _ = client.disconnect().await;
}

/// `seq` of every buffered-event message (telemetry, state, stats, results) seen.
pub fn seqs(msgs: &[Msg]) -> Vec<u64> {
    msgs.iter()
        .filter(|m| !m.topic.ends_with("/status"))
        .filter_map(|m| m.json.get("seq").and_then(|s| s.as_u64()))
        .collect()
}

/// A TCP proxy in front of the broker that a test can cut: disabling it drops every
/// connection through it and refuses new ones (an uplink outage as the gateway sees it).
pub struct Proxy {
    pub port: u16,
    enabled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let enabled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, gen_rx) = tokio::sync::watch::channel(0u64);
        let en = enabled.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                if !en.load(SeqCst) {
                    drop(down);
                    continue;
                }
                let mut gen_rx = gen_rx.clone();
                gen_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = gen_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            enabled,
            generation,
            task,
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
