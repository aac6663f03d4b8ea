//! Validation of the `[[bus]]` and `[[device]]` entries. Key paths are 0-based indexes
//! into the merged lists (main file first, then conf.d in name order); each error names
//! the file that declared the entry. A duplicate id is reported at its second occurrence.

use super::ctx::{Ctx, Origin};
use super::parse::check_id;
use super::transports::{RawModbus, RawSerial};
use super::values::{Checked, Int, Millis, OneOf, Period, Seconds};
use super::{BusCfg, BusIndex, BusKind, DeviceCfg, Parity, Transport, bus_kind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBus {
    id: Option<String>,
    kind: Option<String>,
    port: Option<String>,
    baud: Option<Checked<Int<50, 4_000_000>>>,
    parity: Option<String>,
    data_bits: Option<Checked<OneOf<7, 8>>>,
    stop_bits: Option<Checked<OneOf<1, 2>>>,
    timeout_ms: Option<Checked<Millis<1>>>,
    retries: Option<Checked<Int<0, 100>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Option<String>,
    profile: Option<String>,
    enabled: Option<bool>,
    poll_ms: Option<Checked<Millis<10>>>,
    heartbeat_s: Option<Checked<Seconds<1>>>,
    /// LoRa devices: offline after this long without an uplink (SPEC §8, device key).
    offline_after_s: Option<Checked<Seconds<1>>>,
    meta: Option<toml::Table>,
    modbus: Option<RawModbus>,
    serial: Option<RawSerial>,
    lora: Option<toml::Table>,
    ocpp: Option<toml::Table>,
    snmp: Option<toml::Table>,
    reach: Option<toml::Table>,
}

/// Reports a duplicate id at its second occurrence; returns false then.
fn first_use(
    cx: &mut Ctx<'_>,
    seen: &mut BTreeMap<String, (usize, PathBuf)>,
    what: &str,
    i: usize,
    id: &str,
    file: &Path,
) -> bool {
    if let Some((j, first_file)) = seen.get(id) {
        let msg = format!(
            "duplicate id '{id}': already used by {what}[{j}] in {}",
            first_file.display()
        );
        cx.at(file, &format!("{what}[{i}].id"), msg);
        return false;
    }
    seen.insert(id.to_string(), (i, file.to_path_buf()));
    true
}

/// The `id` of a `[[bus]]` or `[[device]]` entry, checked; reported when missing.
fn entry_id(cx: &mut Ctx<'_>, file: &Path, key: &str, id: Option<String>, example: &str) -> String {
    match id {
        Some(id) => {
            if let Err(m) = check_id(&id) {
                cx.at(file, &format!("{key}.id"), m);
            }
            id
        }
        None => {
            cx.at(
                file,
                &format!("{key}.id"),
                format!("is required, e.g. id = \"{example}\""),
            );
            String::new()
        }
    }
}

pub(super) fn buses(
    cx: &mut Ctx<'_>,
    raw: &[(toml::Value, Origin)],
    snmp_agents: &mut BTreeMap<String, super::snmp::SnmpAgentCfg>,
) -> (Vec<BusCfg>, BusIndex) {
    let mut out = Vec::new();
    let mut index = BusIndex::new();
    let mut seen = BTreeMap::new();
    for (i, (v, origin)) in raw.iter().enumerate() {
        let key = format!("bus[{i}]");
        let file = origin.file.as_path();
        if let Some(id) = v.get("id").and_then(|x| x.as_str())
            && first_use(cx, &mut seen, "bus", i, id, file)
        {
            let kind = v.get("kind").and_then(|k| k.as_str()).and_then(bus_kind);
            index.insert(id.to_string(), kind);
        }
        if !v.is_table() {
            cx.at(file, &key, "must be a table, written [[bus]]");
            continue;
        }
        if v.get("kind").and_then(|k| k.as_str()) == Some("snmp") {
            let id = v.get("id").and_then(|x| x.as_str()).map(String::from);
            let id = entry_id(cx, file, &key, id, "poe-sw-1");
            if let Some((b, agent)) = super::snmp::bus(cx, file, &key, id, v) {
                snmp_agents.insert(b.id.clone(), agent);
                out.push(b);
            }
            continue;
        }
        let Some(b) = cx.de::<RawBus>(Some(file), v.clone(), &key) else {
            continue;
        };
        let id = entry_id(cx, file, &key, b.id, "rs485-1");
        let kind = match b.kind.as_deref() {
            None => {
                cx.at(
                    file,
                    &format!("{key}.kind"),
                    "is required: modbus_rtu, modbus_ascii, serial or snmp",
                );
                BusKind::ModbusRtu
            }
            Some(s) => bus_kind(s).unwrap_or_else(|| {
                let m = format!(
                    "'{s}' is not a bus kind: expected modbus_rtu, modbus_ascii, serial or snmp"
                );
                cx.at(file, &format!("{key}.kind"), m);
                BusKind::ModbusRtu
            }),
        };
        let port = match b.port {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            Some(_) => {
                cx.at(file, &format!("{key}.port"), "must not be empty");
                PathBuf::new()
            }
            None => {
                cx.at(
                    file,
                    &format!("{key}.port"),
                    "is required: the serial device, e.g. port = \"/dev/ttyS1\"",
                );
                PathBuf::new()
            }
        };
        let parity = match b.parity.as_deref() {
            None if kind == BusKind::Serial => Parity::None,
            None | Some("even") => Parity::Even,
            Some("none") => Parity::None,
            Some("odd") => Parity::Odd,
            Some(s) => {
                let m = format!("'{s}' is not a parity: expected none, even or odd");
                cx.at(file, &format!("{key}.parity"), m);
                Parity::None
            }
        };
        let k = |name: &str| format!("{key}.{name}");
        let baud = cx
            .valid(Some(file), &k("baud"), b.baud)
            .map_or(9600, |v| v.get() as u32);
        let data_bits = cx
            .valid(Some(file), &k("data_bits"), b.data_bits)
            .map_or(8, |v| v.get() as u8);
        let stop_bits = cx
            .valid(Some(file), &k("stop_bits"), b.stop_bits)
            .map_or(1, |v| v.get() as u8);
        let timeout_ms = cx
            .valid(Some(file), &k("timeout_ms"), b.timeout_ms)
            .map_or(500, Period::get);
        let retries = cx
            .valid(Some(file), &k("retries"), b.retries)
            .map_or(1, |v| v.get() as u32);
        out.push(BusCfg {
            id,
            kind,
            port,
            baud,
            parity,
            data_bits,
            stop_bits,
            timeout_ms,
            retries,
            origin: format!("{}: {key}", file.display()),
        });
    }
    (out, index)
}

pub(super) fn devices(
    cx: &mut Ctx<'_>,
    raw: &[(toml::Value, Origin)],
    buses: &BusIndex,
) -> Vec<DeviceCfg> {
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, (v, origin)) in raw.iter().enumerate() {
        let key = format!("device[{i}]");
        let file = origin.file.as_path();
        if let Some(id) = v.get("id").and_then(|x| x.as_str()) {
            first_use(cx, &mut seen, "device", i, id, file);
        }
        if !v.is_table() {
            cx.at(file, &key, "must be a table, written [[device]]");
            continue;
        }
        let Some(d) = cx.de::<RawDevice>(Some(file), v.clone(), &key) else {
            continue;
        };
        let id = entry_id(cx, file, &key, d.id, "lamp-017");
        let profile = match d.profile {
            Some(p) if !p.is_empty() => p,
            _ => {
                let m = "is required: a profile name from plugins_dirs, e.g. profile = \"generic-lamp-modbus\"";
                cx.at(file, &format!("{key}.profile"), m);
                String::new()
            }
        };
        let poll_ms = d.poll_ms.map(|p| {
            cx.valid(Some(file), &format!("{key}.poll_ms"), Some(p))
                .map_or(10_000, Period::get)
        });
        let heartbeat_s = cx
            .valid(Some(file), &format!("{key}.heartbeat_s"), d.heartbeat_s)
            .map_or(300, Period::get);
        let meta = meta(cx, file, &format!("{key}.meta"), d.meta.unwrap_or_default());
        let offline_after_s = d
            .offline_after_s
            .map(|v| cx.valid(Some(file), &format!("{key}.offline_after_s"), Some(v)));
        if offline_after_s.is_some() && d.lora.is_none() {
            cx.at(
                file,
                &format!("{key}.offline_after_s"),
                "applies to LoRa devices only (polled devices go offline after 3 failed polls)",
            );
        }
        let present: Vec<&str> = [
            ("modbus", d.modbus.is_some()),
            ("serial", d.serial.is_some()),
            ("lora", d.lora.is_some()),
            ("ocpp", d.ocpp.is_some()),
            ("snmp", d.snmp.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| *n)
        .collect();
        let transport = match present.as_slice() {
            // A transport with the wrong type was reported already.
            [] if ["modbus", "serial", "lora", "ocpp", "snmp"]
                .iter()
                .any(|t| cx.shaped.contains(&format!("{key}.{t}"))) =>
            {
                None
            }
            [] if d.reach.is_some() => Some(Transport::Reach),
            [] => {
                cx.at(
                    file,
                    &key,
                    "has no transport: set exactly one of modbus, serial, lora, ocpp or snmp (or reach alone)",
                );
                None
            }
            [_] => {
                if let Some(m) = d.modbus {
                    super::transports::modbus(cx, file, &format!("{key}.modbus"), m, buses)
                } else if let Some(s) = d.serial {
                    super::transports::serial(cx, file, &format!("{key}.serial"), s, buses)
                } else if let Some(t) = d.snmp {
                    let k = format!("{key}.snmp");
                    super::snmp::device(cx, file, &k, t, buses).map(Transport::Snmp)
                } else if let Some(o) = d.ocpp {
                    super::ocpp::device(cx, file, &format!("{key}.ocpp"), o).map(Transport::Ocpp)
                } else {
                    d.lora
                        .and_then(|l| lora(cx, file, &format!("{key}.lora"), l))
                }
            }
            [a, b] => {
                cx.at(
                    file,
                    &key,
                    format!("has both {a} and {b}; keep exactly one transport"),
                );
                None
            }
            more => {
                cx.at(
                    file,
                    &key,
                    format!("has {}; keep exactly one transport", more.join(", ")),
                );
                None
            }
        };
        let transport = match (transport, offline_after_s) {
            (Some(Transport::Lora(mut l)), Some(Some(s))) => {
                l.offline_after_s = Some(s.get());
                Some(Transport::Lora(l))
            }
            (t, _) => t,
        };
        let reach = d
            .reach
            .and_then(|t| super::snmp::reach(cx, file, &format!("{key}.reach"), t));
        if let Some(transport) = transport {
            out.push(DeviceCfg {
                id,
                profile,
                enabled: d.enabled.unwrap_or(true),
                poll_ms,
                heartbeat_s,
                meta,
                transport,
                reach,
                origin: format!("{}: {key}", file.display()),
            });
        }
    }
    out
}

fn meta(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    t: toml::Table,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value as J;
    let mut out = serde_json::Map::new();
    for (k, v) in t {
        let j = match v {
            toml::Value::String(s) => J::String(s),
            toml::Value::Integer(i) => J::from(i),
            toml::Value::Boolean(b) => J::Bool(b),
            toml::Value::Datetime(d) => J::String(d.to_string()),
            toml::Value::Float(f) => match serde_json::Number::from_f64(f) {
                Some(n) => J::Number(n),
                None => {
                    cx.at(file, &format!("{key}.{k}"), "must be a finite number");
                    continue;
                }
            },
            v @ (toml::Value::Array(_) | toml::Value::Table(_)) => {
                let m = format!(
                    "must be a string, number or boolean (meta is flat), got {}",
                    if v.is_array() { "an array" } else { "a table" }
                );
                cx.at(file, &format!("{key}.{k}"), m);
                continue;
            }
        };
        out.insert(k, j);
    }
    out
}

fn lora(cx: &mut Ctx<'_>, file: &Path, key: &str, t: toml::Table) -> Option<Transport> {
    super::lora_device::device(cx, file, key, t).map(Transport::Lora)
}
