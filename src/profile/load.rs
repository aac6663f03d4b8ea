//! Profile discovery and validation (SPEC §3, §4, §8).
//!
//! Invariant: a [`Profile`] in the [`Registry`] passed every check below; every problem in
//! every file is reported (not only the first), each naming the file, the key path
//! (`point[2].type`) and, for TOML syntax errors, the line and column.
//!
//! Discovery: every `*.toml` under each plugins dir, recursively (a sub-folder per vendor
//! is fine), in path order; hidden files (`.name.toml`, editor leftovers) are skipped. A
//! missing dir is not an error (the defaults name two dirs, a gateway may have neither);
//! a dir that exists but cannot be read is. When two files declare the same profile name
//! the first one loaded wins and the second is reported.
//!
//! Parsing goes through `toml::Table` so a syntax error has a position, then through raw
//! serde structs (`deny_unknown_fields`) one table at a time, so a type error in one point
//! does not hide the problems of the others. Unknown keys are all listed up front.

use super::codec::span;
use super::vocab::{self, Shape};
use super::{
    PointDef, PointType, Profile, Protocol, RegisterRef, SerialEncoding, SerialFraming, SerialSpec,
    Table, WordOrder,
};
use crate::model::Kind;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Profiles are small; anything bigger is not a profile (and would be read into memory).
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;
/// Modbus limit on registers per read, which also bounds a string point.
const MAX_STRING_REGISTERS: i64 = 125;

/// A problem in a profile file: `file: key: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileError {
    pub file: PathBuf,
    /// Key path inside the file, e.g. `point[2].type`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ProfileError {}

/// Every valid profile found, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    profiles: BTreeMap<String, Arc<Profile>>,
}

impl Registry {
    /// Loads every `*.toml` under each of `dirs` (recursively). Invalid files are
    /// reported and left out; the valid ones are returned.
    pub fn load(dirs: &[PathBuf]) -> (Registry, Vec<ProfileError>) {
        let mut registry = Registry::default();
        let mut errors = Vec::new();
        let mut seen_files = BTreeSet::new();
        for dir in dirs {
            let mut files = Vec::new();
            find_profiles(dir, &mut files, &mut BTreeSet::new(), &mut errors, true);
            files.sort();
            for file in files {
                let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                if !seen_files.insert(canonical) {
                    continue; // the same file through overlapping dirs or a symlink
                }
                match Registry::load_file(&file) {
                    Ok(profile) => match registry.get(&profile.name) {
                        Some(first) => errors.push(ProfileError {
                            file: file.clone(),
                            key: "name".into(),
                            message: format!(
                                "duplicate profile name '{}', already defined in {}",
                                profile.name,
                                first.source.display()
                            ),
                        }),
                        None => registry.insert(profile),
                    },
                    Err(mut errs) => errors.append(&mut errs),
                }
            }
        }
        (registry, errors)
    }

