//! The typed shape of `[lora]` and of a device's `lora = {…}` (SPEC §2).
//!
//! Identifiers and keys are written big-endian, as people write them (the radio frames
//! carry EUIs and DevAddr little-endian; `southbound::lora` converts). Keys are secrets:
//! errors never echo them and `Debug` redacts them.

use super::broker::{BrokerConn, RawConn, conn};
use super::ctx::Ctx;
use super::parse::parse_mqtt_url;
use super::values::{Checked, ListenAddr};
use crate::ops::tls::ClientFiles;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;

/// A 128-bit AES key; `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key(pub [u8; 16]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraCfg {
    pub source: LoraSource,
    /// Where the Semtech UDP packet forwarders send to.
    pub listen: SocketAddr,
    /// Only "EU868" for now.
    pub region: String,
    /// NetID, big-endian.
    pub net_id: [u8; 3],
    /// OTAA addresses: (prefix, prefix length in bits).
    pub dev_addr_prefix: (u32, u8),
    /// `gateway_euis`: the only packet forwarders heard (big-endian EUIs); None: any.
    pub gateway_euis: Option<Vec<[u8; 8]>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoraSource {
    SemtechUdp,
    Chirpstack(ChirpstackCfg),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChirpstackCfg {
    /// `url`, credentials and TLS files, exactly as `[mqtt]`.
    pub broker: BrokerConn,
    pub application_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraDeviceCfg {
    /// DevEUI, big-endian.
    pub dev_eui: [u8; 8],
    pub activation: Activation,
    /// Silence after which the device is offline (SPEC §8); None: from the profile.
    pub offline_after_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// DevAddr as written (big-endian value).
    Abp {
        dev_addr: u32,
        nwk_s_key: Key,
        app_s_key: Key,
    },
    Otaa {
        join_eui: [u8; 8],
        app_key: Key,
    },
    /// `source = "chirpstack"`: the network server holds the keys.
    External,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLora {
    source: Option<String>,
    listen: Option<Checked<ListenAddr>>,
    region: Option<String>,
    net_id: Option<String>,
    dev_addr_prefix: Option<String>,
    gateway_euis: Option<Vec<toml::Value>>,
    chirpstack: Option<RawChirpstack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChirpstack {
    url: String,
    application_id: String,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
}

pub(crate) fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `[lora]`, when present.
pub(super) fn gateway(cx: &mut Ctx<'_>, v: &toml::Value) -> Option<LoraCfg> {
    let raw: RawLora = cx.de(None, v.clone(), "lora")?;
    let mut ok = true;
    let listen = match raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 1700)),
        Some(l) => cx.valid(None, "lora.listen", Some(l)).map_or_else(
            || {
                ok = false;
                SocketAddr::from(([127, 0, 0, 1], 1700))
            },
            ListenAddr::get,
        ),
    };
    let region = raw.region.unwrap_or_else(|| "EU868".into());
    if region != "EU868" {
        cx.err(
            "lora.region",
            format!("'{region}' is not supported: only EU868"),
        );
        ok = false;
    }
    let net_id = match raw.net_id.as_deref().map(hex_bytes::<3>) {
        None => [0; 3],
        Some(Some(n)) => n,
        Some(None) => {
            let s = raw.net_id.as_deref().unwrap_or_default();
            cx.err("lora.net_id", super::parse::hex_problem(s, 6, false));
            ok = false;
            [0; 3]
        }
    };
    let dev_addr_prefix = match raw.dev_addr_prefix.as_deref() {
        None => (0x2600_0000, 7),
        Some(s) => match s.split_once('/').and_then(|(a, l)| {
            let a = u32::from_be_bytes(hex_bytes::<4>(a)?);
            let l: u8 = l.parse().ok().filter(|l| (1..=31).contains(l))?;
            Some((a & (u32::MAX << (32 - l)), l))
        }) {
            Some(p) => p,
            None => {
                cx.err(
                    "lora.dev_addr_prefix",
                    format!("'{s}' is not 8 hex digits '/' a length 1..=31, like 26000000/7"),
                );
                ok = false;
                (0, 0)
            }
        },
    };
    let gateway_euis = match &raw.gateway_euis {
        None => None,
        Some(list) => {
            let euis = gateway_euis(cx, list);
            ok &= euis.is_some();
            euis
        }
    };
    let source = match raw.source.as_deref().unwrap_or("semtech_udp") {
        _ if raw.gateway_euis.is_some() && raw.source.as_deref() == Some("chirpstack") => {
            cx.err(
                "lora.gateway_euis",
                "only used with source = \"semtech_udp\" (the network server picks the gateways)",
            );
            return None;
        }
        "semtech_udp" => {
            if raw.chirpstack.is_some() {
                cx.err("lora.chirpstack", "only used with source = \"chirpstack\"");
                ok = false;
            }
            LoraSource::SemtechUdp
        }
        "chirpstack" => match raw.chirpstack {
            None => {
                cx.err(
                    "lora.chirpstack",
                    "is required with source = \"chirpstack\": { url, application_id }",
                );
                return None;
            }
            Some(c) => chirpstack(cx, c)?,
        },
        other => {
            cx.err(
                "lora.source",
                format!("'{other}' is not semtech_udp or chirpstack"),
            );
            return None;
        }
    };
    ok.then_some(LoraCfg {
        source,
        listen,
        region,
        net_id,
        dev_addr_prefix,
        gateway_euis,
    })
}

/// `[lora] gateway_euis`: every entry 16 hex digits (big-endian, as printed on the
/// gateway), at least one; each bad entry reported with its index.
fn gateway_euis(cx: &mut Ctx<'_>, list: &[toml::Value]) -> Option<Vec<[u8; 8]>> {
    if list.is_empty() {
        cx.err(
            "lora.gateway_euis",
            "is empty, so no gateway would be heard: list at least one EUI, or remove the key to hear every gateway",
        );
        return None;
    }
    let mut ok = true;
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let key = format!("lora.gateway_euis[{i}]");
        match v.as_str() {
            Some(s) => match hex_bytes::<8>(s) {
                Some(e) => out.push(e),
                None => {
                    let why = super::parse::hex_problem(s, 16, false);
                    cx.err(
                        &key,
                        format!("{why} (a gateway EUI, like \"AA555A0000000000\")"),
                    );
                    ok = false;
                }
            },
            None => {
                cx.err(
                    &key,
                    format!(
                        "{v} is not a string: write the EUI as 16 hex digits in quotes, like \"AA555A0000000000\""
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn chirpstack(cx: &mut Ctx<'_>, c: RawChirpstack) -> Option<LoraSource> {
    let Some(parsed) = parse_mqtt_url(&c.url) else {
        cx.err(
            "lora.chirpstack.url",
            format!(
                "'{}' is not mqtt://host[:port] or mqtts://host[:port]",
                super::parse::without_password(&c.url)
            ),
        );
        return None;
    };
    let raw = RawConn {
        username: c.username,
        password: c.password,
        password_file: c.password_file,
        ca_file: c.ca_file,
        cert_file: c.cert_file,
        key_file: c.key_file,
    };
    let broker = conn(cx, "lora.chirpstack", c.url, Some(parsed), raw);
    Some(LoraSource::Chirpstack(ChirpstackCfg {
        broker,
        application_id: c.application_id,
    }))
}

impl ChirpstackCfg {
    /// What `ops::tls::client_config` reads for an `mqtts://` network server.
    pub fn tls_files(&self) -> ClientFiles<'_> {
        self.broker.tls_files("lora.chirpstack")
    }
}

#[cfg(test)]
mod tests {
    //! `[lora]` and `lora = {…}` get a typed shape; problems name file and key path.
    use super::*;
    use crate::config::load_with_env;

    const HEAD: &str = "[gateway]\nid = \"g\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n";

    fn load(body: &str) -> Result<crate::config::Config, Vec<(String, String)>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("polegate.toml");
        std::fs::write(&p, format!("{HEAD}{body}")).unwrap();
        load_with_env(&p, &[]).map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
    }

    #[test]
    fn lora_sections_and_devices_parse_into_typed_values() {
        let cfg = load(
            "[lora]\nlisten = \"0.0.0.0:1700\"\nnet_id = \"000013\"\ndev_addr_prefix = \"26000000/7\"\n\
             [[device]]\nid = \"a\"\nprofile = \"p\"\nlora = { dev_eui = \"0004a30b001c0530\", activation = \"abp\", dev_addr = \"26011bda\", nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\", offline_after_s = 60 }\n\
             [[device]]\nid = \"b\"\nprofile = \"p\"\nlora = { dev_eui = \"0004a30b001c0531\", activation = \"otaa\", join_eui = \"70b3d57ed0000001\", app_key = \"2b7e151628aed2a6abf7158809cf4f3c\" }\n",
        )
        .expect("valid");
        let l = cfg.lora.unwrap();
        assert_eq!(l.listen, "0.0.0.0:1700".parse().unwrap());
        assert_eq!(
            (l.net_id, l.dev_addr_prefix),
            ([0, 0, 0x13], (0x2600_0000, 7))
        );
        let crate::config::Transport::Lora(a) = &cfg.devices[0].transport else {
            panic!()
        };
        assert!(matches!(
            a.activation,
            Activation::Abp {
                dev_addr: 0x2601_1bda,
                ..
            }
        ));
        assert_eq!(a.offline_after_s, Some(60));
        let crate::config::Transport::Lora(b) = &cfg.devices[1].transport else {
            panic!()
        };
        assert!(matches!(b.activation, Activation::Otaa { .. }));
        assert!(
            !format!("{b:?}").contains("2b7e15"),
            "keys are redacted in Debug"
        );
    }

    #[test]
    fn bad_lora_settings_name_their_key() {
        let e = load("[lora]\nregion = \"US915\"\ndev_addr_prefix = \"26/7\"\nsource = \"semtech_udp\"\nlistn = 1\n")
            .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"lora.listn"), "{e:?}");
        let e = load("[lora]\nregion = \"US915\"\ndev_addr_prefix = \"26/7\"\n").unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["lora.region", "lora.dev_addr_prefix"]);
        let e = load("[lora]\nsource = \"chirpstack\"\n").unwrap_err();
        assert_eq!(e[0].0, "lora.chirpstack");
        let e = load(
            "[[device]]\nid = \"a\"\nprofile = \"p\"\nlora = { dev_eui = \"0004a30b001c0530\", activation = \"abp\", dev_addr = \"26011bda\" }\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["device[0].lora.nwk_s_key", "device[0].lora.app_s_key"]
        );
    }

    #[test]
    fn a_chirpstack_source_takes_mqtts_with_the_same_tls_files_as_mqtt() {
        let cs = |conn: &str| {
            format!(
                "[lora]\nsource = \"chirpstack\"\nchirpstack = {{ {conn}, application_id = \"a\" }}\n"
            )
        };
        let cfg = load(&cs(
            "url = \"mqtts://ns.city:8883\", ca_file = \"ca.pem\", cert_file = \"/etc/c.pem\", key_file = \"/etc/c.key\"",
        ))
        .expect("valid");
        let Some(LoraCfg {
            source: LoraSource::Chirpstack(c),
            ..
        }) = cfg.lora
        else {
            panic!("a chirpstack source")
        };
        assert!(c.broker.tls);
        assert_eq!((c.broker.host.as_str(), c.broker.port), ("ns.city", 8883));
        assert!(
            c.broker.ca_file.unwrap().ends_with("ca.pem"),
            "resolved beside the file"
        );
        assert_eq!(
            c.broker.key_file.as_deref(),
            Some(std::path::Path::new("/etc/c.key"))
        );
        let e = load(&cs("url = \"mqtt://ns.city\", ca_file = \"ca.pem\"")).unwrap_err();
        assert_eq!(e[0].0, "lora.chirpstack.ca_file");
        assert!(e[0].1.contains("mqtts://"), "{e:?}");
        let e = load(&cs("url = \"mqtts://ns.city\", cert_file = \"c.pem\"")).unwrap_err();
        assert_eq!(e[0].0, "lora.chirpstack.cert_file");
        assert!(e[0].1.contains("needs key_file"), "{e:?}");
        let e = load(&cs("url = \"http://ns.city\"")).unwrap_err();
        assert!(e[0].1.contains("mqtts://host"), "{e:?}");
    }
}
