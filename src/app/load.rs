//! Loading and validating a configuration with the profiles it uses (`run`, `check`,
//! reload).

use crate::config::{self, Config};
use crate::profile::Registry;
use std::path::Path;

/// Configuration and profiles, validated together; every problem as one line.
pub struct Loaded {
    pub config: Config,
    pub registry: Registry,
    /// Problems in profile files no device uses (warnings for `run`).
    pub profile_warnings: Vec<String>,
}

/// Loads and validates the configuration and the profiles it uses.
/// `strict` (for `check`) makes every profile problem an error.
pub fn load(path: &Path, strict: bool) -> Result<Loaded, Vec<String>> {
    let cfg =
        config::load(path).map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let (registry, profile_errors) = Registry::load(&cfg.gateway.plugins_dirs);
    let mut errors: Vec<String> = config::cross_check(&cfg, &registry)
        .iter()
        .map(|e| e.to_string())
        .collect();
    let profile_errors: Vec<String> = profile_errors.iter().map(|e| e.to_string()).collect();
    if strict || !errors.is_empty() {
        errors.extend(profile_errors.iter().cloned());
    }
    if errors.is_empty() {
        Ok(Loaded {
            config: cfg,
            registry,
            profile_warnings: if strict { vec![] } else { profile_errors },
        })
    } else {
        Err(errors)
    }
}
