//! SNMP and reach profiles (SPEC §11): each point of an `snmp` profile names its `oid`
//! (`{index}` stands for the device's `index` on a shared agent); `[snmp] cycle_off_s`
//! is the pause of a `power_cycle`. Points without an OID are the gateway's own:
//! `power_cycle` (two SETs of `poe_enabled`) and `reachable`/`rtt` (from `reach`).
//!
//! Invariant: a loaded SNMP profile has one OID template per point index (None exactly
//! for those gateway points), each a dotted numeric OID once `{index}` is substituted.

use super::report::Report;
use super::{PointDef, PointType, Profile, Protocol, SnmpSpec};

/// The points an SNMP profile may declare without an OID.
const GATEWAY_POINTS: &[&str] = &["power_cycle", "reachable", "rtt"];

/// SNMP point types (SPEC §11): TruthValue, INTEGER/Gauge32/Counter32/Counter64/TimeTicks,
/// OCTET STRING/IpAddress.
const SNMP_TYPES: &[PointType] = &[
    PointType::Bool,
    PointType::I32,
    PointType::U32,
    PointType::U64,
    PointType::String,
];

/// Deadband of the `rtt` point the gateway adds (ms).
pub const RTT_DEADBAND_MS: f64 = 5.0;

/// Default pause between the two SETs of a power cycle.
pub const DEFAULT_CYCLE_OFF_S: u64 = 5;

/// Removes the `oid` key of every `[[point]]` table (the point checks do not know it) and
/// returns them in point order; reports an `oid` outside an SNMP profile.
pub(super) fn take_oids(
    r: &mut Report,
    raw_points: Option<&mut toml::Value>,
    protocol: Option<Protocol>,
) -> Vec<Option<String>> {
    let Some(toml::Value::Array(items)) = raw_points else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter_mut().enumerate() {
        let key = format!("point[{i}].oid");
        let oid = item.as_table_mut().and_then(|t| t.remove("oid"));
        out.push(match oid {
            None => None,
            Some(_) if protocol.is_some_and(|p| p != Protocol::Snmp) => {
                r.err(key, "only snmp profiles take an oid");
                None
            }
            Some(toml::Value::String(s)) => {
                if let Err(m) = check_oid_template(&s) {
                    r.err(key, m);
                }
                Some(s)
            }
            Some(_) => {
                r.err(key, "must be a string, e.g. \"1.3.6.1.2.1.1.3.0\"");
                None
            }
        });
    }
    out
}

/// A dotted numeric OID in which a component may be `{index}`.
pub fn check_oid_template(s: &str) -> Result<(), String> {
    let body = s.strip_prefix('.').unwrap_or(s);
    let parts: Vec<&str> = body.split('.').collect();
    let ok = parts.len() >= 2
        && parts
            .iter()
            .all(|p| *p == "{index}" || (!p.is_empty() && p.parse::<u32>().is_ok()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not a dotted numeric OID (components 0..=4294967295 or {{index}}), e.g. \"1.3.6.1.2.1.105.1.1.1.3.1.{{index}}\""
        ))
    }
}

/// Checks an snmp profile's points against their OIDs and its `[snmp]` table.
pub(super) fn check_snmp(
    r: &mut Report,
    table: Option<&toml::Table>,
    points: &[PointDef],
    oids: Vec<Option<String>>,
) -> Option<SnmpSpec> {
    let mut cycle_off_s = DEFAULT_CYCLE_OFF_S;
    if let Some(t) = table {
        for (k, v) in t {
            match (k.as_str(), v.as_integer()) {
                ("cycle_off_s", Some(n)) if (1..=300).contains(&n) => cycle_off_s = n as u64,
                ("cycle_off_s", _) => {
                    r.err("snmp.cycle_off_s", "must be an integer of seconds, 1..=300")
                }
                _ => r.err(format!("snmp.{k}"), "unknown key; expected cycle_off_s"),
            }
        }
    }
    // With any point error the profile is rejected anyway and indexes may not line up.
    if !r.errors.is_empty() || oids.len() != points.len() {
        return None;
    }
    for (i, (p, oid)) in points.iter().zip(&oids).enumerate() {
        let key = format!("point[{i}].");
        let gateway = GATEWAY_POINTS.contains(&p.name.as_str());
        match oid {
            None if !gateway => r.err(
                format!("{key}oid"),
                "is required in an snmp profile, e.g. oid = \"1.3.6.1.2.1.1.3.0\"",
            ),
            Some(_) if p.name == "power_cycle" => r.err(
                format!("{key}oid"),
                "power_cycle takes no oid: the gateway writes poe_enabled off, then on",
            ),
            _ => {}
        }
        if oid.is_some() && !SNMP_TYPES.contains(&p.ty) {
            r.err(
                format!("{key}type"),
                format!(
                    "{} is not an SNMP type: use bool, i32, u32, u64 or string",
                    p.ty.as_str()
                ),
            );
        }
    }
    if points.iter().any(|p| p.name == "power_cycle")
        && !points.iter().any(|p| p.name == "poe_enabled" && p.writable)
    {
        r.err(
            "point",
            "power_cycle needs a writable poe_enabled point (the PoE port's pethPsePortAdminEnable)",
        );
    }
    Some(SnmpSpec { oids, cycle_off_s })
}

/// A reach profile has nothing to read but `reachable` and `rtt`.
pub(super) fn check_reach(r: &mut Report, points: &[PointDef]) {
    for (i, p) in points.iter().enumerate() {
        if p.name != "reachable" && p.name != "rtt" {
            r.err(
                format!("point[{i}].name"),
                format!(
                    "a reach profile has only reachable and rtt; '{}' needs a transport (snmp, modbus...)",
                    p.name
                ),
            );
        }
    }
}

/// `reachable` and `rtt`, appended when a profile does not declare them (reach profiles,
/// and the profile of any device configured with `reach`).
pub fn add_reach_points(points: &mut Vec<PointDef>) {
    if points.iter().all(|p| p.name != "reachable") {
        points.push(PointDef::plain(
            "reachable".into(),
            None,
            PointType::Bool,
            None,
        ));
    }
    if points.iter().all(|p| p.name != "rtt") {
        let mut rtt = PointDef::plain("rtt".into(), Some("ms".into()), PointType::F64, None);
        // Round trips jitter by fractions of a millisecond: without a deadband every
        // check would be a telemetry event. A profile that declares rtt sets its own.
        rtt.deadband = Some(RTT_DEADBAND_MS);
        points.push(rtt);
    }
}

/// The profile a device with `reach` runs: its own plus `reachable`/`rtt` (SNMP OID
/// templates extended to the same length).
pub fn with_reach(profile: &Profile) -> Profile {
    let mut p = profile.clone();
    add_reach_points(&mut p.points);
    if let Some(s) = &mut p.snmp {
        s.oids.resize(p.points.len(), None);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_templates_are_dotted_numbers_with_an_optional_index() {
        assert!(check_oid_template("1.3.6.1.2.1.1.3.0").is_ok());
        assert!(check_oid_template(".1.3.6.1.2.1.105.1.1.1.3.1.{index}").is_ok());
        assert!(check_oid_template("sysUpTime.0").is_err());
        assert!(check_oid_template("1..3").is_err());
        assert!(check_oid_template("1").is_err());
        assert!(check_oid_template("1.3.{idx}").is_err());
    }
}
