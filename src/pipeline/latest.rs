//! The latest value of every point of a device and the reason of its last transition,
//! kept for the operator's views (status page, `/api/status`). The pipeline writes it on
//! each reading and transition; readers copy it out under a short lock, never held
//! across an await.

use crate::model::Value;
use crate::ops::lock::lock;
use std::sync::Mutex;

/// One point's latest value and when it was read (ms since the epoch).
pub type Sample = Option<(Value, u64)>;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// By point index in the profile.
    pub values: Vec<Sample>,
    /// Why the device went offline (its last `state` event), if it did.
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
pub struct Latest(Mutex<Snapshot>);

impl Latest {
    /// Records `values` (point index, value) read at `at_ms`.
    pub fn record(&self, values: &[(usize, Value)], at_ms: u64) {
        let mut s = lock(&self.0);
        for (i, v) in values {
            if s.values.len() <= *i {
                s.values.resize(*i + 1, None);
            }
            s.values[*i] = Some((v.clone(), at_ms));
        }
    }

    pub fn set_reason(&self, reason: Option<&str>) {
        lock(&self.0).reason = reason.map(str::to_string);
    }

    pub fn snapshot(&self) -> Snapshot {
        lock(&self.0).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_keeps_the_newest_value_of_each_point_with_its_time() {
        let l = Latest::default();
        l.record(&[(2, Value::Int(5))], 10);
        l.record(&[(0, Value::Bool(true)), (2, Value::Int(7))], 20);
        l.set_reason(Some("timeout"));
        let s = l.snapshot();
        assert_eq!(s.values.len(), 3);
        assert_eq!(s.values[0], Some((Value::Bool(true), 20)));
        assert_eq!(s.values[1], None);
        assert_eq!(s.values[2], Some((Value::Int(7), 20)));
        assert_eq!(s.reason.as_deref(), Some("timeout"));
    }

    #[test]
    fn a_copy_with_other_meta_shares_the_link_state_and_the_latest_record() {
        use crate::model::LinkState;
        use crate::pipeline::DeviceInfo;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let (reg, _) = crate::profile::Registry::load(&[dir]);
        let profile = reg.get("generic-lamp-modbus").expect("lamp").clone();
        let original = DeviceInfo::new("cp-1", profile, Default::default(), 60_000);
        let mut meta = serde_json::Map::new();
        meta.insert("ocpp_vendor".into(), "ACME".into());
        let booted = original.with_meta(meta.clone());
        assert_eq!(booted.meta, meta);
        // What the pipeline sets on the copy's events, the status page reads on the original.
        booted.latest.set_reason(Some("charger disconnected"));
        booted.link.set(LinkState::Offline);
        assert_eq!(
            original.latest.snapshot().reason.as_deref(),
            Some("charger disconnected")
        );
        assert_eq!(original.link.get(), LinkState::Offline);
    }
}
