//! Semtech UDP packet-forwarder protocol, version 2 (pure codec, no sockets).
//!
//! Every datagram starts with a 4-byte header: protocol version, a 2-byte random token
//! and the packet type; upstream packets then carry the gateway's 8-byte EUI, and
//! PUSH_DATA / PULL_RESP / TX_ACK a JSON body. Anything that does not parse is an error
//! value, never a panic: the socket is open to whatever reaches it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

pub const PUSH_DATA: u8 = 0x00;
pub const PUSH_ACK: u8 = 0x01;
pub const PULL_DATA: u8 = 0x02;
pub const PULL_RESP: u8 = 0x03;
pub const PULL_ACK: u8 = 0x04;
pub const TX_ACK: u8 = 0x05;

/// Largest LoRaWAN PHYPayload accepted from a forwarder.
pub const MAX_PHY_LEN: usize = 255;

/// One received LoRa frame as reported by a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rxpk {
    /// Concentrator timestamp, µs (wraps every ~71 min).
    #[serde(default)]
    pub tmst: u32,
    /// MHz.
    #[serde(default)]
    pub freq: f64,
    #[serde(default)]
    pub chan: u8,
    #[serde(default)]
    pub rfch: u8,
    /// CRC status: 1 ok, -1 bad, 0 none.
    #[serde(default = "one")]
    pub stat: i8,
    #[serde(default)]
    pub modu: String,
    /// e.g. "SF7BW125".
    #[serde(default)]
    pub datr: serde_json::Value,
    #[serde(default)]
    pub codr: Option<String>,
    #[serde(default)]
    pub rssi: i32,
    #[serde(default)]
    pub lsnr: f64,
    #[serde(default)]
    pub size: u32,
    pub data: String,
}

fn one() -> i8 {
    1
}

/// A frame to transmit (PULL_RESP body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Txpk {
    pub imme: bool,
    pub tmst: u32,
    pub freq: f64,
    pub rfch: u8,
    pub powe: i8,
    pub modu: String,
    pub datr: String,
    pub codr: String,
    pub ipol: bool,
    pub size: u32,
    pub data: String,
    pub ncrc: bool,
}

impl Txpk {
    /// The PHYPayload it carries.
    pub fn phy(&self) -> Option<Vec<u8>> {
        B64.decode(&self.data).ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    PushData {
        token: u16,
        gateway: [u8; 8],
        rxpk: Vec<Rxpk>,
    },
    PullData {
        token: u16,
        gateway: [u8; 8],
    },
    TxAck {
        token: u16,
        gateway: [u8; 8],
        /// None or "NONE": accepted; else the forwarder's error code (TOO_LATE, ...).
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SemtechError {
    #[error("datagram of {0} bytes is too short")]
    Short(usize),
    #[error("protocol version {0} is not 1 or 2")]
    Version(u8),
    #[error("packet type {0:#04x} is not expected from a gateway")]
    Type(u8),
    #[error("bad JSON: {0}")]
    Json(String),
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(default)]
    rxpk: Vec<Rxpk>,
}

#[derive(Deserialize)]
struct TxAckBody {
    txpk_ack: Option<TxAckInner>,
}

#[derive(Deserialize)]
struct TxAckInner {
    error: Option<String>,
}

fn eui(d: &[u8]) -> Result<[u8; 8], SemtechError> {
    d.get(4..12)
        .and_then(|s| s.try_into().ok())
        .ok_or(SemtechError::Short(d.len()))
}

/// Parses a datagram from a packet forwarder.
pub fn parse(d: &[u8]) -> Result<Packet, SemtechError> {
    if d.len() < 4 {
        return Err(SemtechError::Short(d.len()));
    }
    if !matches!(d[0], 1 | 2) {
        return Err(SemtechError::Version(d[0]));
    }
    let token = u16::from_be_bytes([d[1], d[2]]);
    match d[3] {
        PUSH_DATA => {
            let gateway = eui(d)?;
            let body: PushBody =
                serde_json::from_slice(&d[12..]).map_err(|e| SemtechError::Json(e.to_string()))?;
            Ok(Packet::PushData {
                token,
                gateway,
                rxpk: body.rxpk,
            })
        }
        PULL_DATA => Ok(Packet::PullData {
            token,
            gateway: eui(d)?,
        }),
        TX_ACK => {
            let gateway = eui(d)?;
            let body = &d[12..];
            let error = if body.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                None
            } else {
                let b: TxAckBody =
                    serde_json::from_slice(body).map_err(|e| SemtechError::Json(e.to_string()))?;
                b.txpk_ack.and_then(|a| a.error).filter(|e| e != "NONE")
            };
            Ok(Packet::TxAck {
                token,
                gateway,
                error,
            })
        }
        t => Err(SemtechError::Type(t)),
    }
}

/// PUSH_ACK or PULL_ACK for `token`.
pub fn ack(version: u8, token: u16, kind: u8) -> [u8; 4] {
    let t = token.to_be_bytes();
    [version, t[0], t[1], kind]
}

/// A PULL_RESP carrying `txpk`.
pub fn pull_resp(token: u16, txpk: &Txpk) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![2, t[0], t[1], PULL_RESP];
    let body = serde_json::json!({ "txpk": txpk });
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

/// Decodes the base64 PHYPayload of an `rxpk`.
pub fn rx_phy(rx: &Rxpk) -> Option<Vec<u8>> {
    let v = B64.decode(rx.data.as_bytes()).ok()?;
    (!v.is_empty() && v.len() <= MAX_PHY_LEN).then_some(v)
}

pub fn b64(d: &[u8]) -> String {
    B64.encode(d)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.as_bytes()).ok()
}

