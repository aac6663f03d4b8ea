//! Hostile or broken chargers against the OCPP listener (SPEC §9, issue 14): a frame over
//! the size limit is refused and counted and only that connection closes; a second
//! connection for the same charge point id replaces the first; clients that connect and
//! say nothing fill the connection slots only until the handshake timeout, so the
//! listener is never held. The peers are raw WebSocket and TCP clients: hostility is what
//! no conforming library would send.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use polegate::southbound::ocpp::frame::MAX_FRAME_BYTES;
use polegate::southbound::ocpp::listen::{HANDSHAKE_TIMEOUT, MAX_CONNECTIONS};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

struct World {
    _broker: Mosquitto,
    _setup: Setup,
    daemon: Daemon,
    port: u16,
}

async fn world() -> World {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::new(
        broker.port,
        &format!(
            "[ocpp]\nlisten = \"127.0.0.1:{port}\"\nheartbeat_s = 60\n\n\
             [[device]]\nid = \"ev-1\"\nprofile = \"ocpp-charger\"\nocpp = {{ charge_point_id = \"CP-1\" }}\n\n\
             [[device]]\nid = \"ev-2\"\nprofile = \"ocpp-charger\"\nocpp = {{ charge_point_id = \"CP-2\" }}\n"
        ),
    );
    let daemon = Daemon::start(&setup).await;
    wait_listening(port).await;
    World {
        _broker: broker,
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
    tokio::time::timeout(WAIT, async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_hold_the_connection_slots_only_until_the_handshake_timeout() {
    let w = world().await;
    // Every slot taken by a client that connects and never sends its upgrade request.
    let started = tokio::time::Instant::now();
    let mut silent = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        silent.push(
            TcpStream::connect(("127.0.0.1", w.port))
                .await
                .expect("tcp"),
        );
    }
    // A real charger queued behind them (accepted by the kernel, not yet by polegate).
    let port = w.port;
    let charger = tokio::spawn(async move {
        let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT + WAIT, ws_charger(port, "CP-1"))
            .await
            .expect("the charger got a slot once the silent clients timed out")
            .expect("handshake");
        let upgraded = tokio::time::Instant::now();
        boot(&mut ws).await;
        upgraded
    });

    // The listener drops each silent client at its handshake deadline.
    for s in &mut silent {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT + WAIT, s.read(&mut buf))
            .await
            .expect("a silent client is dropped after the handshake timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing is sent to a client that never upgraded");
    }
    let upgraded = charger.await.expect("charger task");
    // The silent clients were accepted after `started`, so no slot came free before
    // `started + HANDSHAKE_TIMEOUT`: a charger upgraded earlier got past the cap.
    assert!(
        upgraded >= started + HANDSHAKE_TIMEOUT,
        "the charger was served after {:?}, while every slot was held",
        upgraded - started
    );
}
