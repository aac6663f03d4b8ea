//! Hostile or broken chargers against the OCPP listener (SPEC §7, §9, issues 14 and 22):
//! a frame over the size limit is refused and counted and only that connection closes; a
//! second connection for the same charge point id replaces the first; 300 half-open
//! clients do not keep a real charger out; a flooding charger is rate-limited while
//! another charger's readings still arrive within 5 s; in proxy mode, 70 CALLERRORs from
//! the upstream CSMS do not stop the tapping; a StartTransaction on a connector no device
//! names is refused; a charger that stops reading is closed after the write timeout, one
//! that upgrades and falls silent after three heartbeats. The peers are raw WebSocket and
//! TCP clients (and a raw upstream CSMS): hostility is what no conforming library would
//! send.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use polegate::southbound::ocpp::conn::{FRAME_BURST, FRAMES_PER_S};
use polegate::southbound::ocpp::frame::MAX_FRAME_BYTES;
use polegate::southbound::ocpp::listen::HANDSHAKE_SLOTS;
use polegate::southbound::ocpp::ws::{HANDSHAKE_TIMEOUT, SUBPROTOCOL};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

struct World {
    broker: Mosquitto,
    _setup: Setup,
    daemon: Daemon,
    port: u16,
}

async fn world() -> World {
    world_with("heartbeat_s = 60\n").await
}

/// `ocpp`: more `[ocpp]` keys (`heartbeat_s`, proxy mode's `upstream`).
async fn world_with(ocpp: &str) -> World {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::new(
        broker.port,
        &format!(
            "[ocpp]\nlisten = \"127.0.0.1:{port}\"\n{ocpp}\n\
             [[device]]\nid = \"ev-1\"\nprofile = \"ocpp-charger\"\nocpp = {{ charge_point_id = \"CP-1\" }}\n\n\
             [[device]]\nid = \"ev-2\"\nprofile = \"ocpp-charger\"\nocpp = {{ charge_point_id = \"CP-2\" }}\n"
        ),
    );
    let daemon = Daemon::start(&setup).await;
    wait_listening(port).await;
    World {
        broker,
        _setup: setup,
        daemon,
        port,
    }
}

