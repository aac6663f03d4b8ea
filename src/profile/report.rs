//! Collecting a profile's problems: every check pushes onto one [`Report`] with the key
//! path of what it checks, so one run lists every problem of the file.

use super::{ProfileError, UnknownKeyword};
use crate::script::{Engine, Script};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Why a script must define its write function.
pub(super) const WRITABLE: &str = ", needed by writable points";

/// The problems of one file, and the file (scripts resolve beside it).
pub(super) struct Report<'a> {
    pub file: &'a Path,
    pub errors: Vec<ProfileError>,
}

impl Report<'_> {
    pub fn new(file: &Path) -> Report<'_> {
        Report {
            file,
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(ProfileError::new(self.file, key.into(), message.into()));
    }

    /// Reports keys not in `allowed` and removes them, so serde sees only known keys.
    pub fn unknown_keys(&mut self, table: &mut toml::Table, allowed: &[&str], prefix: &str) {
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
    pub fn raw<T: DeserializeOwned>(&mut self, table: toml::Table, prefix: &str) -> Option<T> {
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

    /// A required keyword parsed by `parse` (a `FromStr` or [`super::keyword`]); its
    /// absence and a wrong spelling are both reported at `key`.
    pub fn one_of<T>(
        &mut self,
        key: &str,
        v: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, UnknownKeyword>,
    ) -> Option<T> {
        let Some(v) = v else {
            self.err(key, "required");
            return None;
        };
        parse(v).map_err(|e| self.err(key, e.to_string())).ok()
    }

    /// Reports at `key` unless `script` (the file `file`) defines `fn name(params)`; `why`
    /// ends the message (", needed by writable points") or is empty.
    pub fn require_fn(
        &mut self,
        key: &str,
        (file, script): (&str, &Script),
        name: &str,
        params: &[&str],
        why: &str,
    ) {
        if !script.has_fn(name, params.len()) {
            let params = params.join(", ");
            self.err(
                key,
                format!("{file} does not define fn {name}({params}){why}"),
            );
        }
    }

    /// Compiles `name`, a script file beside the profile, reporting a failure at `key`.
    pub fn script(&mut self, key: &str, name: &str) -> Option<Script> {
        let path = self.file.parent().unwrap_or(Path::new(".")).join(name);
        Engine::new()
            .compile_file(&path)
            .map_err(|e| self.err(key, e.to_string()))
            .ok()
    }
}
