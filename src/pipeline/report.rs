//! Reporting rules (SPEC §8 "Reporting"): a point is reported when it differs from the
//! last reported value (numbers: by at least `deadband` when set, else any change), on
//! the first good read after start or after the device comes back online, and every
//! `heartbeat` (then every point read). Pure, time injected.

use crate::model::Value;
use crate::profile::PointDef;

#[derive(Debug, Clone)]
pub struct Reporter {
    last: Vec<Option<Value>>,
    last_full_ms: Option<u64>,
    heartbeat_ms: u64,
}

impl Reporter {
    pub fn new(points: usize, heartbeat_ms: u64) -> Reporter {
        Reporter {
            last: vec![None; points],
            last_full_ms: None,
            heartbeat_ms,
        }
    }

    /// Forget what was reported: the next reading reports every point (device came back).
    pub fn reset(&mut self) {
        self.last.iter_mut().for_each(|v| *v = None);
        self.last_full_ms = None;
    }

    /// The subset of `values` (point index, value) to report now.
    pub fn select(
        &mut self,
        defs: &[PointDef],
        values: Vec<(usize, Value)>,
        now_ms: u64,
        force: &[usize],
    ) -> Vec<(usize, Value)> {
        let full = match self.last_full_ms {
            None => true,
            Some(t) => self.heartbeat_ms > 0 && now_ms.saturating_sub(t) >= self.heartbeat_ms,
        };
        if full {
            self.last_full_ms = Some(now_ms);
        }
        let mut out = Vec::with_capacity(if full { values.len() } else { 2 });
        for (idx, value) in values {
            let (Some(slot), Some(def)) = (self.last.get_mut(idx), defs.get(idx)) else {
                continue;
            };
            let report = full
                || force.contains(&idx)
                || match slot {
                    None => true,
                    Some(prev) => changed(prev, &value, def.deadband),
                };
            if report {
                *slot = Some(value.clone());
                out.push((idx, value));
            }
        }
        out
    }
}

fn changed(prev: &Value, new: &Value, deadband: Option<f64>) -> bool {
    match (prev, new, deadband) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_), Some(db)) => {
            match (prev.as_f64(), new.as_f64()) {
                (Some(a), Some(b)) => (b - a).abs() >= db,
                _ => true,
            }
        }
        _ => prev != new,
    }
}

#[cfg(test)]
mod tests {
    //! Proves the deadband, first-read, reset and heartbeat rules of SPEC §8.
    use super::*;
    use crate::profile::PointType;

    fn def(name: &str, deadband: Option<f64>) -> PointDef {
        PointDef {
            name: name.into(),
            unit: None,
            ty: PointType::F32,
            reg: None,
            scale: 1.0,
            offset: 0.0,
            deadband,
            writable: false,
            min: None,
            max: None,
            values: None,
            scaling: Default::default(),
        }
    }

    fn names(defs: &[PointDef], r: &[(usize, Value)]) -> Vec<String> {
        r.iter().map(|(i, _)| defs[*i].name.clone()).collect()
    }

    #[test]
    fn the_first_read_reports_every_point_then_only_changes() {
        let defs = vec![def("power", Some(1.0)), def("on", None)];
        let mut r = Reporter::new(2, 300_000);
        let first = r.select(
            &defs,
            vec![(0, Value::Float(10.0)), (1, Value::Bool(true))],
            0,
            &[],
        );
        assert_eq!(names(&defs, &first), ["power", "on"]);
        let same = r.select(
            &defs,
            vec![(0, Value::Float(10.5)), (1, Value::Bool(true))],
            1000,
            &[],
        );
        assert!(
            same.is_empty(),
            "within deadband and unchanged bool: {same:?}"
        );
        let moved = r.select(
            &defs,
            vec![(0, Value::Float(11.0)), (1, Value::Bool(false))],
            2000,
            &[],
        );
        assert_eq!(names(&defs, &moved), ["power", "on"]);
    }

    #[test]
    fn deadband_is_measured_from_the_last_reported_value_not_the_last_read() {
        let defs = vec![def("power", Some(1.0))];
        let mut r = Reporter::new(1, 300_000);
        r.select(&defs, vec![(0, Value::Float(10.0))], 0, &[]);
        assert!(
            r.select(&defs, vec![(0, Value::Float(10.6))], 1, &[])
                .is_empty()
        );
        let crept = r.select(&defs, vec![(0, Value::Float(11.0))], 2, &[]);
        assert_eq!(crept, vec![(0, Value::Float(11.0))]);
    }

    #[test]
    fn without_deadband_any_change_is_reported() {
        let defs = vec![def("x_count", None)];
        let mut r = Reporter::new(1, 300_000);
        r.select(&defs, vec![(0, Value::Int(1))], 0, &[]);
        assert!(r.select(&defs, vec![(0, Value::Int(1))], 1, &[]).is_empty());
        assert_eq!(r.select(&defs, vec![(0, Value::Int(2))], 2, &[]).len(), 1);
    }

    #[test]
    fn heartbeat_reports_every_point_even_unchanged() {
        let defs = vec![def("power", Some(1.0)), def("on", None)];
        let mut r = Reporter::new(2, 10_000);
        let vals = || vec![(0, Value::Float(1.0)), (1, Value::Bool(true))];
        assert_eq!(r.select(&defs, vals(), 0, &[]).len(), 2);
        assert!(r.select(&defs, vals(), 9_999, &[]).is_empty());
        assert_eq!(r.select(&defs, vals(), 10_000, &[]).len(), 2);
        assert!(r.select(&defs, vals(), 15_000, &[]).is_empty());
    }

    #[test]
    fn after_a_reset_the_next_read_reports_everything() {
        let defs = vec![def("power", Some(1.0))];
        let mut r = Reporter::new(1, 300_000);
        r.select(&defs, vec![(0, Value::Float(1.0))], 0, &[]);
        r.reset();
        assert_eq!(
            r.select(&defs, vec![(0, Value::Float(1.0))], 1, &[]).len(),
            1
        );
    }

    #[test]
    fn text_values_are_reported_on_change_whatever_the_deadband() {
        let defs = vec![def("status", Some(5.0))];
        let mut r = Reporter::new(1, 300_000);
        r.select(&defs, vec![(0, Value::Text("available".into()))], 0, &[]);
        assert!(
            r.select(&defs, vec![(0, Value::Text("available".into()))], 1, &[])
                .is_empty()
        );
        assert_eq!(
            r.select(&defs, vec![(0, Value::Text("charging".into()))], 2, &[])
                .len(),
            1
        );
    }
}
