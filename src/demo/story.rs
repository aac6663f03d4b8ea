//! The story `polegate demo` tells (without `--raw`), timed from the moment the gateway is
//! online (connected and subscribed to its commands, so no command is sent into the void,
//! however long the connect takes): at ~2 s the control room power-cycles a hung camera
//! from its PoE switch port (the result comes once the port is back on), at ~5 s it dims a lamp and at ~7 s caps
//! the OCPP charger's current, and the results come back; at ~10 s the cabinet's uplink is
//! cut for a few seconds and, once it is back, the events buffered meanwhile are replayed
//! with `"historical": true`; at the end one summary line counts what the control room
//! received.
//!
//! The uplink is a relay between the gateway and the embedded broker that the story can
//! cut: the gateway sees its connection drop and its reconnects refused, as with a real
//! outage, while the printing subscriber (the control room) stays connected.

use rumqttc::{AsyncClient, QoS};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// One command the control room sends during the story.
pub struct StoryCommand {
    /// When, counted from the moment the gateway is online.
    pub at: Duration,
    pub device: &'static str,
    pub id: &'static str,
    pub point: &'static str,
    /// The value, as JSON.
    pub value: &'static str,
    /// What the narration says it does.
    pub says: &'static str,
}

/// The commands, in time order: a hung camera power-cycled from its PoE switch port
/// (SNMP), a Modbus lamp dimmed, an OCPP charger capped.
pub const COMMANDS: [StoryCommand; 3] = [
    StoryCommand {
        at: Duration::from_secs(2),
        device: super::poe::HUNG_CAMERA,
        id: "demo-cycle-cam",
        point: "power_cycle",
        value: "true",
        says: "power-cycles the hung camera cam-p2 from its PoE switch port (SNMP, reachable = false)",
    },
    StoryCommand {
        at: Duration::from_secs(5),
        device: "lamp-017",
        id: "demo-dim-40",
        point: "dim_level",
        value: "40",
        says: "dims lamp-017 to 40 %",
    },
    StoryCommand {
        at: Duration::from_secs(7),
        device: super::ocpp::DEVICE_ID,
        id: "demo-cap-10",
        point: "max_current",
        value: "10",
        says: "caps charger evc-darcy-1 at 10 A (OCPP SetChargingProfile)",
    },
];
/// When the uplink is cut (from the moment the gateway is online), and for how long.
pub const CUT_AT: Duration = Duration::from_secs(10);
pub const CUT_FOR: Duration = Duration::from_secs(4);

/// The cabinet's uplink: a TCP relay to the broker that can be cut and restored.
pub struct Uplink {
    port: u16,
    up: watch::Sender<bool>,
    cut_once: Arc<AtomicBool>,
}

impl Uplink {
    /// Listens on a free loopback port and relays every connection to `broker_port`.
    pub async fn start(broker_port: u16, cancel: CancellationToken) -> std::io::Result<Uplink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, up_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = listener.accept() => a,
                };
                // A refused reconnect is a closed socket: the gateway backs off and retries.
                let Ok((gateway, _)) = accepted else { continue };
                if *up_rx.borrow() {
                    tokio::spawn(relay(gateway, broker_port, up_rx.clone()));
                }
            }
        });
        Ok(Uplink {
            port,
            up,
            cut_once: Arc::default(),
        })
    }

    /// Where the gateway connects.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops the connections through the uplink and refuses new ones until [`Uplink::restore`].
    pub fn cut(&self) {
        self.cut_once.store(true, Relaxed);
        self.up.send_replace(false);
    }

    /// True from the first [`Uplink::cut`] on (for the printer: a replay before it is
    /// the backlog of the first connect, not the story's).
    pub fn cut_once(&self) -> Arc<AtomicBool> {
        self.cut_once.clone()
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn relay(mut gateway: TcpStream, broker_port: u16, mut up: watch::Receiver<bool>) {
    let Ok(mut broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
        return;
    };
    let cut = async {
        // The story's handle gone means no more cuts: keep relaying.
        if up.wait_for(|up| !*up).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut gateway, &mut broker) => {}
        _ = cut => {}
    }
}

