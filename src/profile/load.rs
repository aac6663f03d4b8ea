//! Profile discovery and the top level of a profile file (SPEC §3, §4, §8).
//!
//! Invariant: a [`Profile`] in the [`Registry`] passed every check of this module and of
//! `points.rs`, `registers.rs`, `serial.rs`, `lora.rs` and `vocab.rs`; every problem in
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

use super::report::Report;
use super::{Profile, Protocol, keyword, lora, points, serial};
use crate::model::limits::{MAX_PERIOD_MS, MAX_PERIOD_S};
use crate::model::{FileError, Kind, line_col};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Profiles are small; anything bigger is not a profile (and would be read into memory).
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// A problem in a profile file: `file: key: message` (the same shape as the config's).
pub type ProfileError = FileError;

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
        let file_error = |message: String| vec![ProfileError::file_level(path, message)];
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
    let dir_error = |message: String| ProfileError::file_level(dir, message);
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
            Err(e) => errors.push(ProfileError::file_level(path, format!("cannot read: {e}"))),
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
    "snmp",
    "point",
];

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
    snmp: Option<toml::Table>,
}

/// Parses and validates the text of one profile file.
pub fn parse(path: &Path, text: &str) -> Result<Profile, Vec<ProfileError>> {
    let mut r = Report::new(path);
    let mut top = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(e) => {
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
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
    let mut raw_points = top.remove("point");
    let protocol_word = top.get("protocol").and_then(|p| p.as_str());
    let early_protocol = protocol_word.and_then(|p| p.parse::<Protocol>().ok());
    let oids = super::snmp::take_oids(&mut r, raw_points.as_mut(), early_protocol);
    let raw: Option<RawProfile> = r.raw(top, "");

    let name = raw
        .as_ref()
        .and_then(|raw| check_name(&mut r, raw.name.as_deref()));
    let kind = raw.as_ref().and_then(|raw| {
        r.one_of("kind", raw.kind.as_deref(), |s| {
            keyword(s, &Kind::ALL, Kind::as_str)
        })
    });
    let protocol = raw
        .as_ref()
        .and_then(|raw| r.one_of("protocol", raw.protocol.as_deref(), str::parse));
    // Periods: positive, at most a year (`MAX_PERIOD_S`) so no timer overflows.
    let positive = |r: &mut Report, key: &str, v: Option<i64>, max: u64, unit: &str| {
        let v = v?;
        let ok = u64::try_from(v).ok().filter(|v| *v > 0);
        match ok {
            None => r.err(key, format!("must be a positive integer, got {v}")),
            Some(n) if n > max => {
                r.err(
                    key,
                    format!("{n} is too long: at most {max} {unit} (a year)"),
                );
                return None;
            }
            Some(_) => {}
        }
        ok
    };
    let poll_ms = raw
        .as_ref()
        .and_then(|raw| positive(&mut r, "poll_ms", raw.poll_ms, MAX_PERIOD_MS, "ms"));
    let uplink_interval_s = raw.as_ref().and_then(|raw| {
        positive(
            &mut r,
            "uplink_interval_s",
            raw.uplink_interval_s,
            MAX_PERIOD_S,
            "s",
        )
    });
    if let (Some(raw), Some(protocol)) = (&raw, protocol) {
        if raw.serial.is_some() && protocol != Protocol::Serial {
            r.err("serial", "only serial profiles take a [serial] table");
        }
        if raw.lora.is_some() && protocol != Protocol::Lora {
            r.err("lora", "only lora profiles take a [lora] table");
        }
        if protocol == Protocol::Ocpp && kind.is_some_and(|k| k != Kind::EvCharger) {
            r.err(
                "kind",
                "ocpp profiles describe EV chargers: kind = \"ev_charger\"",
            );
        }
        if raw.poll_ms.is_some() && protocol == Protocol::Ocpp {
            r.err(
                "poll_ms",
                "ocpp chargers are not polled: they send their data",
            );
        }
        if raw.snmp.is_some() && protocol != Protocol::Snmp {
            r.err("snmp", "only snmp profiles take an [snmp] table");
        }
        if raw.uplink_interval_s.is_some() && protocol != Protocol::Lora {
            r.err(
                "uplink_interval_s",
                "only lora profiles take uplink_interval_s",
            );
        }
    }

    let mut points = points::check_points(&mut r, raw_points, kind, protocol);
    if protocol == Some(Protocol::Lora) {
        points::add_radio_points(&mut points);
    }
    if protocol == Some(Protocol::Reach) {
        super::snmp::check_reach(&mut r, &points);
        super::snmp::add_reach_points(&mut points);
    }
    let snmp = match (&raw, protocol) {
        (Some(raw), Some(Protocol::Snmp)) => {
            super::snmp::check_snmp(&mut r, raw.snmp.as_ref(), &points, oids)
        }
        _ => None,
    };
    let lora = match (&raw, protocol) {
        (Some(raw), Some(Protocol::Lora)) => lora::check_lora(&mut r, raw.lora.as_ref(), &points),
        _ => None,
    };
    let serial = match (&raw, protocol) {
        (Some(raw), Some(Protocol::Serial)) => match &raw.serial {
            Some(table) => serial::check_serial(&mut r, table.clone(), &points),
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
            lora,
            snmp,
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

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
