//! A simulated LoRaWAN street lamp behind a simulated Semtech packet forwarder, for
//! `polegate demo`: the lamp (ABP) sends its status every few seconds on FPort 2, the
//! forwarder relays it by PUSH_DATA, keeps a PULL_DATA downstream path open, applies
//! downlinks it receives (decrypting them with the lamp's keys) and answers TX_ACK.

use crate::southbound::lora::semtech;
use std::path::Path;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub const DEVICE_ID: &str = "lamp-lora-07";
const DEV_ADDR: u32 = 0x2601_1bda;
const NWK: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const APP: [u8; 16] = [
    0xf0, 0xe0, 0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80, 0x70, 0x60, 0x50, 0x40, 0x30, 0x20, 0x10, 0,
];
const GATEWAY: [u8; 8] = [0xb8, 0x27, 0xeb, 0xff, 0xfe, 0, 0, 7];
/// Seconds between the simulated lamp's uplinks.
pub const UPLINK_EVERY: Duration = Duration::from_secs(5);

/// Writes the LoRa profile, its script and the `[lora]` + device config beside `config`;
/// returns the UDP port the daemon will listen on.
pub fn prepare(config: &Path, dir: &Path) -> std::io::Result<u16> {
    let plugins = dir.join("plugins");
    std::fs::write(
        plugins.join("generic-lamp-lora.toml"),
        include_str!("../../plugins/generic/generic-lamp-lora.toml"),
    )?;
    std::fs::write(
        plugins.join("generic-lamp-lora.rhai"),
        include_str!("../../plugins/generic/generic-lamp-lora.rhai"),
    )?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let text = format!(
        "\n[lora]\nlisten = \"127.0.0.1:{port}\"\n\n[[device]]\nid = \"{DEVICE_ID}\"\nprofile = \"generic-lamp-lora\"\n\
         meta = {{ pole = \"P-021\", street = \"Place Darcy\" }}\n\
         lora = {{ dev_eui = \"0004a30b001c0531\", activation = \"abp\", dev_addr = \"{DEV_ADDR:08x}\", nwk_s_key = \"{}\", app_s_key = \"{}\" }}\n",
        hex(&NWK),
        hex(&APP)
    );
    super::append_config(config, &text)?;
    Ok(port)
}

struct Lamp {
    fcnt: u32,
    dim: u8,
    on: bool,
    energy: u32,
}

impl Lamp {
    fn uplink(&mut self) -> Vec<u8> {
        self.fcnt += 1;
        self.energy += u32::from(self.dim) / 10 + 1;
        let power = if self.on { u16::from(self.dim) * 6 } else { 0 };
        let p = power.to_be_bytes();
        let e = self.energy.to_be_bytes();
        let payload = [
            u8::from(self.on),
            self.dim,
            p[0],
            p[1],
            e[0],
            e[1],
            e[2],
            e[3],
            24,
        ];
        let mut c = lorawan::creator::DataPayloadCreator::new();
        c.set_uplink(true)
            .set_confirmed(false)
            .set_dev_addr(&DEV_ADDR.to_le_bytes())
            .set_fcnt(self.fcnt)
            .set_f_port(2);
        c.build(
            &payload,
            &[],
            &lorawan::keys::NewSKey::from(NWK),
            &lorawan::keys::AppSKey::from(APP),
        )
        .map(|b| b.to_vec())
        .unwrap_or_default()
    }

    /// Applies a downlink addressed to the lamp (FPort 10: [1, dim] or [2, on]).
    fn downlink(&mut self, phy: Vec<u8>, fcnt_down: u32) {
        let Ok(lorawan::parser::PhyPayload::Data(lorawan::parser::DataPayload::Encrypted(e))) =
            lorawan::parser::parse(phy)
        else {
            return;
        };
        let nwk = lorawan::keys::AES128(NWK);
        if !e.validate_mic(&nwk, fcnt_down) {
            return;
        }
        let Ok(d) = e.decrypt(Some(&nwk), Some(&lorawan::keys::AES128(APP)), fcnt_down) else {
            return;
        };
        let d = d.to_inner();
        if d.len() >= 15 && d[8] == 10 {
            match d[9] {
                1 => self.dim = d[10].min(100),
                2 => self.on = d[10] != 0,
                _ => {}
            }
        }
    }
}

/// Runs the simulated lamp and forwarder until `cancel`.
pub async fn forwarder(port: u16, cancel: CancellationToken) {
    let (Ok(push), Ok(pull)) = (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) else {
        return;
    };
    let server = ("127.0.0.1", port);
    let mut lamp = Lamp {
        fcnt: 0,
        dim: 70,
        on: true,
        energy: 1000,
    };
    let mut fcnt_down = 0u32;
    let mut keepalive = tokio::time::interval(Duration::from_secs(10));
    let mut up = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(2),
        UPLINK_EVERY,
    );
    let t0 = tokio::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = keepalive.tick() => {
                let _ = pull.send_to(&semtech::pull_data(fastrand::u16(..), GATEWAY), server).await;
            }
            _ = up.tick() => {
                let phy = lamp.uplink();
                let tmst = t0.elapsed().as_micros() as u32;
                let rssi = -95 + fastrand::i32(-6..6);
                let snr = 5.0 + f64::from(fastrand::i8(-20..20)) / 10.0;
                let rx = semtech::rxpk_of(&phy, tmst, rssi, snr);
                let _ = push.send_to(&semtech::push_data(fastrand::u16(..), GATEWAY, &[rx]), server).await;
            }
            r = push.recv(&mut scratch) => { let _ = r; }
            r = pull.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                if n > 4 && buf[3] == semtech::PULL_RESP {
                    let token = u16::from_be_bytes([buf[1], buf[2]]);
                    let txpk = serde_json::from_slice::<serde_json::Value>(&buf[4..n])
                        .ok()
                        .and_then(|v| serde_json::from_value::<semtech::Txpk>(v["txpk"].clone()).ok());
                    if let Some(phy) = txpk.and_then(|t| t.phy()) {
                        lamp.downlink(phy, fcnt_down);
                        fcnt_down += 1;
                    }
                    let _ = pull.send_to(&semtech::tx_ack(token, GATEWAY, None), server).await;
                }
            }
        }
    }
}
