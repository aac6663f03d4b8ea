//! The validation context every section and entry check writes to, and the merged raw
//! tree it reads: which file (or environment variable) set each key, every problem found
//! so far with its file and key path, and the files secrets came from. A leaf: nothing
//! else of `config/` is imported here, so every check may use it.

use crate::model::FileError;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file a secret is read from, and the key that makes it one (`mqtt.password_file`,
/// `device[3].lora.app_key`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub key: String,
}

/// Where a key or entry came from, and the directory its relative paths resolve against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The file, or `environment POLEGATE__…` for an override.
    pub file: PathBuf,
    pub base: PathBuf,
}

/// The merged raw tree before validation.
#[derive(Debug)]
pub(crate) struct Merged {
    pub main: PathBuf,
    /// Every top-level key except `bus` and `device`.
    pub table: toml::Table,
    /// Dotted key path (`mqtt.password`) -> who set it last; a section -> who declared it first.
    pub origins: BTreeMap<String, Origin>,
    pub buses: Vec<(toml::Value, Origin)>,
    pub devices: Vec<(toml::Value, Origin)>,
}

impl Merged {
    /// The origin of `key` or of its nearest parent; the main file otherwise.
    pub fn origin_of(&self, key: &str) -> Origin {
        let mut k = key;
        loop {
            if let Some(o) = self.origins.get(k) {
                return o.clone();
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return origin_for_file(&self.main),
            }
        }
    }
}

pub(super) fn origin_for_file(file: &Path) -> Origin {
    Origin {
        file: file.to_path_buf(),
        base: file.parent().unwrap_or(Path::new("")).to_path_buf(),
    }
}

/// `prefix.key`, or `key` at the top level.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `p` as written at `origin`: relative paths resolve against its directory.
pub(crate) fn resolve(origin: &Origin, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        origin.base.join(p)
    }
}

/// Collects errors, each with the file that holds the key.
pub(super) struct Ctx<'a> {
    pub merged: &'a Merged,
    pub errors: &'a mut Vec<FileError>,
    /// Keys already reported with a type or unknown-key error: later checks stay quiet
    /// about them (no "is required" after "invalid type").
    pub shaped: BTreeSet<String>,
    /// Files secrets are read from (see `secrets.rs`).
    pub secrets: Vec<SecretFile>,
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
        self.errors.push(FileError {
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
