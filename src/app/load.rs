//! Loading for `check`, `run` and reload: the configuration and the profiles it uses,
//! validated together, every problem as one line (SPEC §8 "check": references are
//! resolved even when the files have errors of another sort); the settings the queue and
//! the pipeline take from a configuration.

use crate::buffer::{QueueOptions, WhenFull};
use crate::config::{self, Config};
use crate::pipeline::PipelineSettings;
use crate::profile::Registry;
use std::path::Path;
use std::time::Duration;

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
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            // Still resolve the profiles, so one run shows every problem (SPEC §8).
            let mut errors: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            if let Some(refs) = config::references(path)
                && let Some(dirs) = &refs.plugins_dirs
            {
                let (registry, profile_errors) = Registry::load(dirs);
                errors.extend(refs.check(&registry).iter().map(|e| e.to_string()));
                errors.extend(profile_errors.iter().map(|e| e.to_string()));
            }
            return Err(errors);
        }
    };
    let (registry, profile_errors) = Registry::load(&cfg.gateway.plugins_dirs);
    let mut errors: Vec<String> = config::cross_check(&cfg, &registry)
        .iter()
        .chain(crate::schedule::check::cross(&cfg, &registry).iter())
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

/// The pipeline's settings for a configuration (compared on reload).
pub(super) fn pipeline_settings(cfg: &Config) -> PipelineSettings {
    PipelineSettings {
        gateway: cfg.gateway.id.clone(),
        topic_prefix: cfg.mqtt.topic_prefix.clone(),
        flush_every: Duration::from_millis(cfg.buffer.flush_every_ms.max(1)),
        stats_every: (cfg.stats.interval_s > 0).then(|| Duration::from_secs(cfg.stats.interval_s)),
    }
}

/// The queue's options for the `[buffer]` section (the daemon and `polegate buffer`).
pub fn queue_options(b: &crate::config::BufferCfg) -> QueueOptions {
    QueueOptions {
        max_bytes: b.max_bytes,
        memory_max_bytes: b.memory_max_bytes,
        on_full: match b.on_full {
            crate::config::OnFull::DropOldest => WhenFull::DropOldest,
            crate::config::OnFull::DropNewest => WhenFull::DropNewest,
        },
        ..QueueOptions::default()
    }
}
