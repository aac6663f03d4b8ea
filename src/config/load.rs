//! Loading: the main file, `conf.d/*.toml` beside it in name order, then
//! `POLEGATE__SECTION__KEY` environment overrides, merged into one raw TOML tree that
//! remembers which file (or variable) set each key and declared each `[[bus]]` /
//! `[[device]]` entry. `validate.rs` turns that tree into [`Config`].
//!
//! Each file is parsed with `toml` first so a syntax error names its line and column;
//! the `config` crate layers the environment (its own file errors are too vague). A
//! syntax or read error stops before validation: indexes into the merged lists would be
//! wrong and every missing key would be reported as well.

use super::Config;
use super::ctx::{Merged, Origin, join_key, origin_for_file};
use super::refs::References;
use crate::model::{FileError, line_col};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem: `file: key.path: message`, the key path like
/// `device[3].modbus.unit`, empty for file-level problems (syntax, unreadable). The same
/// type as a profile's problems, so `check` prints both alike.
pub type ConfigError = FileError;

/// Every problem found.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The prefix of override variables: `POLEGATE__MQTT__PASSWORD` sets `mqtt.password`.
pub const ENV_PREFIX: &str = "POLEGATE__";

/// Keys whose value is a string: an override like `POLEGATE__MQTT__PASSWORD=123456`
/// stays the string "123456" instead of becoming an integer and a type error.
const STRING_KEYS: &[&str] = &[
    "gateway.id",
    "gateway.state_dir",
    "mqtt.url",
    "mqtt.client_id",
    "mqtt.username",
    "mqtt.password",
    "mqtt.password_file",
    "mqtt.ca_file",
    "mqtt.cert_file",
    "mqtt.key_file",
    "mqtt.topic_prefix",
    "buffer.max_bytes",
    "buffer.memory_max_bytes",
    "buffer.on_full",
    "http.listen",
    "http.username",
    "http.password_file",
];

/// Loads `path`, `conf.d/*.toml` beside it and `POLEGATE__…` overrides from the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &process_env())
}

/// The variables [`load`] reads: `STATE_DIRECTORY` and `POLEGATE__…` overrides.
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k == "STATE_DIRECTORY" || k.to_ascii_uppercase().starts_with(ENV_PREFIX))
        .collect()
}

/// The profile references of the files as written, for when [`load`] failed: `check`
/// then still reports missing profiles beside the other errors (SPEC §8). `None` when a
/// file could not be read or parsed (its entries' indexes would be wrong).
pub fn references(path: &Path) -> Option<References> {
    references_with_env(path, &process_env())
}

/// Like [`references`], with the environment given.
pub fn references_with_env(path: &Path, env: &[(String, String)]) -> Option<References> {
    let mut errors = Vec::new();
    let merged = read_layers(path, env, &mut errors);
    if errors.iter().any(FileError::is_file_level) {
        return None;
    }
    Some(References::of_merged(&merged))
}

/// Like [`load`], with the environment given (`POLEGATE__…` overrides and
/// `STATE_DIRECTORY`), so tests never touch the process environment.
pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let merged = read_layers(path, env, &mut errors);
    // Unreadable files and syntax errors stop here: indexes into the merged lists would
    // be wrong and every key of a missing file would be reported as missing too.
    if errors.iter().any(FileError::is_file_level) {
        return Err(ConfigErrors(errors));
    }
    let state_directory = env
        .iter()
        .find(|(k, _)| k == "STATE_DIRECTORY")
        .map(|(_, v)| v.as_str());
    let cfg = super::validate::validate(merged, state_directory, &mut errors);
    match cfg {
        Some(cfg) if errors.is_empty() => Ok(cfg),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Reads and merges every layer. Errors here are file-level (read, syntax, shape).
fn read_layers(path: &Path, env: &[(String, String)], errors: &mut Vec<ConfigError>) -> Merged {
    let mut merged = Merged {
        main: path.to_path_buf(),
        table: toml::Table::new(),
        origins: BTreeMap::new(),
        buses: Vec::new(),
        devices: Vec::new(),
    };
    let mut files = vec![path.to_path_buf()];
    match conf_d_files(path) {
        Ok(more) => files.extend(more),
        Err(e) => errors.push(e),
    }
    for file in files {
        match read_toml(&file) {
            Ok(table) => merge_file(&mut merged, table, &origin_for_file(&file), errors),
            Err(e) => errors.push(e),
        }
    }
    overlay_env(&mut merged, env, errors);
    merged
}

/// `*.toml` files in `conf.d/` beside `main`, in name order; none when there is no conf.d.
fn conf_d_files(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = main.parent().unwrap_or(Path::new("")).join("conf.d");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| ConfigError {
        file: dir.clone(),
        key: String::new(),
        message: format!("cannot read directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn read_toml(file: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let (line, col) = line_col(&text, span.start);
                format!(" at line {line}, column {col}")
            }
            None => String::new(),
        };
        ConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            message: format!("TOML syntax error{at}: {}", e.message().trim_end()),
        }
    })
}