    /// Reads, parses and validates one profile file.
    pub fn load_file(path: &Path) -> Result<Profile, Vec<ProfileError>> {
        let file_error = |message: String| {
            vec![ProfileError {
                file: path.to_path_buf(),
                key: String::new(),
                message,
            }]
        };
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_PROFILE_BYTES => {
                return Err(file_error(format!(
                    "file of {} bytes is too large for a profile (limit {MAX_PROFILE_BYTES})",
                    meta.len()
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(file_error(format!("cannot read: {e}"))),
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => return Err(file_error(format!("not UTF-8 text: {e}"))),
            },
            Err(e) => return Err(file_error(format!("cannot read: {e}"))),
        };
        parse(path, &text)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles.values()
    }
    pub fn len(&self) -> usize {
        self.profiles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }
    pub fn insert(&mut self, p: Profile) {
        self.profiles.insert(p.name.clone(), Arc::new(p));
    }
}

/// Collects `*.toml` files under `dir`; `visited` holds canonical dirs (symlink loops).
fn find_profiles(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut BTreeSet<PathBuf>,
    errors: &mut Vec<ProfileError>,
    top: bool,
) {
    let dir_error = |message: String| ProfileError {
        file: dir.to_path_buf(),
        key: String::new(),
        message,
    };
    if let Ok(canonical) = std::fs::canonicalize(dir)
        && !visited.insert(canonical)
    {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if top && e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(dir = %dir.display(), "plugins dir absent");
            return;
        }
        Err(e) => {
            errors.push(dir_error(format!("cannot read plugins directory: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(dir_error(format!("cannot read plugins directory: {e}")));
                continue;
            }
        };
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // Follows symlinks: a vendor folder may be linked in.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if !hidden {
                    find_profiles(&path, files, visited, errors, false);
                }
            }
            Ok(_) if !hidden && path.extension().is_some_and(|e| e == "toml") => {
                files.push(path);
            }
            Ok(_) => {}
            Err(e) => errors.push(ProfileError {
                file: path,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "kind",
    "protocol",
    "vendor",
    "model",
    "description",
    "poll_ms",
    "uplink_interval_s",
    "serial",
    "lora",
    "point",
];

const POINT_KEYS: &[&str] = &[
    "name", "unit", "table", "address", "type", "order", "bit", "length", "scale", "offset",
    "deadband", "writable", "min", "max", "values",
];

/// Keys that only mean something for Modbus points (SPEC §8: errors elsewhere).
const MODBUS_KEYS: &[&str] = &["table", "address", "bit", "length", "order"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    kind: Option<String>,
    protocol: Option<String>,
    vendor: Option<String>,
    model: Option<String>,
    description: Option<String>,
    poll_ms: Option<i64>,
    uplink_interval_s: Option<i64>,
    serial: Option<toml::Table>,
    lora: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    name: Option<String>,
    unit: Option<String>,
    table: Option<String>,
    address: Option<i64>,
    #[serde(rename = "type")]
    ty: Option<String>,
    order: Option<String>,
    bit: Option<i64>,
    length: Option<i64>,
    scale: Option<f64>,
    offset: Option<f64>,
    deadband: Option<f64>,
    writable: Option<bool>,
    min: Option<f64>,
    max: Option<f64>,
    values: Option<BTreeMap<String, String>>,
}

/// The problems of one file, with the key path prefix of the table being checked.
/// `[lora]` of a LoRa profile: `script = "name.rhai"`, a file beside the profile (SPEC §3).
/// The script is compiled here, so `check` reports its syntax errors with file and line,
/// and a missing `decode_uplink` (or `encode_downlink` when a point is writable).
fn check_lora_section(r: &mut Report<'_>, lora: Option<&toml::Table>, points: &[PointDef]) {
    let Some(t) = lora else {
        r.err(
            "lora",
            "is required for a lora profile: [lora] script = \"name.rhai\"",
        );
        return;
    };
    for k in t.keys().filter(|k| k.as_str() != "script") {
        r.err(format!("lora.{k}"), "unknown key; expected script");
    }
    let script_name = match t.get("script").map(|v| v.as_str()) {
        None => {
            return r.err(
                "lora.script",
                "is required: the Rhai file defining decode_uplink",
            );
        }
        Some(None) => return r.err("lora.script", "must be a string (a file name)"),
        Some(Some(name)) => name,
    };
    let script_path = r.file.parent().unwrap_or(Path::new(".")).join(script_name);
    let script = match crate::script::Engine::new().compile_file(&script_path) {
        Ok(s) => s,
        Err(e) => return r.err("lora.script", e.to_string()),
    };
    if !script.has_fn("decode_uplink", 2) {
        r.err(
            "lora.script",
            format!("{script_name} does not define fn decode_uplink(fport, bytes)"),
        );
    }
    if points.iter().any(|p| p.writable) && !script.has_fn("encode_downlink", 2) {
        r.err(
            "lora.script",
            format!("{script_name} does not define fn encode_downlink(point, value), needed by writable points"),
        );
    }
}

struct Report<'a> {
    file: &'a Path,
    errors: Vec<ProfileError>,
}

impl Report<'_> {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ProfileError {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        });
    }

    /// Reports keys not in `allowed` and removes them, so serde sees only known keys.
    fn unknown_keys(&mut self, table: &mut toml::Table, allowed: &[&str], prefix: &str) {
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            table.remove(&key);
            self.err(
                format!("{prefix}{key}"),
                format!("unknown key, expected one of: {}", allowed.join(", ")),
            );
        }
    }

    /// Deserializes a table into a raw struct, reporting a failure at its key path.
    fn raw<T: DeserializeOwned>(&mut self, table: toml::Table, prefix: &str) -> Option<T> {
        match serde_path_to_error::deserialize(toml::Value::Table(table)) {
            Ok(raw) => Some(raw),
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." {
                    prefix.trim_end_matches('.').to_string()
                } else {
                    format!("{prefix}{path}")
                };
                self.err(key, e.into_inner().message().to_string());
                None
            }
        }
    }
}

