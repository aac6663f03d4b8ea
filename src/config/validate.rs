//! Validation: the merged raw tree (see `load.rs`) into [`Config`], collecting every
//! problem with the file that holds it and its key path.
//!
//! Each section and each `[[bus]]`/`[[device]]` entry is deserialized on its own (serde,
//! `deny_unknown_fields`, through `serde_path_to_error` for the key path), so one bad
//! entry never hides the problems of the others. Periods, bounded numbers, sizes and
//! listen addresses deserialize into the range-checked types of `values.rs`; enums
//! deserialize as strings; so range and choice errors say what is expected in our own
//! words.

use super::ctx::{Ctx, Merged, resolve};
use super::parse::check_id;
use super::values::{ByteSize, Checked, Millis, Period, Seconds};
use super::{BufferCfg, CommandsCfg, Config, GatewayCfg, OnFull, StatsCfg};
use crate::model::FileError;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/polegate";
pub const DEFAULT_PLUGINS_DIRS: [&str; 2] =
    ["/etc/polegate/plugins", "/usr/share/polegate/plugins"];
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Events held in memory while the buffer cannot store (SPEC §5 "Storage faults").
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    id: Option<String>,
    state_dir: Option<String>,
    plugins_dirs: Option<Vec<String>>,
    log_level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    max_bytes: Option<Checked<ByteSize>>,
    memory_max_bytes: Option<Checked<ByteSize>>,
    flush_every_ms: Option<Checked<Millis<1>>>,
    on_full: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStats {
    interval_s: Option<Checked<Seconds<0>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    enabled: Option<bool>,
}

pub(crate) fn validate(
    merged: Merged,
    state_directory: Option<&str>,
    errors: &mut Vec<FileError>,
) -> Option<Config> {
    let mut cx = Ctx {
        merged: &merged,
        errors,
        shaped: BTreeSet::new(),
        secrets: Vec::new(),
    };
    for key in merged.table.keys() {
        if !matches!(
            key.as_str(),
            "gateway"
                | "mqtt"
                | "buffer"
                | "stats"
                | "commands"
                | "lora"
                | "ocpp"
                | "http"
                | "schedule"
                | "program"
        ) {
            cx.err(
                key,
                "unknown key; expected gateway, mqtt, buffer, stats, commands, lora, ocpp, http, schedule, [[bus]], [[device]] or [[program]]",
            );
        }
    }
    let gateway = gateway(&mut cx, state_directory);
    let mqtt = super::mqtt::mqtt(&mut cx, &gateway.id);
    let buffer = buffer(&mut cx);
    let stats = cx.section::<RawStats>("stats").map(|s| StatsCfg {
        interval_s: cx
            .valid(None, "stats.interval_s", s.interval_s)
            .map_or(60, Period::get),
    });
    let commands = cx.section::<RawCommands>("commands").map(|c| CommandsCfg {
        enabled: c.enabled.unwrap_or(true),
    });
    let lora = match merged.table.get("lora") {
        None => None,
        Some(v @ toml::Value::Table(_)) => super::lora::gateway(&mut cx, v),
        Some(_) => {
            cx.err("lora", "must be a table, written [lora]");
            None
        }
    };
    let ocpp = match merged.table.get("ocpp") {
        None => None,
        Some(v @ toml::Value::Table(_)) => super::ocpp::gateway(&mut cx, v),
        Some(_) => {
            cx.err("ocpp", "must be a table, written [ocpp]");
            None
        }
    };
    let http = cx
        .section::<super::http::RawHttp>("http")
        .and_then(|raw| super::http::http(&mut cx, raw));
    let mut snmp_agents = Default::default();
    let (buses, bus_index) = super::entries::buses(&mut cx, &merged.buses, &mut snmp_agents);
    let devices = super::entries::devices(&mut cx, &merged.devices, &bus_index);
    if !merged.table.contains_key("ocpp") || ocpp.is_some() {
        super::ocpp::cross(&mut cx, ocpp.as_ref(), &devices);
    }
    let schedule = super::schedule::schedule(&mut cx, &devices);
    Some(Config {
        path: merged.main.clone(),
        gateway,
        mqtt: mqtt?,
        buffer: buffer?,
        stats: stats?,
        commands: commands?,
        http: http?,
        lora,
        ocpp,
        buses,
        devices,
        snmp_agents,
        schedule,
        secret_files: cx.secrets,
    })
}

fn gateway(cx: &mut Ctx<'_>, state_directory: Option<&str>) -> GatewayCfg {
    let g = cx.section::<RawGateway>("gateway").unwrap_or_default();
    let id = match g.id {
        Some(id) => {
            if let Err(m) = check_id(&id) {
                cx.err("gateway.id", m);
            }
            id
        }
        None => {
            cx.err(
                "gateway.id",
                "is required: the cabinet's name, e.g. id = \"cab-dijon-0042\"",
            );
            String::new()
        }
    };
    let state_dir = match g.state_dir {
        Some(s) if s.is_empty() => {
            cx.err("gateway.state_dir", "must not be empty");
            PathBuf::from(DEFAULT_STATE_DIR)
        }
        Some(s) => resolve(&cx.merged.origin_of("gateway.state_dir"), &s),
        None => state_directory
            .and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from),
    };
    let plugins_dirs = match g.plugins_dirs {
        Some(dirs) => {
            let origin = cx.merged.origin_of("gateway.plugins_dirs");
            if dirs.is_empty() {
                cx.err("gateway.plugins_dirs", "must name at least one directory");
            }
            dirs.iter().map(|d| resolve(&origin, d)).collect()
        }
        None => DEFAULT_PLUGINS_DIRS.iter().map(PathBuf::from).collect(),
    };
    let log_level = match g.log_level {
        Some(l) if tracing_subscriber::EnvFilter::try_new(&l).is_err() || l.trim().is_empty() => {
            cx.err(
                "gateway.log_level",
                format!("{l:?} is not a log level: use error, warn, info, debug or trace (or a RUST_LOG-style filter such as \"info,polegate::southbound=debug\")"),
            );
            None
        }
        other => other,
    };
    GatewayCfg {
        id,
        state_dir,
        plugins_dirs,
        log_level,
    }
}

fn buffer(cx: &mut Ctx<'_>) -> Option<BufferCfg> {
    let b = cx.section::<RawBuffer>("buffer")?;
    let max_bytes = cx
        .valid(None, "buffer.max_bytes", b.max_bytes)
        .map_or(DEFAULT_MAX_BYTES, ByteSize::get);
    let memory_max_bytes = cx
        .valid(None, "buffer.memory_max_bytes", b.memory_max_bytes)
        .map_or(DEFAULT_MEMORY_MAX_BYTES, ByteSize::get);
    let flush_every_ms = cx
        .valid(None, "buffer.flush_every_ms", b.flush_every_ms)
        .map_or(1000, Period::get);
    let on_full = match b.on_full.as_deref() {
        None | Some("drop_oldest") => OnFull::DropOldest,
        Some("drop_newest") => OnFull::DropNewest,
        Some(other) => {
            cx.err(
                "buffer.on_full",
                format!("'{other}' is not a policy: expected drop_oldest or drop_newest"),
            );
            OnFull::DropOldest
        }
    };
    Some(BufferCfg {
        max_bytes,
        memory_max_bytes,
        flush_every_ms,
        on_full,
    })
}
