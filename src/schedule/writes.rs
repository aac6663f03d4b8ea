//! What a step writes to one device, pure: the step's points (less those under a
//! control-room override), validated against the device's profile like a command, less
//! the points whose latest reading already equals the value.

use crate::commands::validate;
use crate::model::Value;
use crate::pipeline::latest::Snapshot;
use crate::profile::Profile;

/// Whether a reading equals a value to write (numbers by value: a scaled point reads
/// back `40.0` for a written `40`; booleans as 0/1).
pub fn same(read: &Value, want: &Value) -> bool {
    match (read, want) {
        (Value::Text(a), Value::Text(b)) => a == b,
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            _ => false,
        },
    }
}

/// The (point, value) pairs of `set` to write to a device with `profile` whose latest
/// readings are `latest`, skipping `overridden` points and those already at the value.
/// A point the profile lacks or refuses is left out (`check` reports it).
pub fn due(
    profile: &Profile,
    set: &[(String, serde_json::Value)],
    overridden: &[String],
    latest: &Snapshot,
) -> Vec<(String, serde_json::Value)> {
    set.iter()
        .filter(|(name, _)| !overridden.contains(name))
        .filter(|(name, json)| {
            let one = [(name.clone(), json.clone())];
            let Ok(w) = validate::validate(profile, &one) else {
                return false;
            };
            let Some((idx, want)) = w.first() else {
                return false;
            };
            !matches!(latest.values.get(*idx), Some(Some((read, _))) if same(read, want))
        })
        .cloned()
        .collect()
}

/// The fail-safe's points (SPEC §10 "Clock"): `on = true` and `dim_level = 100`, those
/// of the two the profile has as writable points.
pub fn fail_safe(profile: &Profile) -> Vec<(String, serde_json::Value)> {
    [
        ("on", serde_json::json!(true)),
        ("dim_level", serde_json::json!(100)),
    ]
    .into_iter()
    .filter(|(n, _)| profile.point(n).is_some_and(|(_, p)| p.writable))
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}
