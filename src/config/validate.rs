//! Validation: the merged raw tree (see `load.rs`) into [`Config`], collecting every
//! problem with the file that holds it and its key path.
//!
//! Each section and each `[[bus]]`/`[[device]]` entry is deserialized on its own (serde,
//! `deny_unknown_fields`, through `serde_path_to_error` for the key path), so one bad
//! entry never hides the problems of the others. Numbers deserialize as `i64` and enums
//! as strings so range and choice errors say what is expected in our own words.

use super::load::{ConfigError, Merged, Origin, join_key};
use super::parse::{check_id, parse_size};
use super::{BufferCfg, CommandsCfg, Config, GatewayCfg, OnFull, StatsCfg};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/polegate";
pub const DEFAULT_PLUGINS_DIRS: [&str; 2] =
    ["/etc/polegate/plugins", "/usr/share/polegate/plugins"];
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const MIN_MAX_BYTES: u64 = 64 * 1024;
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
    max_bytes: Option<toml::Value>,
    memory_max_bytes: Option<toml::Value>,
    flush_every_ms: Option<i64>,
    on_full: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStats {
    interval_s: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    enabled: Option<bool>,
}

/// Collects errors, each with the file that holds the key.
pub(super) struct Ctx<'a> {
    pub merged: &'a Merged,
    pub errors: &'a mut Vec<ConfigError>,
    /// Keys already reported with a type or unknown-key error: later checks stay quiet
    /// about them (no "is required" after "invalid type").
    pub shaped: BTreeSet<String>,
    /// Files secrets are read from (see `secrets.rs`).
    pub secrets: Vec<super::secrets::SecretFile>,
}

