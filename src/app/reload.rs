//! Reload (SIGHUP or a file change): the configuration is loaded again off the async
//! workers and, when valid, applied as a diff (see the module documentation of `app`).

use super::plan::{self, DriverPlan, DriverSettings};
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
                Counters::inc(&self.sh.counters.reload_failed);
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
        let old_infos = self.device_infos();
        let (kept, stopped) = self
            .apply_drivers(plan::plan(&new, registry), deadline)
            .await;
        let new_infos = self.device_infos();
        let removed = self.remove_devices(old_infos, &new_infos).await;
        let _ = self.sh.tx.send(Input::Devices(new_infos.clone())).await;
        if pipeline_settings(&new) != pipeline_settings(&self.cfg) {
            let settings = pipeline_settings(&new);
            let _ = self.sh.tx.send(Input::Settings(settings)).await;
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
            drivers_stopped = stopped,
            devices_removed = removed,
            devices = new_infos.len(),
            "configuration reloaded"
        );
    }

    /// Stops the drivers whose settings changed or that are gone, starts the new and
    /// changed ones, keeps the others running; (kept, stopped).
    async fn apply_drivers(
        &mut self,
        plans: Vec<DriverPlan>,
        deadline: tokio::time::Instant,
    ) -> (usize, usize) {
        let wanted: HashMap<&str, &DriverSettings> = plans
            .iter()
            .map(|p| (p.key.as_str(), &p.settings))
            .collect();
        let (mut kept, mut stopped) = (0usize, 0usize);
        let keys: Vec<String> = self.drivers.keys().cloned().collect();
        for key in keys {
            let same =
                wanted.get(key.as_str()).copied() == self.drivers.get(&key).map(|d| &d.settings);
            if !same && let Some(d) = self.drivers.remove(&key) {
                d.stop(deadline).await;
                stopped += 1;
            }
        }
        for plan in plans {
            if self.drivers.contains_key(&plan.key) {
                kept += 1;
                continue;
            }
            if let Some(d) = drivers::spawn(plan, &self.sh).await {
                self.drivers.insert(d.key.clone(), d);
            }
        }
        (kept, stopped)
    }

    /// Tells the pipeline about the devices of `old` that no driver runs any more (they
    /// get an offline state with reason "removed"); how many.
    async fn remove_devices(&self, old: Vec<Arc<DeviceInfo>>, new: &[Arc<DeviceInfo>]) -> usize {
        let new_ids: HashSet<&str> = new.iter().map(|d| d.id.as_str()).collect();
        let mut removed = 0;
        for d in old.into_iter().filter(|d| !new_ids.contains(d.id.as_str())) {
            tracing::info!(device_id = %d.id, profile = %d.profile.name, "device removed");
            let _ = self.sh.tx.send(Input::Removed(d)).await;
            removed += 1;
        }
        removed
    }
}
