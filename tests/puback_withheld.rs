//! Proves the session deletes a queued event only on its PUBACK, against a scripted fake
//! broker (MQTT 3.1.1 by hand on 127.0.0.1 port 0) that withholds some PUBACKs and then
//! drops the connection: the events it never acknowledged stay queued, are published
//! again after the reconnect, oldest first and marked historical, and leave the queue
//! only once that second connection acknowledges them.
//!
//! The session runs on its own (no drivers, no pipeline) over a real queue, so the test
//! can look into the queue while packets are withheld.

use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::config::{BrokerConn, MqttCfg};
use polegate::model::payload::Body;
use polegate::northbound::mqtt::{Session, SessionSettings};
use polegate::ops::counters::Counters;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything the test waits for.
const WAIT: Duration = Duration::from_secs(20);
/// How long the test watches for a deletion that must not happen.
const QUIET: Duration = Duration::from_millis(500);
const EVENTS: u64 = 6;

/// One MQTT control packet: the first header byte and the rest after the length.
struct Packet {
    header: u8,
    body: Vec<u8>,
}

/// A PUBLISH as the broker saw it.
#[derive(Debug)]
struct Published {
    topic: String,
    pkid: u16,
    json: serde_json::Value,
}

/// One accepted client connection, scripted packet by packet.
struct Conn(TcpStream);

impl Conn {
    async fn accept(listener: &TcpListener) -> Conn {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the session connects in time")
            .expect("accept");
        let mut c = Conn(stream);
        let connect = c.read().await;
        assert_eq!(connect.header >> 4, 1, "CONNECT first");
        c.write(&[0x20, 0x02, 0x00, 0x00]).await;
        c
    }

    async fn read(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            let header = self.0.read_u8().await.expect("packet header");
            let (mut len, mut shift) = (0usize, 0);
            loop {
                let b = self.0.read_u8().await.expect("remaining length");
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0; len];
            self.0.read_exact(&mut body).await.expect("packet body");
            Packet { header, body }
        })
        .await
        .expect("a packet in time")
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("write to the session");
    }

    /// The next PUBLISH, answering pings on the way.
    async fn publish(&mut self) -> Published {
        loop {
            let p = self.read().await;
            match p.header >> 4 {
                3 => {
                    assert_eq!(p.header & 0x06, 0x02, "QoS 1");
                    let tlen = usize::from(u16::from_be_bytes([p.body[0], p.body[1]]));
                    let topic = String::from_utf8(p.body[2..2 + tlen].to_vec()).expect("topic");
                    let pkid = u16::from_be_bytes([p.body[2 + tlen], p.body[3 + tlen]]);
                    let json = serde_json::from_slice(&p.body[4 + tlen..]).expect("JSON payload");
                    return Published { topic, pkid, json };
                }
                12 => self.write(&[0xd0, 0x00]).await,
                other => panic!("unexpected packet type {other}"),
            }
        }
    }

    async fn puback(&mut self, pkid: u16) {
        let [hi, lo] = pkid.to_be_bytes();
        self.write(&[0x40, 0x02, hi, lo]).await;
    }

    /// The status message every connection starts with, acknowledged.
    async fn status(&mut self) {
        let p = self.publish().await;
        assert!(
            p.topic.ends_with("/status"),
            "status first, got {}",
            p.topic
        );
        self.puback(p.pkid).await;
    }

    /// The next `n` queued events, by seq.
    async fn events(&mut self, n: usize) -> Vec<(u64, Published)> {
        let mut out = Vec::new();
        while out.len() < n {
            let p = self.publish().await;
            let seq = p.json["seq"].as_u64().expect("seq");
            out.push((seq, p));
        }
        out
    }
}

fn mqtt(port: u16) -> MqttCfg {
    MqttCfg {
        broker: BrokerConn {
            url: format!("mqtt://127.0.0.1:{port}"),
            tls: false,
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        },
        client_id: "puback-withheld".into(),
        topic_prefix: "polegate".into(),
        keep_alive_s: 30,
        max_inflight: 10,
        replay_rate: 0,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        connect_delay_max_ms: 0,
    }
}

fn queued(q: &Queue) -> Vec<u64> {
    q.read_after(None, 100)
        .expect("read the queue")
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

/// Waits until the queue holds exactly `want`.
async fn queue_becomes(q: &Queue, want: &[u64]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while queued(q) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue {:?}, expected {want:?}",
            queued(q)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The queue keeps `want` for a while: nothing unacknowledged is deleted.
async fn queue_stays(q: &Queue, want: &[u64]) {
    let end = tokio::time::Instant::now() + QUIET;
    while tokio::time::Instant::now() < end {
        assert_eq!(queued(q), want, "an unacknowledged event left the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_whose_puback_was_withheld_are_republished_after_a_reconnect_and_deleted_only_once_acked()
 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("queue");
    for _ in 0..EVENTS {
        let seq = queue.next_seq().expect("seq");
        let rec = Record {
            topic: format!("polegate/g1/lamp-{seq}/telemetry"),
            payload: Body::from_open(format!(r#"{{"seq":{seq}"#).as_bytes()),
            retain: false,
            created_ms: 0,
        };
        queue.push(seq, &rec).expect("push");
    }
    let all = queued(&queue);
    assert_eq!(all.len() as u64, EVENTS);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counters = Arc::new(Counters::default());
    let (session, state) = Session::new(
        SessionSettings {
            mqtt: mqtt(port),
            gateway: "g1".into(),
            devices: Arc::new(AtomicUsize::new(0)),
            commands: None,
        },
        queue.clone(),
        Arc::new(Notify::new()),
        counters.clone(),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(session.run(cancel.clone()));

    // First connection: every event goes out; half the PUBACKs never come.
    let mut first = Conn::accept(&listener).await;
    first.status().await;
    let sent = first.events(all.len()).await;
    assert_eq!(
        sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        all,
        "published in seq order"
    );
    let (acked, withheld): (Vec<_>, Vec<_>) = sent.iter().partition(|(s, _)| s % 2 == 0);
    for (_, p) in &acked {
        first.puback(p.pkid).await;
    }
    let withheld: Vec<u64> = withheld.iter().map(|(s, _)| *s).collect();
    queue_becomes(&queue, &withheld).await;
    queue_stays(&queue, &withheld).await;
    drop(first);

    // Second connection: exactly the withheld events again, oldest first, historical.
    let mut second = Conn::accept(&listener).await;
    second.status().await;
    let again = second.events(withheld.len()).await;
    assert_eq!(
        again.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        withheld,
        "the unacknowledged events are replayed from the oldest"
    );
    for (_, p) in &again {
        assert_eq!(p.json["historical"], true, "{:?}", p.json);
    }
    queue_stays(&queue, &withheld).await;
    let (last, rest) = again.split_last().expect("some withheld");
    for (_, p) in rest {
        second.puback(p.pkid).await;
    }
    queue_becomes(&queue, &[last.0]).await;
    queue_stays(&queue, &[last.0]).await;
    second.puback(last.1.pkid).await;
    queue_becomes(&queue, &[]).await;

    assert_eq!(
        counters.published.load(Relaxed),
        EVENTS,
        "each event acked once"
    );
    assert!(state.connected.load(Relaxed));
    cancel.cancel();
    // The clean stop publishes the offline status; answer until the client goes away.
    let stop = async {
        loop {
            let mut b = [0u8; 256];
            match second.0.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, stop).await;
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the session stops")
        .expect("the session task");
}
