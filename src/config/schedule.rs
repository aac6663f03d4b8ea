//! `[schedule]` and `[[program]]` (SPEC §10): the cabinet as an astronomical time switch.
//! Validated here into the form the scheduler (the `schedule` module) runs; the checks
//! that need the profiles (a point the device lacks, not writable, a value out of range)
//! are in `schedule/check.rs`: they are the command validation of SPEC §8. Every problem
//! names its key path (`program[0].steps[2].at`).

use super::ctx::Ctx;
use super::schedule_parse;
pub use super::schedule_parse::{At, DateSpec, SunEvent};
use super::values::{Checked, Period, Seconds};
use super::{Config, DeviceCfg};
use serde::Deserialize;
use std::collections::HashMap;

pub const DEFAULT_REASSERT_S: u64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Act only while the kernel says the clock is synchronized.
    Ntp,
    /// Always trust the system clock (a battery-backed clock).
    Rtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailSafe {
    /// Clock not trusted: lamps on at 100 %.
    On,
    /// Clock not trusted: leave the lamps as they are.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCfg {
    pub at: At,
    /// As written (`sunset-10m`), for messages and the retained `schedule` payload.
    pub text: String,
    /// (point, value) in the order written.
    pub set: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionCfg {
    pub dates: Vec<DateSpec>,
    /// The dates as written (`12-24, 12-31`), naming the exception in views.
    pub label: String,
    pub steps: Vec<StepCfg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCfg {
    pub id: String,
    /// Device ids; `*` matches any characters.
    pub devices: Vec<String>,
    pub steps: Vec<StepCfg>,
    pub exceptions: Vec<ExceptionCfg>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleCfg {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// IANA name; None: the system's local zone.
    pub timezone: Option<String>,
    pub clock: ClockMode,
    pub fail_safe: FailSafe,
    pub reassert_s: u64,
    pub programs: Vec<ProgramCfg>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    latitude: Option<f64>,
    longitude: Option<f64>,
    timezone: Option<String>,
    clock: Option<String>,
    fail_safe: Option<String>,
    reassert_s: Option<Checked<Seconds<1>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    id: String,
    devices: Vec<String>,
    steps: Vec<RawStep>,
    #[serde(default)]
    exception: Vec<RawException>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    set: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    dates: Vec<String>,
    steps: Vec<RawStep>,
}

/// Whether device `id` matches `pattern` (`*` matches any characters, also none).
pub fn matches(pattern: &str, id: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == id;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !id.starts_with(first) || id.len() < first.len() + last.len() || !id.ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl ProgramCfg {
    /// Whether this program drives device `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.devices.iter().any(|p| matches(p, id))
    }
}

impl ScheduleCfg {
    /// Whether any step of any program uses a sun event.
    pub fn uses_sun(&self) -> bool {
        self.programs.iter().any(|p| {
            p.steps
                .iter()
                .chain(p.exceptions.iter().flat_map(|e| e.steps.iter()))
                .any(|s| matches!(s.at, At::Sun { .. }))
        })
    }
}

/// Validates `[schedule]` and `[[program]]`; None when neither is present.
pub(super) fn schedule(cx: &mut Ctx<'_>, devices: &[DeviceCfg]) -> Option<ScheduleCfg> {
    let has_programs = cx.merged.table.contains_key("program");
    if !cx.merged.table.contains_key("schedule") && !has_programs {
        return None;
    }
    let raw = cx.section::<RawSchedule>("schedule").unwrap_or_default();
    let clock = match raw.clock.as_deref() {
        None | Some("ntp") => ClockMode::Ntp,
        Some("rtc") => ClockMode::Rtc,
        Some(o) => {
            cx.err(
                "schedule.clock",
                format!("'{o}' is not a clock: expected ntp or rtc"),
            );
            ClockMode::Ntp
        }
    };
    let fail_safe = match raw.fail_safe.as_deref() {
        None | Some("on") => FailSafe::On,
        Some("hold") => FailSafe::Hold,
        Some(o) => {
            let msg = format!("'{o}' is not a fail-safe: expected on or hold");
            cx.err("schedule.fail_safe", msg);
            FailSafe::On
        }
    };
    if let Some(lat) = raw.latitude
        && !(-90.0..=90.0).contains(&lat)
    {
        cx.err(
            "schedule.latitude",
            format!("{lat} is out of range -90..=90"),
        );
    }
    if let Some(lon) = raw.longitude
        && !(-180.0..=180.0).contains(&lon)
    {
        cx.err(
            "schedule.longitude",
            format!("{lon} is out of range -180..=180"),
        );
    }
    if raw.latitude.is_some() != raw.longitude.is_some() {
        cx.err(
            "schedule",
            "latitude and longitude go together: set both or neither",
        );
    }
    if let Some(tz) = &raw.timezone
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        let msg = format!(
            "unknown time zone '{tz}': expected an IANA name such as Europe/Paris (see /usr/share/zoneinfo)"
        );
        cx.err("schedule.timezone", msg);
    }
    let reassert_s = cx
        .valid(None, "schedule.reassert_s", raw.reassert_s)
        .map_or(DEFAULT_REASSERT_S, Period::get);
    let programs = match cx.merged.table.get("program").cloned() {
        None => vec![],
        Some(toml::Value::Array(list)) => list
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| program(cx, &format!("program[{i}]"), v))
            .collect(),
        Some(_) => {
            cx.err("program", "must be an array of tables, written [[program]]");
            vec![]
        }
    };
    let cfg = ScheduleCfg {
        latitude: raw.latitude,
        longitude: raw.longitude,
        timezone: raw.timezone,
        clock,
        fail_safe,
        reassert_s,
        programs,
    };
    if cfg.uses_sun() && (cfg.latitude.is_none() || cfg.longitude.is_none()) {
        cx.err(
            "schedule.latitude",
            "is required: a step uses a sun event (sunrise, sunset, civil_dawn, civil_dusk); set latitude and longitude of the cabinet",
        );
    }
    devices_of_programs(cx, &cfg, devices);
    Some(cfg)
}

fn program(cx: &mut Ctx<'_>, key: &str, v: toml::Value) -> Option<ProgramCfg> {
    let raw: RawProgram = cx.de(None, v, key)?;
    if let Err(m) = super::parse::check_id(&raw.id) {
        cx.err(&format!("{key}.id"), m);
    }
    if raw.devices.is_empty() {
        cx.err(&format!("{key}.devices"), "must name at least one device");
    }
    let main_steps = steps(cx, &format!("{key}.steps"), raw.steps);
    let exceptions = raw
        .exception
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let ek = format!("{key}.exception[{i}]");
            let dates = e
                .dates
                .iter()
                .enumerate()
                .filter_map(|(j, d)| {
                    schedule_parse::date_spec(d)
                        .map_err(|m| cx.err(&format!("{ek}.dates[{j}]"), m))
                        .ok()
                })
                .collect();
            ExceptionCfg {
                label: e.dates.join(", "),
                dates,
                steps: steps(cx, &format!("{ek}.steps"), e.steps),
            }
        })
        .collect();
    Some(ProgramCfg {
        id: raw.id,
        devices: raw.devices,
        steps: main_steps,
        exceptions,
    })
}

