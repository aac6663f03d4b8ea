//! A device's `lora = {...}` (SPEC §2): DevEUI, ABP or OTAA with its keys, each checked
//! with its key path; keys are secrets and never echoed.

use super::ctx::{Ctx, join_key};
use super::lora::{Activation, Key, LoraDeviceCfg, hex_bytes};
use super::values::{Checked, Period, Seconds};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    dev_eui: Option<toml::Value>,
    activation: Option<String>,
    dev_addr: Option<toml::Value>,
    nwk_s_key: Option<toml::Value>,
    app_s_key: Option<toml::Value>,
    join_eui: Option<toml::Value>,
    app_eui: Option<toml::Value>,
    app_key: Option<toml::Value>,
    offline_after_s: Option<Checked<Seconds<1>>>,
}

/// A device's `lora = {…}` at `key` in `file`.
pub(super) fn device(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    t: toml::Table,
) -> Option<LoraDeviceCfg> {
    let raw: RawDevice = cx.de(Some(file), toml::Value::Table(t), key)?;
    let mut ok = true;
    let mut hex = |cx: &mut Ctx<'_>, field: &str, v: &Option<toml::Value>, n: usize| {
        let fkey = join_key(key, field);
        let v = v.as_ref()?;
        let Some(s) = v.as_str() else {
            let m = format!("must be a string of {n} hex digits, got {}", v.type_str());
            cx.at(file, &fkey, m);
            ok = false;
            return None;
        };
        if s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(s.to_string());
        }
        ok = false;
        let msg = super::parse::hex_problem(s, n, field.ends_with("_key"));
        cx.at(file, &fkey, msg);
        None
    };
    let dev_eui = hex(cx, "dev_eui", &raw.dev_eui, 16);
    let dev_addr = hex(cx, "dev_addr", &raw.dev_addr, 8);
    let nwk_s_key = hex(cx, "nwk_s_key", &raw.nwk_s_key, 32);
    let app_s_key = hex(cx, "app_s_key", &raw.app_s_key, 32);
    let join_eui = hex(cx, "join_eui", &raw.join_eui, 16);
    let app_eui = hex(cx, "app_eui", &raw.app_eui, 16);
    let app_key = hex(cx, "app_key", &raw.app_key, 32);
    if raw.dev_eui.is_none() {
        cx.at(
            file,
            &join_key(key, "dev_eui"),
            "is required: the device's DevEUI, 16 hex digits",
        );
        ok = false;
    }
    let offline_after_s = match raw.offline_after_s {
        None => None,
        Some(v) => {
            let k = join_key(key, "offline_after_s");
            let s = cx.valid(Some(file), &k, Some(v));
            ok &= s.is_some();
            Some(s.map_or(1, Period::get))
        }
    };
    if !ok {
        // One problem per field: no "is required" after a bad value.
        return None;
    }
    let b16 = |s: &Option<String>| s.as_deref().and_then(hex_bytes::<16>).map(Key);
    let b8 = |s: &Option<String>| s.as_deref().and_then(hex_bytes::<8>);
    let activation = match raw.activation.as_deref() {
        None if raw.dev_addr.is_none() && raw.app_key.is_none() => Activation::External,
        Some("abp") | None if raw.dev_addr.is_some() => {
            let mut need = |field: &str, present: bool| {
                if !present {
                    let k = join_key(key, field);
                    cx.at(file, &k, "is required for ABP: 32 hex digits");
                }
                present
            };
            let n = need("nwk_s_key", raw.nwk_s_key.is_some());
            let a = need("app_s_key", raw.app_s_key.is_some());
            match (
                dev_addr.as_deref().and_then(hex_bytes::<4>),
                b16(&nwk_s_key),
                b16(&app_s_key),
            ) {
                (Some(d), Some(n), Some(a)) => Activation::Abp {
                    dev_addr: u32::from_be_bytes(d),
                    nwk_s_key: n,
                    app_s_key: a,
                },
                _ => {
                    let _ = (n, a);
                    return None;
                }
            }
        }
        Some("abp") => {
            cx.at(
                file,
                &join_key(key, "dev_addr"),
                "is required for ABP: 8 hex digits",
            );
            return None;
        }
        Some("otaa") | None => {
            if raw.app_key.is_none() {
                cx.at(
                    file,
                    &join_key(key, "app_key"),
                    "is required for OTAA: 32 hex digits",
                );
                return None;
            }
            let je = b8(&join_eui).or(b8(&app_eui)).unwrap_or([0; 8]);
            match b16(&app_key) {
                Some(k) => Activation::Otaa {
                    join_eui: je,
                    app_key: k,
                },
                None => return None,
            }
        }
        Some(other) => {
            cx.at(
                file,
                &join_key(key, "activation"),
                format!("'{other}' is not abp or otaa"),
            );
            return None;
        }
    };
    for (field, v) in [
        ("nwk_s_key", &raw.nwk_s_key),
        ("app_s_key", &raw.app_s_key),
        ("app_key", &raw.app_key),
    ] {
        if v.is_some() {
            cx.secret(&join_key(key, field), file);
        }
    }
    let dev_eui = b8(&dev_eui)?;
    let source = match cx.merged.table.get("lora") {
        None => {
            cx.at(
                file,
                key,
                "a LoRa device needs a [lora] section (source, listen)",
            );
            return None;
        }
        Some(t) => t
            .get("source")
            .and_then(|s| s.as_str())
            .unwrap_or("semtech_udp"),
    };
    match (&activation, source) {
        (Activation::External, "semtech_udp") => {
            let msg = "with lora.source = \"semtech_udp\" set activation keys: dev_addr, nwk_s_key and app_s_key (ABP) or app_key (OTAA)";
            cx.at(file, key, msg);
            return None;
        }
        (Activation::Abp { .. } | Activation::Otaa { .. }, "chirpstack") => {
            let msg = "with lora.source = \"chirpstack\" the network server holds the keys: keep only dev_eui";
            cx.at(file, key, msg);
            return None;
        }
        _ => {}
    }
    ok.then_some(LoraDeviceCfg {
        dev_eui,
        activation,
        offline_after_s,
    })
}
