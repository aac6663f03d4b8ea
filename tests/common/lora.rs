//! LoRa test peers: a packet forwarder speaking Semtech UDP from two sockets as the real
//! one does ([`Forwarder`]), real frames (lora-packet's vectors in tests/fixtures, and
//! uplinks of the vectors' ABP device built with the `lorawan` crate), and the Semtech
//! UDP task alone on a real queue in a directory ([`LoraRig`]), restartable on its port.

use super::{WAIT, device_info, profile};
use polegate::buffer::{Queue, QueueOptions};
use polegate::config::lora::{Activation, Key, LoraCfg, LoraDeviceCfg, LoraSource};
use polegate::model::Value as PointValue;
use polegate::model::command::{CmdResult, InboxSender, WriteOutcome, WriteRequest};
use polegate::ops::counters::Counters;
use polegate::pipeline::Input;
use polegate::southbound::lora::driver::{Core, LoraDevice};
use polegate::southbound::lora::script::LoraCodec;
use polegate::southbound::lora::semtech;
use polegate::southbound::lora::session::Store;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const GW_A: [u8; 8] = [0xaa, 1, 2, 3, 4, 5, 6, 7];
pub const GW_B: [u8; 8] = [0xbb, 1, 2, 3, 4, 5, 6, 7];
/// The vectors' ABP device (lora-packet's keys).
pub const ABP_DEV_ADDR: u32 = 0x2601_1bda;
pub const ABP_NWK: &str = "000102030405060708090a0b0c0d0e0f";
pub const ABP_APP: &str = "f0e0d0c0b0a090807060504030201000";

pub fn vector(op: &str, n: usize) -> Value {
    let v: Value =
        serde_json::from_str(include_str!("../fixtures/lorawan-vectors.json")).expect("vectors");
    v["vectors"]
        .as_array()
        .expect("vector list")
        .iter()
        .filter(|v| v["op"] == op)
        .nth(n)
        .expect("vector")
        .clone()
}