fn steps(cx: &mut Ctx<'_>, key: &str, raw: Vec<RawStep>) -> Vec<StepCfg> {
    if raw.is_empty() {
        cx.err(key, "must have at least one step");
    }
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let at = schedule_parse::at(&s.at)
                .map_err(|m| cx.err(&format!("{key}[{i}].at"), m))
                .ok()?;
            if s.set.is_empty() {
                cx.err(&format!("{key}[{i}].set"), "must set at least one point");
            }
            let set = s
                .set
                .into_iter()
                .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
                .collect();
            Some(StepCfg {
                at,
                text: s.at,
                set,
            })
        })
        .collect()
}

/// Unique program ids; an exact device id must exist; a device in at most one program.
fn devices_of_programs(cx: &mut Ctx<'_>, cfg: &ScheduleCfg, devices: &[DeviceCfg]) {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, p) in cfg.programs.iter().enumerate() {
        if let Some(j) = cfg.programs[..i].iter().position(|q| q.id == p.id) {
            let msg = format!("duplicate program id '{}' (also program[{j}])", p.id);
            cx.err(&format!("program[{i}].id"), msg);
        }
        for (k, pat) in p.devices.iter().enumerate() {
            if !pat.contains('*') && !devices.iter().any(|d| d.id == *pat) {
                let msg = format!("unknown device id '{pat}'");
                cx.err(&format!("program[{i}].devices[{k}]"), msg);
            }
        }
        for d in devices.iter().filter(|d| p.covers(&d.id)) {
            if let Some(&j) = owner.get(d.id.as_str()) {
                let msg = format!(
                    "device '{}' is already in program '{}' (program[{j}]): a device is in at most one program",
                    d.id, cfg.programs[j].id
                );
                cx.err(&format!("program[{i}].devices"), msg);
            } else {
                owner.insert(&d.id, i);
            }
        }
    }
}

/// Warnings for `check` and `run`: a pattern that matches no device.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let Some(s) = &cfg.schedule else {
        return vec![];
    };
    let mut out = Vec::new();
    for (i, p) in s.programs.iter().enumerate() {
        for (k, pat) in p.devices.iter().enumerate() {
            if pat.contains('*') && !cfg.devices.iter().any(|d| matches(pat, &d.id)) {
                out.push(format!(
                    "{}: program[{i}].devices[{k}]: pattern '{pat}' matches no device",
                    cfg.path.display()
                ));
            }
        }
    }
    out
}
