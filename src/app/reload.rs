//! Reload (SIGHUP or a file change): the configuration is loaded again off the async
//! workers and, when valid, applied as a diff (see the module documentation of `app`).

use super::plan::{self, DriverSettings};
use super::{Supervisor, drivers, load, pipeline_settings, session_identity};
use crate::config::Config;
use crate::ops::counters::Counters;
use crate::pipeline::{DeviceInfo, Input};
use crate::profile::Registry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

impl Supervisor {
    /// Loads `path` and applies it; an invalid configuration is logged, error by error,
    /// and the running one stays.
    pub(super) async fn reload(&mut self, path: &Path) {
        // Parsing and script compiling are CPU work and file reads: off the async
        // workers, which keep polling meanwhile.
        let owned = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || load(&owned, false))
            .await
            .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]));
        match loaded {
            Err(errors) => {
                for e in &errors {
                    tracing::error!(problem = %e, "reload refused");
                }
                tracing::error!(
                    errors = errors.len(),
                    "invalid configuration: the running one stays"
                );
                Counters::inc(&self.counters.reload_failed);
            }
            Ok(l) => {
                crate::ops::logging::set_level(l.config.gateway.log_level.as_deref());
                for w in &l.profile_warnings {
                    tracing::warn!(problem = %w, "profile ignored");
                }
                self.apply(l.config, &l.registry).await;
            }
        }
    }

    /// Applies a validated new configuration as a diff.
    async fn apply(&mut self, new: Config, registry: &Registry) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        if new.gateway.state_dir != self.cfg.gateway.state_dir || new.buffer != self.cfg.buffer {
            tracing::warn!("state_dir and [buffer] changes take effect at the next restart");
        }
        let plans = plan::plan(&new, registry);
        let wanted: HashMap<&str, &DriverSettings> = plans
            .iter()
            .map(|p| (p.key.as_str(), &p.settings))
            .collect();
        let old_ids: HashMap<String, Arc<DeviceInfo>> = self
            .device_infos()
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let (mut kept, mut restarted) = (0usize, 0usize);
        let keys: Vec<String> = self.drivers.keys().cloned().collect();
        for key in keys {
            let same =
                wanted.get(key.as_str()).copied() == self.drivers.get(&key).map(|d| &d.settings);
            if !same && let Some(d) = self.drivers.remove(&key) {
                d.stop(deadline).await;
                restarted += 1;
            }
        }
        for plan in plans {
            if self.drivers.contains_key(&plan.key) {
                kept += 1;
                continue;
            }
            if let Some(d) = drivers::spawn(
                plan,
                &self.queue,
                &self.tx,
                &self.counters,
                &self.drivers_cancel,
                &self.liveness,
            )
            .await
            {
                self.drivers.insert(d.key.clone(), d);
            }
        }
        let new_infos = self.device_infos();
        let new_ids: HashSet<&str> = new_infos.iter().map(|d| d.id.as_str()).collect();
        let removed: Vec<Arc<DeviceInfo>> = old_ids
            .into_iter()
            .filter(|(id, _)| !new_ids.contains(id.as_str()))
            .map(|(_, d)| d)
            .collect();
        let n_removed = removed.len();
        for d in removed {
            tracing::info!(device_id = %d.id, profile = %d.profile.name, "device removed");
            let _ = self.tx.send(Input::Removed(d)).await;
        }
        let _ = self.tx.send(Input::Devices(new_infos.clone())).await;
        if pipeline_settings(&new) != pipeline_settings(&self.cfg) {
            let _ = self.tx.send(Input::Settings(pipeline_settings(&new))).await;
        }
        self.devices_count
            .store(new.devices.iter().filter(|d| d.enabled).count(), Relaxed);
        self.publish_routes();
        if new.schedule != self.cfg.schedule {
            self.schedule_cfg.send_replace(new.schedule.clone());
        }
        let reopen = session_identity(&new) != session_identity(&self.cfg);
        self.cfg = new;
        if reopen {
            tracing::info!("MQTT settings changed: reopening the session");
            self.stop_session(deadline).await;
            self.start_session();
        }
        tracing::info!(
            drivers_kept = kept,
            drivers_started_or_restarted = self.drivers.len() - kept,
            drivers_stopped = restarted,
            devices_removed = n_removed,
            devices = new_infos.len(),
            "configuration reloaded"
        );
    }
}