pub fn hx(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn phy(op: &str, n: usize) -> Vec<u8> {
    hx(vector(op, n)["output"]["phy_hex"]
        .as_str()
        .expect("phy_hex"))
}

fn key(s: &str) -> [u8; 16] {
    hx(s).try_into().expect("16 bytes")
}

/// An unconfirmed uplink of the vectors' ABP device: FCnt `fcnt`, a lamp status on FPort 2.
pub fn abp_uplink(fcnt: u32, dim: u8) -> Vec<u8> {
    let mut c = lorawan::creator::DataPayloadCreator::new();
    let addr = ABP_DEV_ADDR.to_le_bytes();
    c.set_uplink(true)
        .set_confirmed(false)
        .set_dev_addr(&addr)
        .set_fcnt(fcnt)
        .set_f_port(2);
    let nwk = lorawan::keys::NewSKey::from(key(ABP_NWK));
    let app = lorawan::keys::AppSKey::from(key(ABP_APP));
    let lamp = [0b001, dim, 0x02, 0x1c, 0, 0, 0x30, 0x39, 21];
    c.build(&lamp, &[], &nwk, &app).expect("uplink").to_vec()
}

/// The FRMPayload of a downlink to the ABP device (FPort and bytes), decrypted back.
pub fn abp_downlink_payload(phy: Vec<u8>, fcnt_down: u32) -> Vec<u8> {
    let lorawan::parser::PhyPayload::Data(lorawan::parser::DataPayload::Encrypted(enc)) =
        lorawan::parser::parse(phy).expect("LoRaWAN frame")
    else {
        panic!("not a data frame")
    };
    let nwk = lorawan::keys::AES128(key(ABP_NWK));
    let app = lorawan::keys::AES128(key(ABP_APP));
    assert!(
        enc.validate_mic(&nwk, fcnt_down),
        "MIC with FCntDown {fcnt_down}"
    );
    let dec = enc
        .decrypt(Some(&nwk), Some(&app), fcnt_down)
        .expect("decrypt")
        .to_inner();
    dec[8..dec.len() - 4].to_vec()
}

/// A packet forwarder: one socket for PUSH_DATA, one for PULL_DATA (as the real one).
pub struct Forwarder {
    pub push: UdpSocket,
    pub pull: UdpSocket,
    pub eui: [u8; 8],
}

impl Forwarder {
    /// A forwarder that has sent its first PULL_DATA and got the PULL_ACK.
    pub async fn start(port: u16, eui: [u8; 8]) -> Forwarder {
        let f = Forwarder::silent(port, eui).await;
        f.pull_data().await;
        f
    }

    /// A forwarder that has not sent any PULL_DATA yet.
    pub async fn silent(port: u16, eui: [u8; 8]) -> Forwarder {
        let push = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let pull = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        push.connect(("127.0.0.1", port)).await.expect("connect");
        pull.connect(("127.0.0.1", port)).await.expect("connect");
        Forwarder { push, pull, eui }
    }

    /// A PULL_DATA (keep-alive) and its PULL_ACK.
    pub async fn pull_data(&self) {
        self.pull
            .send(&semtech::pull_data(1, self.eui))
            .await
            .expect("send");
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(WAIT, self.pull.recv(&mut b))
            .await
            .expect("PULL_ACK in time")
            .expect("recv");
        assert_eq!(&b[..n], &semtech::ack(2, 1, semtech::PULL_ACK));
    }

    pub async fn uplink(&self, phy: &[u8], tmst: u32, rssi: i32, snr: f64) {
        self.send_uplink(phy, tmst, rssi, snr).await;
        self.push_ack().await;
    }

    pub async fn send_uplink(&self, phy: &[u8], tmst: u32, rssi: i32, snr: f64) {
        let rx = semtech::rxpk_of(phy, tmst, rssi, snr);
        self.push
            .send(&semtech::push_data(7, self.eui, &[rx]))
            .await
            .expect("send");
    }

    pub async fn push_ack(&self) {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(WAIT, self.push.recv(&mut b))
            .await
            .expect("PUSH_ACK in time")
            .expect("recv");
        assert_eq!(&b[..n], &semtech::ack(2, 7, semtech::PUSH_ACK));
    }

    /// The next PULL_RESP: (token, txpk).
    pub async fn downlink(&self) -> (u16, semtech::Txpk) {
        let mut b = vec![0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.pull.recv(&mut b))
            .await
            .expect("PULL_RESP")
            .expect("recv");
        assert_eq!(b[3], semtech::PULL_RESP);
        let v: Value = serde_json::from_slice(&b[4..n]).expect("PULL_RESP JSON");
        (
            u16::from_be_bytes([b[1], b[2]]),
            serde_json::from_value(v["txpk"].clone()).expect("txpk"),
        )
    }

    /// The TX_ACK for `token` from the pull socket (where the PULL_RESP came to).
    pub async fn tx_ack(&self, token: u16, error: Option<&str>) {
        self.pull
            .send(&semtech::tx_ack(token, self.eui, error))
            .await
            .expect("send");
    }
}

/// The Semtech UDP task alone: one ABP lamp (`lamp-abp`, the vectors' keys) on a real
/// queue in `dir`, its pipeline inputs and command inbox in the test's hands.
pub struct LoraRig {
    pub port: u16,
    pub queue: Queue,
    pub counters: Arc<Counters>,
    pub inputs: mpsc::Receiver<Input>,
    cmds: InboxSender,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl LoraRig {
    /// Starts on `port` (0: any) with the TX_ACK timeout `txack_timeout_ms` and the
    /// allow-list `gateway_euis`.
    pub async fn start(
        dir: &Path,
        port: u16,
        txack_timeout_ms: u64,
        gateway_euis: Option<Vec<[u8; 8]>>,
    ) -> LoraRig {
        Self::wired(dir, port, txack_timeout_ms, gateway_euis, None, 64).await
    }

    /// As [`start`](Self::start), beating `hb` and sending into a pipeline input of
    /// `capacity` inputs.
    pub async fn wired(
        dir: &Path,
        port: u16,
        txack_timeout_ms: u64,
        gateway_euis: Option<Vec<[u8; 8]>>,
        hb: Option<polegate::ops::notify::Heartbeat>,
        capacity: usize,
    ) -> LoraRig {
        let queue = Queue::open(&buffer_dir(dir), QueueOptions::default()).expect("queue");
        let sock = UdpSocket::bind(("127.0.0.1", port)).await.expect("bind");
        let port = sock.local_addr().expect("address").port();
        let cfg = LoraCfg {
            source: LoraSource::SemtechUdp,
            listen: sock.local_addr().expect("address"),
            region: "EU868".into(),
            net_id: [0, 0, 0x13],
            dev_addr_prefix: (0x2600_0000, 7),
            gateway_euis,
        };
        let profile = profile("generic-lamp-lora");
        let codec = LoraCodec::new(&polegate::script::Engine::new(), &profile);
        let device = LoraDevice {
            info: device_info("lamp-abp", "generic-lamp-lora"),
            cfg: LoraDeviceCfg {
                dev_eui: [0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x31],
                activation: Activation::Abp {
                    dev_addr: ABP_DEV_ADDR,
                    nwk_s_key: Key(key(ABP_NWK)),
                    app_s_key: Key(key(ABP_APP)),
                },
                offline_after_s: None,
            },
            codec,
        };
        let counters = Arc::new(Counters::default());
        let mut core = Core::new(
            &cfg,
            vec![device],
            Store::new(queue.kv("lora").expect("kv")),
            Some(queue.clone()),
            counters.clone(),
            std::time::Instant::now(),
        );
        core.txack_timeout_ms = txack_timeout_ms;
        let (itx, inputs) = mpsc::channel(capacity);
        let (cmds, crx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(polegate::southbound::lora::udp::run_udp(
            sock,
            core,
            polegate::southbound::Wiring {
                inbox: crx,
                out: itx,
                counters: counters.clone(),
                cancel: cancel.clone(),
                hb,
            },
        ));
        LoraRig {
            port,
            queue,
            counters,
            inputs,
            cmds,
            cancel,
            task,
        }
    }

    /// Stops the task and closes the queue (a clean stop).
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("LoRa task stopped in time")
            .expect("LoRa task");
        self.queue.flush().expect("flush");
    }

    /// A command writing `writes` ((point, value)) to the lamp; its first answer.
    pub async fn command(
        &self,
        id: &str,
        writes: &[(&str, PointValue)],
        expires_ms: Option<u64>,
    ) -> WriteOutcome {
        let p = profile("generic-lamp-lora");
        let writes = writes
            .iter()
            .map(|(n, v)| (p.point(n).expect("point").0, v.clone()))
            .collect();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.cmds
            .send(Box::new(WriteRequest {
                device: 0,
                writes,
                id: Some(id.into()),
                expires_ms,
                reply,
            }))
            .await
            .expect("LoRa task takes commands");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("answer in time")
            .expect("answer")
    }

    /// The next command result, skipping readings and state changes.
    pub async fn result(&mut self) -> CmdResult {
        loop {
            match tokio::time::timeout(WAIT, self.inputs.recv()).await {
                Ok(Some(Input::CmdResult(r))) => return r,
                Ok(Some(_)) => {}
                Ok(None) => panic!("LoRa task ended"),
                Err(_) => panic!("no command result in time"),
            }
        }
    }

    /// The next reading's dim level, skipping state changes.
    pub async fn reading(&mut self) -> PointValue {
        let dim = profile("generic-lamp-lora")
            .point("dim_level")
            .expect("dim_level")
            .0;
        loop {
            match tokio::time::timeout(WAIT, self.inputs.recv()).await {
                Ok(Some(Input::Reading { values, .. })) => {
                    return values
                        .into_iter()
                        .find(|(i, _)| *i == dim)
                        .map(|(_, v)| v)
                        .expect("dim_level in the reading");
                }
                Ok(Some(Input::CmdResult(r))) => panic!("unexpected result {r:?}"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("LoRa task ended"),
                Err(_) => panic!("no reading in time"),
            }
        }
    }
}

pub fn buffer_dir(dir: &Path) -> PathBuf {
    dir.join("buffer")
}