/// What the control room (the printing subscriber) received, for the narration and the
/// summary.
#[derive(Debug, Default)]
pub struct Tally {
    seqs: BTreeSet<u64>,
    /// Events that arrived with `"historical": true` after the uplink cut (replayed from
    /// the buffer).
    pub replayed: u64,
    /// Results of the story's commands that came back: (id, ok).
    pub results: Vec<(String, bool)>,
}

/// What one received message means for the story.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Event {
        historical: bool,
    },
    CommandResult {
        device: String,
        ok: bool,
        detail: String,
    },
    /// A write of a lighting program (`"source":"schedule"`).
    Scheduled {
        device: String,
        /// `program evening, step 1`.
        step: String,
        detail: String,
    },
    Other,
}

impl Tally {
    /// Records one message of the gateway's (`payload` as published); `after_cut` once
    /// the story has cut the uplink.
    pub fn record(&mut self, topic: &str, payload: &[u8], after_cut: bool) -> Seen {
        // The status, and the control room's own commands echoed back.
        if topic.ends_with("/status") || topic.ends_with("/cmd") {
            return Seen::Other;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return Seen::Other;
        };
        if let Some(seq) = json.get("seq").and_then(|s| s.as_u64()) {
            self.seqs.insert(seq);
        }
        let id = json.get("id").and_then(|i| i.as_str());
        if topic.ends_with("/cmd/result")
            && json.get("source").and_then(|s| s.as_str()) == Some("schedule")
        {
            let mut parts = id.unwrap_or_default().splitn(3, ':').skip(1);
            let step = format!(
                "program {}, step {}",
                parts.next().unwrap_or("?"),
                parts.next().unwrap_or("?")
            );
            let (device, detail) = result_detail(&json);
            return Seen::Scheduled {
                device,
                step,
                detail,
            };
        }
        if topic.ends_with("/cmd/result")
            && let Some(id) = id.filter(|id| COMMANDS.iter().any(|c| c.id == *id))
        {
            let ok = json.get("ok").and_then(|o| o.as_bool()).unwrap_or(false);
            self.results.push((id.to_string(), ok));
            let (device, detail) = result_detail(&json);
            return Seen::CommandResult { device, ok, detail };
        }
        let historical = json.get("historical").and_then(|h| h.as_bool()) == Some(true);
        if historical && after_cut {
            self.replayed += 1;
        }
        Seen::Event { historical }
    }

    /// Buffered events received (each `seq` once).
    pub fn events(&self) -> u64 {
        self.seqs.len() as u64
    }

    /// seqs missing between the first and the last received: events lost on the way.
    pub fn lost(&self) -> u64 {
        match (self.seqs.first(), self.seqs.last()) {
            (Some(first), Some(last)) => (last - first + 1) - self.events(),
            _ => 0,
        }
    }

    /// The line the demo ends with.
    pub fn summary(&self) -> String {
        let ok = self.results.iter().filter(|(_, ok)| *ok).count();
        let commands = format!("{} commands answered, {ok} ok", self.results.len());
        format!(
            "polegate demo: summary: {} events received, lost {}, replayed {} (historical), {commands}",
            self.events(),
            self.lost(),
            self.replayed
        )
    }
}

/// The device of a `cmd/result` and what it says: its points, or its error.
fn result_detail(json: &serde_json::Value) -> (String, String) {
    let detail = match (json.get("points"), json.get("error")) {
        (_, Some(e)) => format!("error {e}"),
        (Some(p), None) => format!("points {p}"),
        (None, None) => String::new(),
    };
    let device = json.get("device").and_then(|d| d.as_str()).unwrap_or("?");
    (device.to_string(), detail)
}

