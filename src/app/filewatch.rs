//! Reload on file changes: watches the directory of the main config file, `conf.d/` and
//! every plugins directory (directories, not files: editors and package upgrades replace
//! files by rename, which drops a per-file watch), debounced, and filtered to `.toml`
//! and `.rhai` files outside the state directory.

use crate::config::Config;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last change before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Keeps the watch alive; dropping it stops watching (and its debounce task).
pub struct Watcher {
    _watcher: RecommendedWatcher,
}

fn relevant(p: &Path, state_dir: &Path) -> bool {
    !p.starts_with(state_dir)
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("toml") | Some("rhai")
        )
}

/// A change to a file (not a read: the reload itself reads them all).
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    )
}

/// Sends one reload trigger once `changes` has been quiet for [`DEBOUNCE`] after a change
/// (an editor's save or a package upgrade is a burst of events); ends with the watcher.
async fn debounce(mut changes: mpsc::Receiver<PathBuf>, trigger: mpsc::Sender<()>) {
    while let Some(first) = changes.recv().await {
        tracing::info!(path = %first.display(), "configuration file changed; reloading");
        loop {
            tokio::select! {
                more = changes.recv() => if more.is_none() { return },
                _ = tokio::time::sleep(DEBOUNCE) => break,
            }
        }
        let _ = trigger.try_send(());
    }
}

/// Starts watching; failures are logged and reload stays available through SIGHUP. The
/// watcher's own thread only forwards relevant changes; the debounce is a task of the
/// runtime (no second thread).
pub fn watch(config_path: &Path, cfg: &Config, trigger: mpsc::Sender<()>) -> Option<Watcher> {
    let state_dir = cfg.gateway.state_dir.clone();
    let (changes_tx, changes) = mpsc::channel::<PathBuf>(64);
    let handler = move |res: notify::Result<Event>| match res {
        Ok(event) if is_change(&event.kind) => {
            if let Some(p) = event.paths.iter().find(|p| relevant(p, &state_dir)) {
                // A full channel already holds a change: the reload comes anyway.
                let _ = changes_tx.try_send(p.clone());
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "file watch error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch configuration files; reload with SIGHUP");
            return None;
        }
    };
    tokio::spawn(debounce(changes, trigger));
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
        if let Err(e) = watcher.watch(&path, mode) {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch directory");
        }
    }
    Some(Watcher { _watcher: watcher })
}
