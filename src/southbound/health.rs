//! Device liveness shared by every polled driver (SPEC §8 "Lifecycle"): a device is
//! `online` from its first good cycle and `offline` after [`OFFLINE_AFTER_FAILURES`]
//! consecutive failed cycles. Each transition is one log line and one state event;
//! failures are logged once, summarized while they last, and once on recovery.

use crate::model::LinkState;
use crate::model::{Value, now_ms};
use crate::ops::failure_log::{FailureLog, LogAction};
use crate::pipeline::{DeviceInfo, Input};
use std::fmt;
use std::sync::Arc;

/// Consecutive failed poll cycles after which a device is reported offline.
pub const OFFLINE_AFTER_FAILURES: u32 = 3;

#[derive(Debug, Default)]
pub struct Health {
    failures: u32,
    log: FailureLog,
}

impl Health {
    /// A good cycle: the state event when the device comes online, then its reading.
    /// Returns true when this cycle brought it online.
    pub fn good(
        &mut self,
        info: &Arc<DeviceInfo>,
        bus_id: &str,
        values: Vec<(usize, Value)>,
        out: &mut Vec<Input>,
    ) -> bool {
        self.failures = 0;
        if let LogAction::Recovered { count } = self.log.success() {
            tracing::info!(device_id = %info.id, bus_id = %bus_id, profile = %info.profile.name, failures = count, "device responding again");
        }
        let came_online = info.link.set(LinkState::Online);
        if came_online {
            tracing::info!(device_id = %info.id, bus_id = %bus_id, profile = %info.profile.name, "device online");
            out.push(Input::State {
                device: info.clone(),
                online: true,
                reason: None,
            });
        }
        if !values.is_empty() {
            out.push(Input::Reading {
                device: info.clone(),
                values,
                at_ms: now_ms(),
                force: Vec::new(),
            });
        }
        came_online
    }

    /// A failed cycle: logged as the failure log says; the offline state event, with
    /// `reason` as its text, on the [`OFFLINE_AFTER_FAILURES`]th in a row.
    pub fn bad(
        &mut self,
        info: &Arc<DeviceInfo>,
        bus_id: &str,
        reason: &dyn fmt::Display,
        out: &mut Vec<Input>,
    ) {
        self.failures += 1;
        if let Some(failures) = self.log.due(std::time::Instant::now()) {
            tracing::warn!(device_id = %info.id, bus_id = %bus_id, profile = %info.profile.name, error = %reason, failures, "device poll failed");
        }
        if self.failures >= OFFLINE_AFTER_FAILURES && info.link.set(LinkState::Offline) {
            tracing::warn!(device_id = %info.id, bus_id = %bus_id, profile = %info.profile.name, failures = self.failures, "device offline");
            out.push(Input::State {
                device: info.clone(),
                online: false,
                reason: Some(reason.to_string()),
            });
        }
    }
}