/// Plays the story against a running gateway once `online` fires (the printer saw the
/// gateway's online status); `say` prints one narration line.
pub async fn play(
    control_room: AsyncClient,
    uplink: Uplink,
    online: oneshot::Receiver<()>,
    topic: (String, String),
    cancel: CancellationToken,
    say: fn(String),
) {
    let (topic_prefix, gateway) = topic;
    let sleep = |d| {
        let cancel = cancel.clone();
        async move {
            tokio::select! {
                _ = cancel.cancelled() => false,
                _ = tokio::time::sleep(d) => true,
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => return,
        seen = online => if seen.is_err() { return },
    }
    say(format!(
        "gateway {gateway} online and subscribed to its commands: the control room starts"
    ));
    let mut now = Duration::ZERO;
    for c in &COMMANDS {
        if !sleep(c.at.saturating_sub(now)).await {
            return;
        }
        now = c.at;
        let topic = format!("{topic_prefix}/{gateway}/{}/cmd", c.device);
        let command = format!(
            r#"{{"id":"{}","point":"{}","value":{}}}"#,
            c.id, c.point, c.value
        );
        say(format!("control room {}: {topic} {command}", c.says));
        if let Err(e) = control_room
            .publish(topic, QoS::AtLeastOnce, false, command)
            .await
        {
            say(format!("could not send the command: {e}"));
        }
    }
    if !sleep(CUT_AT.saturating_sub(now)).await {
        return;
    }
    say(format!(
        "uplink cut for {} s: the gateway keeps polling and buffers on disk",
        CUT_FOR.as_secs()
    ));
    uplink.cut();
    let back = sleep(CUT_FOR).await;
    uplink.restore();
    if back {
        say("uplink restored: the buffered events follow, marked \"historical\": true".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_events_replays_gaps_and_command_results() {
        let mut t = Tally::default();
        let ev = |seq: u64, hist: bool| {
            format!(
                r#"{{"seq":{seq},"ts":"x","gateway":"g"{}}}"#,
                if hist { r#","historical":true"# } else { "" }
            )
        };
        assert_eq!(
            t.record("p/g/lamp-017/telemetry", ev(3, false).as_bytes(), false),
            Seen::Event { historical: false }
        );
        assert_eq!(
            t.record("p/g/lamp-017/telemetry", ev(4, true).as_bytes(), true),
            Seen::Event { historical: true }
        );
        // The backlog of the first connect is historical too, but no replay of the story.
        assert_eq!(
            t.record("p/g/lamp-017/telemetry", ev(2, true).as_bytes(), false),
            Seen::Event { historical: true }
        );
        assert_eq!(
            t.record("p/g/status", br#"{"state":"online"}"#, false),
            Seen::Other
        );
        assert_eq!(
            t.record("p/g/lamp-017/telemetry", b"not json", true),
            Seen::Other
        );
        let result = format!(
            r#"{{"seq":6,"device":"lamp-017","id":"{}","ok":true,"points":{{"dim_level":40}}}}"#,
            COMMANDS[0].id
        );
        assert!(matches!(
            t.record("p/g/lamp-017/cmd/result", result.as_bytes(), true),
            Seen::CommandResult { ok: true, .. }
        ));
        assert_eq!(t.events(), 4);
        assert_eq!(t.lost(), 1, "seq 5 never came");
        assert_eq!(t.replayed, 1);
        assert_eq!(
            t.summary(),
            "polegate demo: summary: 4 events received, lost 1, replayed 1 (historical), 1 commands answered, 1 ok"
        );
    }

    const WAIT: Duration = Duration::from_secs(5);

    /// Connects through the uplink and proves `bytes` reach the broker side; returns the
    /// gateway side of the connection.
    async fn relayed(uplink: &Uplink, broker: &TcpListener, bytes: &[u8]) -> TcpStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut gw = TcpStream::connect(("127.0.0.1", uplink.port()))
            .await
            .unwrap();
        let (mut far, _) = tokio::time::timeout(WAIT, broker.accept())
            .await
            .unwrap()
            .unwrap();
        gw.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; bytes.len()];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, bytes);
        gw
    }

    /// Reads from `s` until the far end closes it (0 bytes), within [`WAIT`].
    async fn closed(s: &mut TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap();
        n.unwrap_or(0) == 0
    }

    #[tokio::test]
    async fn a_cut_uplink_drops_its_connections_and_refuses_new_ones_until_restored() {
        let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker_port = broker.local_addr().unwrap().port();
        let cancel = CancellationToken::new();
        let uplink = Uplink::start(broker_port, cancel.clone()).await.unwrap();

        let mut gw = relayed(&uplink, &broker, b"ping").await;
        uplink.cut();
        assert!(closed(&mut gw).await, "the relayed connection is closed");
        let mut again = TcpStream::connect(("127.0.0.1", uplink.port()))
            .await
            .unwrap();
        assert!(closed(&mut again).await, "a reconnect while cut is refused");

        uplink.restore();
        relayed(&uplink, &broker, b"back").await;
        cancel.cancel();
    }
}
