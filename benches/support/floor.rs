//! The floor of a Modbus TCP poll on this machine: what the same polls cost a process
//! that does nothing else. The pipeline bench (`--parts F`) runs this bench binary again
//! as a child (`--floor-child ADDR...`), on a runtime like the daemon's (two workers), and
//! measures its CPU next to the daemon's: each of the addresses gets a connection and,
//! every `--poll-ms`, the lamp profile's three reads (coils, holding, input registers),
//! one after the other, as the daemon's bus task does. No decoding, no events, no queue:
//! the kernel's socket work, tokio's wake-ups and timers, and nothing of ours. With an
//! MQTT port, 7 polls in 10 also publish a 200-byte message at QoS 1 through rumqttc (the
//! daemon's telemetry rate on the lamp simulators, ~70 %), acknowledged by the broker.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `(function, address, quantity)` of the generic lamp's three reads.
const READS: [(u8, u16, u16); 3] = [(1, 0, 1), (3, 0, 1), (4, 0, 12)];

/// Runs the child until killed.
pub fn child(addrs: Vec<String>, poll_ms: u64, mqtt: Option<u16>) {
    let rt = super::runtime();
    rt.block_on(async move {
        let client = mqtt.map(publisher);
        for a in addrs {
            tokio::spawn(poller(a, poll_ms, client.clone()));
        }
        std::future::pending::<()>().await;
    });
}

/// A rumqttc client on the broker at `port`, its event loop polled by a task.
fn publisher(port: u16) -> rumqttc::AsyncClient {
    let mut o = rumqttc::MqttOptions::new("polegate-floor", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

async fn poller(addr: String, poll_ms: u64, mqtt: Option<rumqttc::AsyncClient>) {
    let Ok(mut s) = TcpStream::connect(&addr).await else {
        eprintln!("floor: cannot connect to {addr}");
        return;
    };
    let _ = s.set_nodelay(true);
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tid: u16 = 0;
    let mut buf = [0u8; 260];
    let topic = format!("polegate/floor/{addr}/telemetry");
    let mut polls: u64 = 0;
    loop {
        tick.tick().await;
        polls += 1;
        if let Some(c) = &mqtt
            && polls % 10 < 7
        {
            let payload = format!(
                "{{\"seq\":{polls},\"ts\":1765000000000,\"gateway\":\"floor\",\"device\":\"{addr}\",\"kind\":\"lamp\",\"points\":{{\"power\":54.5,\"energy\":1234,\"voltage\":229.8,\"current\":0.236}}}}"
            );
            let _ = c
                .publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload)
                .await;
        }
        for (f, at, n) in READS {
            tid = tid.wrapping_add(1);
            let mut req = [0u8; 12];
            req[..2].copy_from_slice(&tid.to_be_bytes());
            req[4..6].copy_from_slice(&6u16.to_be_bytes());
            req[6] = 1;
            req[7] = f;
            req[8..10].copy_from_slice(&at.to_be_bytes());
            req[10..12].copy_from_slice(&n.to_be_bytes());
            if s.write_all(&req).await.is_err() || s.read_exact(&mut buf[..7]).await.is_err() {
                return;
            }
            let len = usize::from(u16::from_be_bytes([buf[4], buf[5]])).clamp(1, 254) - 1;
            if s.read_exact(&mut buf[7..7 + len]).await.is_err() {
                return;
            }
        }
    }
}