/// Parses and validates the text of one profile file.
pub fn parse(path: &Path, text: &str) -> Result<Profile, Vec<ProfileError>> {
    let mut r = Report {
        file: path,
        errors: Vec::new(),
    };
    let mut top = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(e) => {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            r.err(
                "",
                format!(
                    "TOML syntax error at line {line}, column {column}: {}",
                    e.message().trim()
                ),
            );
            return Err(r.errors);
        }
    };
    r.unknown_keys(&mut top, TOP_KEYS, "");
    let raw_points = top.remove("point");
    let raw: Option<RawProfile> = r.raw(top, "");

    let name = raw
        .as_ref()
        .and_then(|raw| check_name(&mut r, raw.name.as_deref()));
    let kind = raw.as_ref().and_then(|raw| {
        one_of(
            &mut r,
            "kind",
            raw.kind.as_deref(),
            &Kind::ALL.map(|k| (k.as_str(), k)),
        )
    });
    let protocol = raw.as_ref().and_then(|raw| {
        one_of(
            &mut r,
            "protocol",
            raw.protocol.as_deref(),
            &[Protocol::Modbus, Protocol::Serial, Protocol::Lora].map(|p| (p.as_str(), p)),
        )
    });
    let positive = |r: &mut Report, key: &str, v: Option<i64>| -> Option<u64> {
        let v = v?;
        let ok = u64::try_from(v).ok().filter(|v| *v > 0);
        if ok.is_none() {
            r.err(key, format!("must be a positive integer, got {v}"));
        }
        ok
    };
    let poll_ms = raw
        .as_ref()
        .and_then(|raw| positive(&mut r, "poll_ms", raw.poll_ms));
    let uplink_interval_s = raw
        .as_ref()
        .and_then(|raw| positive(&mut r, "uplink_interval_s", raw.uplink_interval_s));
    if let (Some(raw), Some(protocol)) = (&raw, protocol) {
        if raw.serial.is_some() && protocol != Protocol::Serial {
            r.err("serial", "only serial profiles take a [serial] table");
        }
        if raw.lora.is_some() && protocol != Protocol::Lora {
            r.err("lora", "only lora profiles take a [lora] table");
        }
        if raw.uplink_interval_s.is_some() && protocol != Protocol::Lora {
            r.err(
                "uplink_interval_s",
                "only lora profiles take uplink_interval_s",
            );
        }
    }

    let points = check_points(&mut r, raw_points, kind, protocol);
    if let (Some(raw), Some(Protocol::Lora)) = (&raw, protocol) {
        check_lora_section(&mut r, raw.lora.as_ref(), &points);
    }
    let serial = match (&raw, protocol) {
        (Some(raw), Some(Protocol::Serial)) => match &raw.serial {
            Some(table) => check_serial(&mut r, table.clone(), &points),
            None => {
                r.err(
                    "serial",
                    "serial profiles need a [serial] table (framing, script)",
                );
                None
            }
        },
        _ => None,
    };

    match (raw, name, kind, protocol) {
        (Some(raw), Some(name), Some(kind), Some(protocol)) if r.errors.is_empty() => Ok(Profile {
            name,
            kind,
            protocol,
            vendor: raw.vendor,
            model: raw.model,
            description: raw.description,
            poll_ms,
            points,
            uplink_interval_s,
            serial,
            lora: raw.lora,
            source: path.to_path_buf(),
        }),
        _ => {
            if r.errors.is_empty() {
                r.err("", "invalid profile"); // unreachable in practice: a check failed
            }
            Err(r.errors)
        }
    }
}

const SERIAL_KEYS: &[&str] = &[
    "delimiter",
    "length",
    "idle_ms",
    "encoding",
    "poll",
    "script",
    "expect_reply",
    "max_frame",
    "response_timeout_ms",
];
/// Bounds of `max_frame` (and of a fixed `length`): a serial frame, not a file transfer.
const MAX_SERIAL_FRAME: i64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerialSection {
    delimiter: Option<String>,
    length: Option<i64>,
    idle_ms: Option<i64>,
    encoding: Option<String>,
    poll: Option<Vec<String>>,
    script: Option<String>,
    expect_reply: Option<bool>,
    max_frame: Option<i64>,
    response_timeout_ms: Option<i64>,
}