fn merge_file(
    merged: &mut Merged,
    table: toml::Table,
    origin: &Origin,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table {
        let list = match key.as_str() {
            "bus" => &mut merged.buses,
            "device" => &mut merged.devices,
            _ => {
                merge_key(
                    &mut merged.table,
                    &mut merged.origins,
                    "",
                    key,
                    value,
                    origin,
                );
                continue;
            }
        };
        match value {
            toml::Value::Array(entries) => {
                list.extend(entries.into_iter().map(|e| (e, origin.clone())));
            }
            _ => errors.push(ConfigError {
                file: origin.file.clone(),
                key: key.clone(),
                message: format!("must be an array of tables, written [[{key}]]"),
            }),
        }
    }
}

/// Tables merge key by key; anything else (scalars, arrays) replaces the old value.
fn merge_key(
    table: &mut toml::Table,
    origins: &mut BTreeMap<String, Origin>,
    prefix: &str,
    key: String,
    value: toml::Value,
    origin: &Origin,
) {
    let path = join_key(prefix, &key);
    if let (Some(toml::Value::Table(existing)), toml::Value::Table(new)) =
        (table.get_mut(&key), &value)
    {
        let new = new.clone();
        for (k, v) in new {
            merge_key(existing, origins, &path, k, v, origin);
        }
        return;
    }
    record(origins, &path, &value, origin);
    table.insert(key, value);
}

fn record(
    origins: &mut BTreeMap<String, Origin>,
    path: &str,
    value: &toml::Value,
    origin: &Origin,
) {
    origins.insert(path.to_string(), origin.clone());
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            record(origins, &join_key(path, k), v, origin);
        }
    }
}

/// `POLEGATE__SECTION__KEY` overrides, collected by the `config` crate's environment
/// source (prefix and `__` separators, lower-cased keys) and parsed as TOML values.
fn overlay_env(merged: &mut Merged, env: &[(String, String)], errors: &mut Vec<ConfigError>) {
    use config::Source;
    let vars: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with(ENV_PREFIX))
        .cloned()
        .collect();
    if vars.is_empty() {
        return;
    }
    let source = config::Environment::with_prefix("POLEGATE")
        .prefix_separator("__")
        .separator("__")
        .source(Some(vars));
    let collected = config::Config::builder()
        .add_source(source)
        .build()
        .and_then(|c| c.collect());
    match collected {
        Ok(tree) => {
            for (key, value) in tree {
                overlay_value(merged, vec![key], value, errors);
            }
        }
        Err(e) => errors.push(ConfigError {
            file: PathBuf::from("environment"),
            key: String::new(),
            message: format!("cannot use the POLEGATE__ overrides: {e}"),
        }),
    }
}

fn overlay_value(
    merged: &mut Merged,
    path: Vec<String>,
    value: config::Value,
    errors: &mut Vec<ConfigError>,
) {
    let var = format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase());
    let origin = Origin {
        file: PathBuf::from(format!("environment {var}")),
        base: merged.main.parent().unwrap_or(Path::new("")).to_path_buf(),
    };
    let fail = |errors: &mut Vec<ConfigError>, key: &str, message: String| {
        errors.push(ConfigError {
            file: origin.file.clone(),
            key: key.to_string(),
            message,
        })
    };
    let dotted = path.join(".");
    match value.kind {
        config::ValueKind::Table(t) => {
            if matches!(path[0].as_str(), "bus" | "device") {
                let msg = format!(
                    "[[{}]] entries cannot be overridden from the environment",
                    path[0]
                );
                fail(errors, &path[0], msg);
                return;
            }
            for (k, v) in t {
                let mut p = path.clone();
                p.push(k);
                overlay_value(merged, p, v, errors);
            }
        }
        config::ValueKind::String(s) if path.len() >= 2 => {
            let mut parsed = parse_env_value(&s);
            if STRING_KEYS.contains(&dotted.as_str()) && !matches!(parsed, toml::Value::String(_)) {
                parsed = toml::Value::String(s);
            }
            if let Err(parent) = set_path(&mut merged.table, &path, parsed) {
                fail(
                    errors,
                    &parent,
                    "is not a table, so it has no keys to override".into(),
                );
                return;
            }
            for i in 1..path.len() {
                merged
                    .origins
                    .entry(path[..i].join("."))
                    .or_insert_with(|| origin.clone());
            }
            merged.origins.insert(dotted, origin.clone());
        }
        _ => fail(
            errors,
            &dotted,
            "overrides name one key of a section: POLEGATE__SECTION__KEY".into(),
        ),
    }
}

/// Sets `path` in `table`, creating tables on the way; Err(parent key) when a parent is
/// not a table.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let mut t = table;
    for (i, seg) in path[..path.len() - 1].iter().enumerate() {
        let next = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match next {
            toml::Value::Table(inner) => t = inner,
            _ => return Err(path[..=i].join(".")),
        }
    }
    if let Some(last) = path.last() {
        t.insert(last.clone(), value);
    }
    Ok(())
}

/// An override's value as TOML (`30`, `true`, `"x"`, `["a", "b"]`); anything that does not
/// parse as one TOML value is the string itself.
pub(crate) fn parse_env_value(s: &str) -> toml::Value {
    if let Ok(mut t) = format!("v = {s}").parse::<toml::Table>()
        && t.len() == 1
        && let Some(v) = t.remove("v")
    {
        return v;
    }
    toml::Value::String(s.to_string())
}
