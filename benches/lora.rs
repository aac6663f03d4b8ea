//! LoRa uplink throughput on one thread: UDP datagram (PUSH_DATA on 127.0.0.1) → Semtech
//! parse → LoRaWAN parse + MIC + counter + decrypt (`lorawan` crate) → session written to
//! the sled KV → profile script `decode_uplink` → pipeline (deadband, seq, encode) → sled
//! queue. Also the stages alone. Run with `cargo bench --bench lora`; results go to
//! BENCHMARKS-lora.md. Target: ≥ 20,000 uplinks/s.

use polegate::buffer::{Queue, QueueOptions};
use polegate::config::lora::{Activation, Key, LoraCfg, LoraDeviceCfg, LoraSource};
use polegate::ops::counters::Counters;
use polegate::pipeline::{Input, Pipeline, PipelineSettings};
use polegate::southbound::lora::driver::{Core, LoraDevice, Out};
use polegate::southbound::lora::netserver::{Device, Server};
use polegate::southbound::lora::script::LoraCodec;
use polegate::southbound::lora::semtech;
use polegate::southbound::lora::session::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The tests' shipped profiles and device constructor.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{device_info, profile};

const N: u32 = 40_000;
const NWK: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const APP: [u8; 16] = [7; 16];
const ADDR: u32 = 0x2601_1bda;

fn frame(fcnt: u32) -> Vec<u8> {
    let e = fcnt.to_be_bytes();
    let payload = [
        1,
        (fcnt % 100) as u8,
        0x02,
        0x1c,
        e[0],
        e[1],
        e[2],
        e[3],
        20,
    ];
    let mut c = lorawan::creator::DataPayloadCreator::new();
    c.set_uplink(true)
        .set_confirmed(false)
        .set_dev_addr(&ADDR.to_le_bytes())
        .set_fcnt(fcnt)
        .set_f_port(2);
    c.build(
        &payload,
        &[],
        &lorawan::keys::NewSKey::from(NWK),
        &lorawan::keys::AppSKey::from(APP),
    )
    .unwrap()
    .to_vec()
}

fn activation() -> Activation {
    Activation::Abp {
        dev_addr: ADDR,
        nwk_s_key: Key(NWK),
        app_s_key: Key(APP),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let profile = profile("generic-lamp-lora");
    let engine = polegate::script::Engine::new();
    let codec = LoraCodec::new(&engine, &profile).unwrap();
    let frames: Vec<Vec<u8>> = (1..=N).map(frame).collect();
    let datagrams: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            semtech::push_data(i as u16, [1; 8], &[semtech::rxpk_of(f, i as u32, -90, 5.5)])
        })
        .collect();

    // Stage: LoRaWAN parse + MIC + counter + decrypt.
    let mut s = Server::new(
        vec![Device {
            id: "d".into(),
            dev_eui: [1; 8],
            activation: activation(),
        }],
        [0; 3],
        (0x2600_0000, 7),
        &Store::memory(),
    );
    let t = Instant::now();
    for f in &frames {
        s.uplink(f).unwrap();
    }
    let lorawan_rate = f64::from(N) / t.elapsed().as_secs_f64();

    // Stage: script decode.
    let t = Instant::now();
    for f in &frames {
        codec.decode(2, &f[9..f.len() - 4]).unwrap();
    }
    let script_rate = f64::from(N) / t.elapsed().as_secs_f64();

    // Whole path.
    let queue = Queue::open(&dir.path().join("buffer"), QueueOptions::default()).unwrap();
    let counters = Arc::new(Counters::default());
    let info = device_info("lamp", "generic-lamp-lora");
    let mut pipeline = Pipeline::new(
        PipelineSettings {
            gateway: "bench".into(),
            topic_prefix: "polegate".into(),
            flush_every: Duration::from_secs(1),
            stats_every: None,
        },
        queue.clone(),
        Arc::new(tokio::sync::Notify::new()),
        counters.clone(),
        std::slice::from_ref(&info),
    );
    let cfg = LoraCfg {
        source: LoraSource::SemtechUdp,
        listen: "127.0.0.1:0".parse().unwrap(),
        region: "EU868".into(),
        net_id: [0; 3],
        dev_addr_prefix: (0x2600_0000, 7),
        gateway_euis: None,
    };
    let t0 = Instant::now();
    let mut core = Core::new(
        &cfg,
        vec![LoraDevice {
            info,
            cfg: LoraDeviceCfg {
                dev_eui: [1; 8],
                activation: activation(),
                offline_after_s: Some(1_000_000),
            },
            codec: Some(codec),
        }],
        Store::new(queue.kv("lora").unwrap()),
        Some(queue.clone()),
        counters,
        t0,
    );
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.local_addr().unwrap()).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut events = 0u64;
    let before = queue.len();
    let t = Instant::now();
    for (i, d) in datagrams.iter().enumerate() {
        client.send(d).unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        // Simulated clock: each frame's dedup window has passed at its tick.
        let now = t0 + Duration::from_millis(i as u64);
        let mut out = Out::default();
        core.datagram(now, from, &buf[..n], &mut out);
        core.tick(now + Duration::from_millis(250), 0, &mut out);
        // As the daemon: the accepted FCnt is durable before the reading goes on.
        if let Some(q) = core.take_flush() {
            q.flush().unwrap();
        }
        for input in out.inputs {
            if matches!(input, Input::Reading { .. }) {
                events += 1;
            }
            pipeline.handle(input);
        }
        // PUSH_ACK back to the forwarder, as in the daemon.
        for (_, d) in out.datagrams {
            server.send_to(&d, client.local_addr().unwrap()).unwrap();
            let _ = client.recv(&mut buf);
        }
    }
    queue.flush().unwrap();
    let total = t.elapsed();
    let rate = f64::from(N) / total.as_secs_f64();
    let queued = queue.len() - before;
    println!("lora uplinks: {N} frames, {events} readings, {queued} events queued");
    println!("  lorawan parse+MIC+decrypt : {lorawan_rate:>10.0} frames/s");
    println!("  script decode_uplink      : {script_rate:>10.0} calls/s");
    println!(
        "  UDP→MIC→decrypt→script→queue: {rate:>10.0} uplinks/s ({:.1} µs each, one thread, incl. PUSH_ACK and final flush)",
        total.as_secs_f64() * 1e6 / f64::from(N)
    );
    assert!(events == u64::from(N), "every uplink became a reading");
}