/// Builds a PUSH_DATA datagram (for tests, the demo forwarder and benchmarks).
pub fn push_data(token: u16, gateway: [u8; 8], rxpk: &[Rxpk]) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![2, t[0], t[1], PUSH_DATA];
    out.extend_from_slice(&gateway);
    out.extend_from_slice(serde_json::json!({ "rxpk": rxpk }).to_string().as_bytes());
    out
}

/// Builds a PULL_DATA datagram.
pub fn pull_data(token: u16, gateway: [u8; 8]) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![2, t[0], t[1], PULL_DATA];
    out.extend_from_slice(&gateway);
    out
}

/// Builds a TX_ACK datagram; `error` None means success.
pub fn tx_ack(token: u16, gateway: [u8; 8], error: Option<&str>) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![2, t[0], t[1], TX_ACK];
    out.extend_from_slice(&gateway);
    let body = serde_json::json!({ "txpk_ack": { "error": error.unwrap_or("NONE") } });
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

/// A typical EU868 SF7 reception of `phy` (tests, demo, benchmarks).
pub fn rxpk_of(phy: &[u8], tmst: u32, rssi: i32, lsnr: f64) -> Rxpk {
    Rxpk {
        tmst,
        freq: 868.1,
        chan: 0,
        rfch: 0,
        stat: 1,
        modu: "LORA".into(),
        datr: serde_json::Value::String("SF7BW125".into()),
        codr: Some("4/5".into()),
        rssi,
        lsnr,
        size: phy.len() as u32,
        data: b64(phy),
    }
}

#[cfg(test)]
mod tests {
    //! The codec round-trips and refuses garbage without panicking.
    use super::*;

    #[test]
    fn push_data_from_a_forwarder_is_parsed_with_its_rxpk() {
        let raw = br#"{"rxpk":[{"tmst":3512348611,"chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,"data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"}]}"#;
        let mut d = vec![2, 0x12, 0x34, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        d.extend_from_slice(raw);
        let Packet::PushData {
            token,
            gateway,
            rxpk,
        } = parse(&d).unwrap()
        else {
            panic!("not push data")
        };
        assert_eq!(token, 0x1234);
        assert_eq!(gateway, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(rxpk[0].rssi, -35);
        assert_eq!(rxpk[0].tmst, 3512348611);
    }

    #[test]
    fn pull_data_and_tx_ack_are_parsed_and_acks_echo_the_token() {
        let g = [9; 8];
        assert_eq!(
            parse(&pull_data(7, g)).unwrap(),
            Packet::PullData {
                token: 7,
                gateway: g
            }
        );
        assert_eq!(
            parse(&tx_ack(8, g, Some("TOO_LATE"))).unwrap(),
            Packet::TxAck {
                token: 8,
                gateway: g,
                error: Some("TOO_LATE".into())
            }
        );
        assert_eq!(
            parse(&tx_ack(8, g, None)).unwrap(),
            Packet::TxAck {
                token: 8,
                gateway: g,
                error: None
            }
        );
        assert_eq!(ack(2, 0xabcd, PUSH_ACK), [2, 0xab, 0xcd, 1]);
    }

    #[test]
    fn garbage_datagrams_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[2, 0, 0]).is_err());
        assert!(parse(&[7, 0, 0, 0]).is_err());
        assert!(parse(&[2, 0, 0, 0, 1, 2]).is_err());
        assert!(parse(&[2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'{']).is_err());
        assert!(parse(&[2, 0, 0, 9]).is_err());
    }
}