async fn connect(port: u16, cp: &str) -> Ws {
    tokio::time::timeout(WAIT, ws_charger(port, cp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

/// Sends one CALL and returns the CALLRESULT payload (other frames are skipped).
async fn call(ws: &mut Ws, id: &str, action: &str, payload: Value) -> Value {
    ws.send(Message::text(json!([2, id, action, payload]).to_string()))
        .await
        .expect("send");
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer in time")
            .expect("connection open")
            .expect("frame");
        if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(frame.to_text().unwrap_or(""))
            && a.first() == Some(&json!(3))
            && a.get(1) == Some(&json!(id))
        {
            return a[2].clone();
        }
    }
}

async fn boot(ws: &mut Ws) {
    let conf = call(
        ws,
        "b1",
        "BootNotification",
        json!({"chargePointVendor": "ACME", "chargePointModel": "W22"}),
    )
    .await;
    assert_eq!(conf["status"], "Accepted");
}

/// Waits until the server ends the connection: a Close frame, an error or the end.
async fn closed_by_server(ws: &mut Ws) {
    closed_within(ws, WAIT).await;
}

/// Like [`closed_by_server`], waiting at most `limit`.
async fn closed_within(ws: &mut Ws, limit: std::time::Duration) {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_counted_and_closes_only_that_connection() {
    let w = world().await;
    let mut bad = connect(w.port, "CP-1").await;
    let mut good = connect(w.port, "CP-2").await;
    boot(&mut bad).await;
    boot(&mut good).await;
    let before = w
        .daemon
        .handles
        .counters
        .ocpp_malformed
        .load(Ordering::Relaxed);

    let huge = format!(
        r#"[2,"x","DataTransfer",{{"vendorId":"{}"}}]"#,
        "A".repeat(MAX_FRAME_BYTES + 1024)
    );
    bad.send(Message::text(huge)).await.expect("send");
    closed_by_server(&mut bad).await;
    eventually("the refused frame counted", || {
        w.daemon
            .handles
            .counters
            .ocpp_malformed
            .load(Ordering::Relaxed)
            > before
    })
    .await;

    // The other charger is untouched, and the refused one may come back.
    let hb = call(&mut good, "h1", "Heartbeat", json!({})).await;
    assert!(hb["currentTime"].is_string(), "{hb}");
    let mut again = connect(w.port, "CP-1").await;
    boot(&mut again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_for_the_same_charge_point_replaces_the_first() {
    let w = world().await;
    let mut first = connect(w.port, "CP-1").await;
    boot(&mut first).await;
    let mut second = connect(w.port, "CP-1").await;
    closed_by_server(&mut first).await;
    boot(&mut second).await;
    let hb = call(&mut second, "h1", "Heartbeat", json!({})).await;
    assert!(hb["currentTime"].is_string(), "{hb}");
}

fn meter_values(id: &str, wh: u64) -> Message {
    let mv = json!([2, id, "MeterValues", {"connectorId": 1, "meterValue": [{
        "timestamp": "2026-12-01T10:00:00Z",
        "sampledValue": [{"value": wh.to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    }]}]);
    Message::text(mv.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_half_open_clients_do_not_keep_a_real_charger_out() {
    let w = world().await;
    // Each sends the start of an upgrade request and never finishes it.
    let mut half_open = Vec::with_capacity(300);
    for _ in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", w.port))
            .await
            .expect("tcp");
        s.write_all(b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        half_open.push(s);
    }
    let t0 = tokio::time::Instant::now();
    let mut ws = connect(w.port, "CP-2").await;
    boot(&mut ws).await;
    assert!(
        t0.elapsed() < HANDSHAKE_TIMEOUT / 2,
        "the charger was served after {:?}: it waited for half-open clients to time out",
        t0.elapsed()
    );
    let evicted = w
        .daemon
        .handles
        .counters
        .ocpp_handshake_evicted
        .load(Ordering::Relaxed);
    assert!(evicted as usize >= 300 - HANDSHAKE_SLOTS, "{evicted}");
    // The oldest half-open client lost its slot and was closed without an answer.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, half_open[0].read(&mut buf))
        .await
        .expect("the oldest half-open client is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_charger_is_rate_limited_and_another_chargers_readings_arrive_within_5_s() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    let w = world().await;
    let mut rec = Recorder::start(w.broker.port, "polegate/cab-test/+/telemetry").await;
    let connected = tokio::time::Instant::now();
    let mut flooder = connect(w.port, "CP-1").await;
    let mut good = connect(w.port, "CP-2").await;
    boot(&mut flooder).await;
    boot(&mut good).await;
    let (mut tx, mut rx) = flooder.split();
    // Counts the gateway's answers to the flood: CALLRESULTs (used) and CALLERRORs.
    let (used, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (u, r) = (used.clone(), refused.clone());
    let drain = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            match m.to_text().unwrap_or("").as_bytes().get(1) {
                Some(b'3') => u.fetch_add(1, Ordering::Relaxed),
                Some(b'4') => r.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    });
    let flood = tokio::spawn(async move {
        let (t0, mut sent) = (tokio::time::Instant::now(), 0u64);
        while t0.elapsed() < std::time::Duration::from_secs(6) {
            if tx
                .send(meter_values(&format!("f{sent}"), sent))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        (sent, tx)
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let asked = tokio::time::Instant::now();
    let mv = call(&mut good, "m1", "MeterValues", json!({"connectorId": 1, "meterValue": [{
        "timestamp": "2026-12-01T10:00:00Z",
        "sampledValue": [{"value": "987654", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    }]})).await;
    assert_eq!(mv, json!({}));
    rec.wait_for("the other charger's reading", |m| {
        m.topic.ends_with("/ev-2/telemetry")
            && m.json["points"]["energy_total"].as_f64() == Some(987654.0)
    })
    .await;
    let took = asked.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let (sent, _tx) = flood.await.expect("flood task");
    eventually("every flood frame answered", || {
        used.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) == sent
    })
    .await;
    drain.abort();
    let allowed = FRAME_BURST + FRAMES_PER_S * connected.elapsed().as_secs_f64();
    let used = used.load(Ordering::Relaxed);
    assert!(sent as f64 > allowed * 2.0, "the flood was a flood: {sent}");
    assert!(
        used as f64 <= allowed,
        "{used} of {sent} frames used, the rate allows {allowed}"
    );
    let limited = w
        .daemon
        .handles
        .counters
        .ocpp_rate_limited
        .load(Ordering::Relaxed);
    assert_eq!(
        limited,
        refused.load(Ordering::Relaxed),
        "every refusal counted"
    );
    // What was used is all the flooder got published.
    rec.wait_for("the flood's last used reading", |m| {
        m.topic.ends_with("/ev-1/telemetry")
    })
    .await;
    rec.drain();
    let flooded = rec
        .seen
        .iter()
        .filter(|m| m.topic.ends_with("/ev-1/telemetry"))
        .count();
    assert!(
        flooded as u64 <= used,
        "{flooded} readings of the flooder published, {used} used"
    );
}

/// A raw upstream CSMS: answers the first `errors` calls with a CALLERROR, the rest
/// with an empty CALLRESULT.
async fn raw_csms(listener: tokio::net::TcpListener, errors: usize) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let (tcp, _) = listener.accept().await.expect("accept");
    // The error type is tungstenite's handshake callback's, large by its design.
    #[allow(clippy::result_large_err)]
    let cb = |_: &Request, mut resp: Response| {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            SUBPROTOCOL.parse().expect("header"),
        );
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, cb)
        .await
        .expect("upstream handshake");
    let mut n = 0;
    while let Some(Ok(m)) = ws.next().await {
        let Ok(Value::Array(a)) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
            continue;
        };
        if a.first() != Some(&json!(2)) {
            continue;
        }
        n += 1;
        let answer = if n <= errors {
            json!([4, a[1], "InternalError", "upstream refuses", {}])
        } else {
            json!([3, a[1], {}])
        };
        if ws.send(Message::text(answer.to_string())).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_callerrors_from_the_upstream_csms_do_not_stop_the_tapping() {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up_port = up.local_addr().expect("addr").port();
    let csms = tokio::spawn(raw_csms(up, 70));
    let w = world_with(&format!(
        "heartbeat_s = 60\nupstream = \"ws://127.0.0.1:{up_port}\"\n"
    ))
    .await;
    let mut rec = Recorder::start(w.broker.port, "polegate/cab-test/ev-1/telemetry").await;
    let mut ws = connect(w.port, "CP-1").await;
    for i in 0..70 {
        ws.send(meter_values(&format!("e{i}"), 1000 + i))
            .await
            .expect("send");
        let a = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("frame");
        let v: Value = serde_json::from_str(a.to_text().unwrap_or("")).expect("json");
        assert_eq!(v[0], 4, "the CSMS's CALLERROR is relayed: {v}");
    }
    let r = call(&mut ws, "last", "MeterValues", json!({"connectorId": 1, "meterValue": [{
        "timestamp": "2026-12-01T10:00:00Z",
        "sampledValue": [{"value": "555555", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    }]})).await;
    assert_eq!(r, json!({}));
    let m = rec
        .wait_for("the MeterValues after 70 CALLERRORs tapped", |m| {
            m.json["points"]["energy_total"].as_f64() == Some(555555.0)
        })
        .await;
    assert!(m.json["points"]["energy_total"].is_number());
    assert_eq!(
        rec.seen.len(),
        1,
        "the refused calls were not tapped: {:?}",
        rec.seen.iter().map(|m| &m.json).collect::<Vec<_>>()
    );
    csms.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_transaction_on_an_unconfigured_connector_is_refused_and_opens_nothing() {
    let w = world().await;
    let mut ws = connect(w.port, "CP-1").await;
    boot(&mut ws).await;
    let start = |id: &str, connector: u64| {
        Message::text(
            json!([2, id, "StartTransaction", {"connectorId": connector, "idTag": "T1",
                "meterStart": 0, "timestamp": "2026-12-01T10:00:00Z"}])
            .to_string(),
        )
    };
    ws.send(start("s7", 7)).await.expect("send");
    let a = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("answer in time")
        .expect("open")
        .expect("frame");
    let v: Value = serde_json::from_str(a.to_text().unwrap_or("")).expect("json");
    assert_eq!(v[0], 4, "{v}");
    assert_eq!(v[2], "PropertyConstraintViolation", "{v}");
    // The configured connector still starts.
    ws.send(start("s1", 1)).await.expect("send");
    let conf = loop {
        let a = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("frame");
        let v: Value = serde_json::from_str(a.to_text().unwrap_or("")).expect("json");
        if v[1] == "s1" {
            break v;
        }
    };
    assert_eq!(conf[0], 3, "{conf}");
    assert!(conf[2]["transactionId"].is_number(), "{conf}");
}

/// A charger that sends but stops reading: the gateway's answers fill the socket, the
/// next send times out (`conn::WRITE_TIMEOUT`) and the connection is closed, while
/// another charger is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charger_that_stops_reading_is_closed_after_the_write_timeout() {
    use polegate::southbound::ocpp::conn::WRITE_TIMEOUT;
    let w = world().await;
    let mut rec = Recorder::start(w.broker.port, "polegate/cab-test/+/state").await;
    let mut stuck = connect(w.port, "CP-1").await;
    let mut good = connect(w.port, "CP-2").await;
    boot(&mut stuck).await;
    boot(&mut good).await;
    rec.wait_for_new("the stuck charger online", |m| {
        m.topic.ends_with("/ev-1/state") && m.json["state"] == "online"
    })
    .await;
    // Calls until the gateway stops taking them in (its answers are never read).
    let t0 = tokio::time::Instant::now();
    let mut n = 0u64;
    loop {
        let hb = Message::text(json!([2, format!("h{n}"), "Heartbeat", {}]).to_string());
        match tokio::time::timeout(std::time::Duration::from_secs(2), stuck.send(hb)).await {
            Ok(Ok(())) => n += 1,
            Ok(Err(_)) | Err(_) => break,
        }
        assert!(t0.elapsed() < WAIT, "the gateway kept reading: {n} calls");
    }
    // Meanwhile the other charger is answered.
    let hb = call(&mut good, "g1", "Heartbeat", json!({})).await;
    assert!(hb["currentTime"].is_string(), "{hb}");
    // The gateway closes the stuck connection once a send has waited WRITE_TIMEOUT (read
    // nothing here: reading would unblock that send): its connector goes offline.
    let off = rec
        .wait_for_new("the stuck charger closed", |m| {
            m.topic.ends_with("/ev-1/state") && m.json["state"] == "offline"
        })
        .await;
    assert_eq!(off.json["reason"], "charger disconnected");
    assert!(
        t0.elapsed() >= WRITE_TIMEOUT,
        "closed after {:?}, before any send could time out",
        t0.elapsed()
    );
    drop(stuck);
    let hb = call(&mut good, "g2", "Heartbeat", json!({})).await;
    assert!(hb["currentTime"].is_string(), "{hb}");
    let mut again = connect(w.port, "CP-1").await;
    boot(&mut again).await;
}

/// A charger that upgrades and then says nothing (a half-open connection after the
/// handshake) is closed after three heartbeat intervals: its task and slot are freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charger_silent_for_three_heartbeats_is_closed() {
    let w = world_with("heartbeat_s = 10\n").await;
    let mut ws = connect(w.port, "CP-1").await;
    boot(&mut ws).await;
    let t0 = tokio::time::Instant::now();
    closed_within(&mut ws, std::time::Duration::from_secs(30) + WAIT).await;
    assert!(
        t0.elapsed() >= std::time::Duration::from_secs(29),
        "closed after {:?}, before three heartbeats",
        t0.elapsed()
    );
}
