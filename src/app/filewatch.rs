//! Reload on file changes: watches the directory of the main config file, `conf.d/` and
//! every plugins directory (directories, not files: editors and package upgrades replace
//! files by rename, which drops a per-file watch), debounced, and filtered to `.toml`
//! and `.rhai` files outside the state directory.

use crate::config::Config;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last change before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Keeps the watch alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

fn relevant(p: &Path, state_dir: &Path) -> bool {
    !p.starts_with(state_dir)
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("toml") | Some("rhai")
        )
}

/// Starts watching; failures are logged and reload stays available through SIGHUP.
pub fn watch(config_path: &Path, cfg: &Config, trigger: mpsc::Sender<()>) -> Option<Watcher> {
    let state_dir = cfg.gateway.state_dir.clone();
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let hit = events
                .iter()
                .flat_map(|e| e.paths.iter())
                .find(|p| relevant(p, &state_dir));
            if let Some(p) = hit {
                tracing::info!(path = %p.display(), "configuration file changed; reloading");
                let _ = trigger.try_send(());
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "file watch error");
            }
        }
    };
    let mut debouncer = match new_debouncer(DEBOUNCE, None, handler) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch configuration files; reload with SIGHUP");
            return None;
        }
    };
    let dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut targets = vec![(dir.clone(), RecursiveMode::NonRecursive)];
    targets.push((dir.join("conf.d"), RecursiveMode::NonRecursive));
    for p in &cfg.gateway.plugins_dirs {
        targets.push((p.clone(), RecursiveMode::Recursive));
    }
    for (path, mode) in targets {
        if !path.is_dir() {
            continue;
        }
        if let Err(e) = debouncer.watch(&path, mode) {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch directory");
        }
    }
    Some(Watcher {
        _debouncer: debouncer,
    })
}
