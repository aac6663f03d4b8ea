//! Loading and validating the configuration.

use super::Config;
use crate::profile::Registry;
use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem: `file: key.path: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// e.g. `device[3].modbus.unit`; empty for file-level problems (syntax, unreadable).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

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

/// Loads `path`, `conf.d/*.toml` beside it and `POLEGATE__…` overrides from the process
/// environment.
pub fn load(_path: &Path) -> Result<Config, ConfigErrors> {
    unimplemented!()
}

/// Checks that need the profiles: every device's profile exists and fits its transport.
pub fn cross_check(_cfg: &Config, _profiles: &Registry) -> Vec<ConfigError> {
    unimplemented!()
}