/// Validates `[serial]` and compiles its script (beside the profile file), so `check`
/// reports script syntax errors with their file and line.
fn check_serial(r: &mut Report, mut table: toml::Table, points: &[PointDef]) -> Option<SerialSpec> {
    r.unknown_keys(&mut table, SERIAL_KEYS, "serial.");
    let raw: RawSerialSection = r.raw(table, "serial.")?;
    let in_range = |r: &mut Report, key: &str, v: i64, lo: i64, hi: i64| {
        let ok = (lo..=hi).contains(&v);
        if !ok {
            r.err(
                format!("serial.{key}"),
                format!("must be within {lo}..={hi}, got {v}"),
            );
        }
        ok.then_some(v)
    };
    let max_frame = match raw.max_frame {
        Some(v) => in_range(r, "max_frame", v, 1, MAX_SERIAL_FRAME).map(|v| v as usize),
        None => Some(256),
    };
    let framing = match (&raw.delimiter, raw.length, raw.idle_ms) {
        (Some(d), None, None) if !d.is_empty() && d.len() <= 8 => {
            Some(SerialFraming::Delimiter(d.as_bytes().to_vec()))
        }
        (Some(_), None, None) => {
            r.err("serial.delimiter", "must be 1 to 8 bytes");
            None
        }
        (None, Some(n), None) => {
            in_range(r, "length", n, 1, MAX_SERIAL_FRAME).map(|n| SerialFraming::Length(n as usize))
        }
        (None, None, Some(ms)) => {
            in_range(r, "idle_ms", ms, 1, 10_000).map(|ms| SerialFraming::IdleMs(ms as u64))
        }
        _ => {
            r.err(
                "serial",
                "needs exactly one framing: delimiter = \"\\r\\n\", length = N or idle_ms = N",
            );
            None
        }
    };
    let encoding = match raw.encoding.as_deref() {
        None if raw.delimiter.is_some() => Some(SerialEncoding::Text),
        None => Some(SerialEncoding::Binary),
        Some("text") => Some(SerialEncoding::Text),
        Some("binary") => Some(SerialEncoding::Binary),
        Some(other) => {
            r.err(
                "serial.encoding",
                format!("unknown value '{other}', expected one of: text, binary"),
            );
            None
        }
    };
    if let (Some(SerialFraming::Length(n)), Some(max)) = (&framing, max_frame)
        && *n > max
    {
        r.err(
            "serial.length",
            format!("{n} is larger than max_frame ({max})"),
        );
    }
    let response_timeout_ms = match raw.response_timeout_ms {
        Some(v) => Some(in_range(r, "response_timeout_ms", v, 1, 60_000)? as u64),
        None => None,
    };
    let Some(script_name) = raw.script else {
        r.err(
            "serial.script",
            "missing: the Rhai script that defines fn decode(frame)",
        );
        return None;
    };
    let script_path = r.file.parent().unwrap_or(Path::new(".")).join(&script_name);
    let script = match crate::script::Engine::new().compile_file(&script_path) {
        Ok(s) => s,
        Err(e) => {
            r.err("serial.script", e.to_string());
            return None;
        }
    };
    if !script.has_fn("decode", 1) {
        r.err(
            "serial.script",
            format!("{script_name} does not define fn decode(frame)"),
        );
    }
    if points.iter().any(|p| p.writable) && !script.has_fn("encode", 3) {
        r.err(
            "serial.script",
            format!("{script_name} does not define fn encode(point, value, address), needed by writable points"),
        );
    }
    Some(SerialSpec {
        framing: framing?,
        encoding: encoding?,
        poll: raw.poll.unwrap_or_default(),
        script,
        expect_reply: raw.expect_reply.unwrap_or(true),
        max_frame: max_frame?,
        response_timeout_ms,
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn check_name(r: &mut Report, name: Option<&str>) -> Option<String> {
    let Some(name) = name else {
        r.err("name", "required");
        return None;
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        r.err(
            "name",
            format!("'{name}' must be 1-64 characters of A-Z a-z 0-9 _ - ."),
        );
        return None;
    }
    Some(name.to_string())
}

/// Parses a keyword from a fixed list; `required` keys report their absence.
fn one_of<T: Copy>(r: &mut Report, key: &str, v: Option<&str>, choices: &[(&str, T)]) -> Option<T> {
    let Some(v) = v else {
        r.err(key, "required");
        return None;
    };
    let found = choices.iter().find(|(name, _)| *name == v).map(|(_, t)| *t);
    if found.is_none() {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        r.err(key, format!("'{v}' is not one of: {}", names.join(", ")));
    }
    found
}

fn check_points(
    r: &mut Report,
    raw_points: Option<toml::Value>,
    kind: Option<Kind>,
    protocol: Option<Protocol>,
) -> Vec<PointDef> {
    let items = match raw_points {
        None => {
            r.err("point", "a profile needs at least one [[point]]");
            return Vec::new();
        }
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            r.err("point", "must be an array of tables ([[point]])");
            return Vec::new();
        }
    };
    if items.is_empty() {
        r.err("point", "a profile needs at least one [[point]]");
    }
    let mut points = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("point[{i}].");
        let toml::Value::Table(mut table) = item else {
            r.err(format!("point[{i}]"), "must be a table");
            continue;
        };
        r.unknown_keys(&mut table, POINT_KEYS, &prefix);
        let Some(raw) = r.raw::<RawPoint>(table, &prefix) else {
            continue;
        };
        if let Some(name) = &raw.name {
            if let Some(first) = names.get(name) {
                r.err(
                    format!("{prefix}name"),
                    format!("duplicate point name '{name}' (also point[{first}])"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
        if let Some(point) = check_point(r, &prefix, raw, kind, protocol) {
            points.push(point);
        }
    }
    points
}

const TYPES: [(&str, PointType); 10] = [
    ("bool", PointType::Bool),
    ("u16", PointType::U16),
    ("i16", PointType::I16),
    ("u32", PointType::U32),
    ("i32", PointType::I32),
    ("u64", PointType::U64),
    ("i64", PointType::I64),
    ("f32", PointType::F32),
    ("f64", PointType::F64),
    ("string", PointType::String),
];

const TABLES: [(&str, Table); 4] = [
    ("coil", Table::Coil),
    ("discrete", Table::Discrete),
    ("input", Table::Input),
    ("holding", Table::Holding),
];

const ORDERS: [(&str, WordOrder); 4] = [
    ("ABCD", WordOrder::Abcd),
    ("DCBA", WordOrder::Dcba),
    ("BADC", WordOrder::Badc),
    ("CDAB", WordOrder::Cdab),
];

/// Validates one point; `None` when it has errors (all of them reported).
fn check_point(
    r: &mut Report,
    prefix: &str,
    raw: RawPoint,
    kind: Option<Kind>,
    protocol: Option<Protocol>,
) -> Option<PointDef> {
    let before = r.errors.len();
    let key = |k: &str| format!("{prefix}{k}");
    let name = match raw.name.as_deref() {
        None | Some("") => {
            r.err(key("name"), "required");
            None
        }
        Some(name) => Some(name.to_string()),
    };
    let ty = one_of(r, &key("type"), raw.ty.as_deref(), &TYPES);

    // Numbers: scale, offset, deadband, min, max.
    let finite = |r: &mut Report, k: &str, v: Option<f64>| {
        if let Some(v) = v
            && !v.is_finite()
        {
            r.err(key(k), "must be a finite number");
        }
    };
    for (k, v) in [
        ("scale", raw.scale),
        ("offset", raw.offset),
        ("min", raw.min),
        ("max", raw.max),
        ("deadband", raw.deadband),
    ] {
        finite(r, k, v);
    }
    if raw.scale == Some(0.0) {
        r.err(key("scale"), "must not be 0 (writes divide by it)");
    }
    if let Some(d) = raw.deadband
        && d < 0.0
    {
        r.err(key("deadband"), format!("must be >= 0, got {d}"));
    }
    if let (Some(min), Some(max)) = (raw.min, raw.max)
        && min > max
    {
        r.err(key("min"), format!("min {min} is greater than max {max}"));
    }

    // Enum values: integer keys, unique non-empty labels.
    let values = raw.values.as_ref().map(|values| {
        let mut out = BTreeMap::new();
        let mut labels = BTreeSet::new();
        for (k, label) in values {
            match k.trim().parse::<i64>() {
                Ok(n) => {
                    out.insert(n, label.clone());
                }
                Err(_) => r.err(
                    key(&format!("values.{k}")),
                    "key must be an integer raw value",
                ),
            }
            if label.is_empty() {
                r.err(key(&format!("values.{k}")), "label must not be empty");
            } else if !labels.insert(label.as_str()) {
                r.err(
                    key(&format!("values.{k}")),
                    format!("label '{label}' is used twice"),
                );
            }
        }
        out
    });

    if let Some(ty) = ty {
        check_type_options(r, prefix, &raw, ty);
    }
    let reg = match protocol {
        Some(Protocol::Modbus) => ty.and_then(|ty| check_register(r, prefix, &raw, ty)),
        Some(other) => {
            for k in MODBUS_KEYS {
                let present = match *k {
                    "table" => raw.table.is_some(),
                    "address" => raw.address.is_some(),
                    "bit" => raw.bit.is_some(),
                    "length" => raw.length.is_some(),
                    _ => raw.order.is_some(),
                };
                if present {
                    r.err(
                        key(k),
                        format!(
                            "Modbus addressing key is not allowed in a {} profile",
                            other.as_str()
                        ),
                    );
                }
            }
            None
        }
        None => None,
    };
    if let (Some(kind), Some(protocol), Some(name), Some(ty)) = (kind, protocol, &name, ty) {
        check_vocabulary(r, prefix, &raw, kind, protocol, name, ty);
    }

    if r.errors.len() != before {
        return None;
    }
    Some(PointDef {
        name: name?,
        unit: raw.unit,
        ty: ty?,
        reg,
        scale: raw.scale.unwrap_or(1.0),
        offset: raw.offset.unwrap_or(0.0),
        deadband: raw.deadband,
        writable: raw.writable.unwrap_or(false),
        min: raw.min,
        max: raw.max,
        values,
    })
}

/// Options that only make sense for some value types.
fn check_type_options(r: &mut Report, prefix: &str, raw: &RawPoint, ty: PointType) {
    let numeric_only = [
        ("scale", raw.scale.is_some()),
        ("offset", raw.offset.is_some()),
        ("min", raw.min.is_some()),
        ("max", raw.max.is_some()),
        ("deadband", raw.deadband.is_some()),
    ];
    if matches!(ty, PointType::Bool | PointType::String) {
        for (k, present) in numeric_only {
            if present {
                r.err(
                    format!("{prefix}{k}"),
                    format!("does not apply to a {} point", ty.as_str()),
                );
            }
        }
    }
    if raw.values.is_some() {
        if !ty.is_integer() {
            r.err(
                format!("{prefix}values"),
                format!("enums need an integer type, not {}", ty.as_str()),
            );
        }
        for (k, present) in [
            ("scale", raw.scale.is_some()),
            ("offset", raw.offset.is_some()),
            ("deadband", raw.deadband.is_some()),
        ] {
            if present && ty.is_integer() {
                r.err(format!("{prefix}{k}"), "does not apply to an enum (values)");
            }
        }
    }
}

/// The Modbus register of a point (SPEC §3).
fn check_register(
    r: &mut Report,
    prefix: &str,
    raw: &RawPoint,
    ty: PointType,
) -> Option<RegisterRef> {
    let key = |k: &str| format!("{prefix}{k}");
    let before = r.errors.len();
    let table = one_of(r, &key("table"), raw.table.as_deref(), &TABLES);
    let address = match raw.address {
        None => {
            r.err(key("address"), "required for a Modbus point");
            None
        }
        Some(a) => {
            let a16 = u16::try_from(a).ok();
            if a16.is_none() {
                r.err(key("address"), format!("{a} is out of range 0..=65535"));
            }
            a16
        }
    };
    let order = match raw.order.as_deref() {
        None => Some(WordOrder::Abcd),
        Some(o) => one_of(r, &key("order"), Some(o), &ORDERS),
    };
    let bit = match raw.bit {
        None => None,
        Some(b) if (0..=15).contains(&b) => Some(b as u8),
        Some(b) => {
            r.err(key("bit"), format!("{b} is out of range 0..=15"));
            None
        }
    };
    let length = match (raw.length, ty) {
        (None, PointType::String) => {
            r.err(key("length"), "required for a string (registers, 1..=125)");
            None
        }
        (Some(n), PointType::String) if (1..=MAX_STRING_REGISTERS).contains(&n) => Some(n as u16),
        (Some(n), PointType::String) => {
            r.err(
                key("length"),
                format!("{n} registers is out of range 1..=125"),
            );
            None
        }
        (Some(_), other) => {
            r.err(
                key("length"),
                format!("only applies to strings, not {}", other.as_str()),
            );
            None
        }
        (None, _) => None,
    };
    if let Some(table) = table {
        if table.is_bits() {
            if ty != PointType::Bool {
                r.err(
                    key("type"),
                    format!("the {} table holds bits: type must be bool", table.as_str()),
                );
            }
            if raw.bit.is_some() {
                r.err(
                    key("bit"),
                    format!("the {} table already holds single bits", table.as_str()),
                );
            }
        } else if ty == PointType::Bool && raw.bit.is_none() {
            r.err(
                key("bit"),
                format!("a bool in the {} table needs bit (0..=15)", table.as_str()),
            );
        } else if ty != PointType::Bool && raw.bit.is_some() {
            r.err(key("bit"), "only applies to type bool");
        }
        if raw.writable == Some(true) && !matches!(table, Table::Coil | Table::Holding) {
            r.err(
                key("writable"),
                format!(
                    "the {} table is read-only (only coil and holding are writable)",
                    table.as_str()
                ),
            );
        }
    }
    if r.errors.len() != before {
        return None;
    }
    let reg = RegisterRef {
        table: table?,
        address: address?,
        order: order?,
        bit,
        length,
    };
    let last = u32::from(reg.address) + u32::from(span(&reg, ty)) - 1;
    if last > u32::from(u16::MAX) {
        r.err(
            key("address"),
            format!(
                "{} at {} runs past the last address 65535",
                ty.as_str(),
                reg.address
            ),
        );
        return None;
    }
    Some(reg)
}

/// SPEC §4: vocabulary names, their units and value shapes.
fn check_vocabulary(
    r: &mut Report,
    prefix: &str,
    raw: &RawPoint,
    kind: Kind,
    protocol: Protocol,
    name: &str,
    ty: PointType,
) {
    let key = |k: &str| format!("{prefix}{k}");
    let Some(entry) = vocab::lookup(kind, protocol, name) else {
        if !vocab::is_extension(name) {
            let known: Vec<&str> = vocab::entries(kind).iter().map(|e| e.name).collect();
            r.err(
                key("name"),
                format!(
                    "'{name}' is not a {kind} point: use one of {} or an x_ name",
                    known.join(", ")
                ),
            );
        }
        return;
    };
    match (entry.unit, raw.unit.as_deref()) {
        (Some(want), None) => r.err(
            key("unit"),
            format!("missing: {name} is published in {want}"),
        ),
        (Some(want), Some(got)) if !vocab::same_unit(want, got) => r.err(
            key("unit"),
            format!("{name} is published in {want}, not {got}: convert with scale"),
        ),
        (None, Some(got)) => r.err(key("unit"), format!("{name} has no unit, got {got}")),
        _ => {}
    }
    match entry.shape {
        Shape::Bool if ty != PointType::Bool => r.err(
            key("type"),
            format!("{name} is a bool point, not {}", ty.as_str()),
        ),
        Shape::Number if matches!(ty, PointType::Bool | PointType::String) => r.err(
            key("type"),
            format!("{name} is a number, not {}", ty.as_str()),
        ),
        Shape::Number if raw.values.is_some() => {
            r.err(key("values"), format!("{name} is a number, not an enum"));
        }
        Shape::Any if ty == PointType::Bool => {
            r.err(key("type"), format!("{name} is not a bool point"))
        }
        Shape::Enum(labels) => match &raw.values {
            Some(values) => {
                for (k, label) in values {
                    if !labels.contains(&label.as_str()) {
                        r.err(
                            key(&format!("values.{k}")),
                            format!("'{label}' is not one of: {}", labels.join(", ")),
                        );
                    }
                }
            }
            None if ty.is_integer() => r.err(
                key("values"),
                format!(
                    "{name} needs values mapping raw numbers to: {}",
                    labels.join(", ")
                ),
            ),
            None if ty != PointType::String => r.err(
                key("type"),
                format!("{name} is an enum: an integer type with values, or a string"),
            ),
            None => {}
        },
        _ => {}
    }
    if entry.write_only && raw.writable != Some(true) {
        r.err(
            key("writable"),
            format!("{name} is a command: it must be writable"),
        );
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