impl Ctx<'_> {
    /// An error on a section key; the file is whoever set it (or declared its section).
    pub fn err(&mut self, key: &str, message: impl Into<String>) {
        let file = self.merged.origin_of(key).file;
        self.at(&file, key, message);
    }
    pub fn at(&mut self, file: &Path, key: &str, message: impl Into<String>) {
        if self.shaped.contains(key) {
            return;
        }
        self.errors.push(ConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        });
    }
    /// Deserializes one section; a type or unknown-key error is reported and the
    /// section's defaults are used so the other checks still run.
    pub(super) fn section<T: DeserializeOwned + Default>(&mut self, name: &str) -> Option<T> {
        let Some(v) = self.merged.table.get(name) else {
            return Some(T::default());
        };
        if !v.is_table() {
            self.err(name, format!("must be a table, written [{name}]"));
            return None;
        }
        self.de(None, v.clone(), name)
    }
    /// Deserializes `v`, found at key `prefix` (in `file`, else whoever set the key),
    /// reporting every unknown key and type error: each failing key is reported, removed,
    /// and deserialization retried, so one typo does not hide the next.
    pub fn de<T: DeserializeOwned>(
        &mut self,
        file: Option<&Path>,
        mut v: toml::Value,
        prefix: &str,
    ) -> Option<T> {
        loop {
            let e = match serde_path_to_error::deserialize::<_, T>(v.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let removed = remove_path(&mut v, e.path());
            // The path already ends with an unknown key's name; toml may append
            // context lines ("in `modbus`") that the path says better.
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            let msg = quote_hint(plain_types(inner.lines().next().unwrap_or_default().trim()));
            let key = match path.as_str() {
                "." => prefix.to_string(),
                p if p.starts_with('[') => format!("{prefix}{p}"),
                p => join_key(prefix, p),
            };
            match file {
                Some(f) => self.at(f, &key, msg),
                None => self.err(&key, msg),
            }
            self.shaped.insert(key);
            if !removed {
                return None;
            }
        }
    }
    /// An error on `key` of `file`, or of whoever set the section key when None.
    fn report(&mut self, file: Option<&Path>, key: &str, msg: String) {
        match file {
            Some(f) => self.at(f, key, msg),
            None => self.err(key, msg),
        }
    }

    /// A period, timeout or silence in seconds (`ms` false) or milliseconds: at least `lo`,
    /// at most a year (`model::limits::MAX_PERIOD_S`); a huge value is refused here rather
    /// than overflowing a timer later.
    pub fn period(
        &mut self,
        file: Option<&Path>,
        key: &str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        ms: bool,
    ) -> u64 {
        use crate::model::limits::{MAX_PERIOD_MS, MAX_PERIOD_S};
        let (hi, unit) = if ms {
            (MAX_PERIOD_MS, "ms")
        } else {
            (MAX_PERIOD_S, "s")
        };
        if let Some(n) = v
            && u64::try_from(n).is_ok_and(|n| n > hi)
        {
            let msg = format!("{n} is too long: at most {hi} {unit} (a year)");
            self.report(file, key, msg);
            return default as u64;
        }
        self.int(file, key, v, default, lo, i64::MAX) as u64
    }

    /// Checks an optional integer against a range, reporting `key: N is out of range`.
    pub fn int(
        &mut self,
        file: Option<&Path>,
        key: &str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> i64 {
        let v = v.unwrap_or(default);
        if v < lo || v > hi {
            let msg = if hi == i64::MAX {
                format!("{v} is out of range: must be at least {lo}")
            } else {
                format!("{v} is out of range {lo}..={hi}")
            };
            self.report(file, key, msg);
            return default;
        }
        v
    }
}

/// serde names Rust types ("expected i64", "expected struct RawModbus"); say TOML.
fn plain_types(msg: &str) -> String {
    let mut m = msg
        .replace("expected i64", "expected an integer")
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array");
    if let Some(i) = m.find("expected struct ") {
        let rest = &m[i + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        m = format!("{}expected a table{}", &m[..i], &rest[end..]);
    }
    m
}

/// A number or boolean written in quotes is the commonest type error: say how to fix it.
fn quote_hint(msg: String) -> String {
    let quoted = msg
        .strip_prefix("invalid type: string \"")
        .and_then(|r| r.split_once('"'))
        .map(|(v, _)| v.to_string());
    match quoted {
        Some(v) if v.parse::<f64>().is_ok() || v == "true" || v == "false" => {
            format!("{msg} (write {v} without quotes)")
        }
        Some(_) if msg.ends_with("expected a boolean") => {
            format!("{msg} (write true or false, without quotes)")
        }
        _ => msg,
    }
}

/// Removes the value at `path` from `v`; false when there is nothing to remove.
fn remove_path(v: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = v;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Map { key }, toml::Value::Table(t)) => t.get_mut(key.as_str()),
            (Segment::Seq { index }, toml::Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

pub(crate) fn validate(
    merged: Merged,
    state_directory: Option<&str>,
    errors: &mut Vec<ConfigError>,
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
        interval_s: cx.period(None, "stats.interval_s", s.interval_s, 60, 0, false),
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

pub(super) fn resolve(origin: &Origin, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        origin.base.join(p)
    }
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

/// A size key of `[buffer]`: at least 64KiB.
fn size(cx: &mut Ctx<'_>, key: &str, v: &Option<toml::Value>, default: u64) -> u64 {
    match v {
        None => default,
        Some(v) => match parse_size(v) {
            Some(n) if n >= MIN_MAX_BYTES => n,
            Some(n) => {
                cx.err(key, format!("{n} bytes is too small: at least 64KiB"));
                default
            }
            None => {
                cx.err(
                    key,
                    format!("{v} is not a size: an integer of bytes or a string like \"256MiB\" (KiB, MiB, GiB)"),
                );
                default
            }
        },
    }
}

fn buffer(cx: &mut Ctx<'_>) -> Option<BufferCfg> {
    let b = cx.section::<RawBuffer>("buffer")?;
    let max_bytes = size(cx, "buffer.max_bytes", &b.max_bytes, DEFAULT_MAX_BYTES);
    let memory_max_bytes = size(
        cx,
        "buffer.memory_max_bytes",
        &b.memory_max_bytes,
        DEFAULT_MEMORY_MAX_BYTES,
    );
    let flush_every_ms = cx.period(
        None,
        "buffer.flush_every_ms",
        b.flush_every_ms,
        1000,
        1,
        true,
    );
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
