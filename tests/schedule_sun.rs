//! SPEC §10 "Times" against an independent implementation: `polegate schedule --json`
//! (the real binary) gives sunrise, sunset, civil dawn and dusk within 60 s of the Python
//! `astral` package (NOAA's algorithm) at several places and dates, both 2026 DST change
//! days in Europe/Paris included; and on those two days a fixed step in the spring gap
//! falls on the first instant after it, one in the autumn fold on its first occurrence.

use crate::common::*;
use serde_json::{Value, json};
use std::process::Command;

/// (name, latitude, longitude, zone)
const PLACES: &[(&str, f64, f64, &str)] = &[
    ("dijon", 47.3220, 5.0415, "Europe/Paris"),
    ("oslo", 59.9139, 10.7522, "Europe/Oslo"),
    ("sydney", -33.8688, 151.2093, "Australia/Sydney"),
    ("quito", -0.1807, -78.4678, "America/Guayaquil"),
    ("new-york", 40.7128, -74.0060, "America/New_York"),
];

const DATES: &[&str] = &[
    "2026-03-29", // Europe: spring forward
    "2026-06-21",
    "2026-09-23",
    "2026-10-25", // Europe: fall back
    "2026-12-21",
];

/// A configuration with the place and one program: the four sun events and a step at
/// 02:30 (in the gap and in the fold on the Paris DST days).
fn config(lat: f64, lon: f64, zone: &str) -> Setup {
    let program = format!(
        "[schedule]\nlatitude = {lat}\nlongitude = {lon}\ntimezone = \"{zone}\"\nclock = \"rtc\"\n\n\
         [[program]]\nid = \"probe\"\ndevices = [\"no-lamp-*\"]\nsteps = [\n\
         {{ at = \"civil_dawn\", set = {{ dim_level = 10 }} }},\n\
         {{ at = \"sunrise\", set = {{ dim_level = 20 }} }},\n\
         {{ at = \"sunset\", set = {{ dim_level = 30 }} }},\n\
         {{ at = \"civil_dusk\", set = {{ dim_level = 40 }} }},\n\
         {{ at = \"02:30\", set = {{ dim_level = 50 }} }},\n]\n"
    );
    Setup::new(free_port(), &program)
}

fn preview(setup: &Setup, date: &str) -> Value {
    let out = Command::new(Process::own_binary())
        .args(["schedule", "--json", "--date", date, "--config"])
        .arg(&setup.path)
        .output()
        .expect("run polegate schedule");
    assert!(
        out.status.success(),
        "polegate schedule failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON preview")
}

/// astral's times for every (lat, lon, zone, date), as RFC 3339 strings (null: none).
fn astral(cases: &[(f64, f64, &str, &str)]) -> Vec<Value> {
    let python = python_with(
        "astral",
        "the schedule tests need Python with astral",
        "astral==3.2",
    );
    let script = r#"
import json, sys, datetime
from zoneinfo import ZoneInfo
from astral import Observer
from astral.sun import sun
out = []
for lat, lon, zone, day in json.loads(sys.argv[1]):
    tz = ZoneInfo(zone)
    try:
        s = sun(Observer(lat, lon), date=datetime.date.fromisoformat(day), tzinfo=tz)
        out.append({k: s[v].isoformat() for k, v in
                    [("civil_dawn", "dawn"), ("sunrise", "sunrise"), ("sunset", "sunset"), ("civil_dusk", "dusk")]})
    except ValueError:
        out.append(None)
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args(["-c", script, &json!(cases).to_string()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "astral failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("astral JSON")
}

/// Civil twilight in Oslo at midsummer: the sun dips to about −6.7°, barely past the
/// −6° of the event, so the crossing is nearly tangent and a hundredth of a degree
/// between two solar models moves it by minutes (SPA and astral's NOAA series differ by
/// ~140 s there). Checked within 3 minutes; every other event within one.
fn grazing(place: &str, date: &str, event: &str) -> bool {
    place == "oslo" && date == "2026-06-21" && event.starts_with("civil")
}

fn seconds(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .as_second()
}

#[test]
fn sun_times_agree_with_astral_within_a_minute_at_several_places_and_dates() {
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (name, lat, lon, zone) in PLACES {
        let setup = config(*lat, *lon, zone);
        for date in DATES {
            let p = preview(&setup, date);
            assert_eq!(p["timezone"], *zone);
            assert_eq!(p["date"], *date);
            cases.push((*lat, *lon, *zone, *date));
            ours.push((*name, *date, p["sun"].clone()));
        }
    }
    let theirs = astral(&cases);
    let mut worst = 0;
    for ((name, date, sun), reference) in ours.iter().zip(&theirs) {
        for event in ["civil_dawn", "sunrise", "sunset", "civil_dusk"] {
            let (Some(a), Some(b)) = (sun[event].as_str(), reference[event].as_str()) else {
                panic!(
                    "{name} {date} {event}: ours {} astral {}",
                    sun[event], reference[event]
                );
            };
            let diff = (seconds(a) - seconds(b)).abs();
            let limit = if grazing(name, date, event) { 180 } else { 60 };
            if limit == 60 {
                worst = worst.max(diff);
            }
            assert!(
                diff <= limit,
                "{name} {date} {event}: ours {a}, astral {b} ({diff} s apart)"
            );
            // Same local date and offset as astral gives.
            assert_eq!(a[..10], b[..10], "{name} {date} {event}");
            assert_eq!(
                a[a.len() - 6..],
                b[b.len() - 6..],
                "{name} {date} {event} offset"
            );
        }
    }
    eprintln!(
        "largest difference from astral: {worst} s over {} events",
        ours.len() * 4
    );
}

#[test]
fn on_the_paris_dst_days_a_step_in_the_gap_runs_after_it_and_one_in_the_fold_runs_once_first() {
    let setup = config(47.3220, 5.0415, "Europe/Paris");
    let at = |date: &str| -> Vec<(String, String)> {
        preview(&setup, date)["programs"][0]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["at"].as_str().unwrap().to_string(),
                    s["time"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let spring = at("2026-03-29");
    assert_eq!(
        spring[0],
        ("02:30".into(), "2026-03-29T03:00:00+02:00".into()),
        "{spring:?}"
    );
    let autumn = at("2026-10-25");
    assert_eq!(
        autumn[0],
        ("02:30".into(), "2026-10-25T02:30:00+02:00".into()),
        "{autumn:?}"
    );
    // Steps come in time order, each with its offset: the sun steps of that day are CET.
    let times: Vec<&String> = autumn.iter().map(|(_, t)| t).collect();
    let mut sorted = times.clone();
    sorted.sort_by_key(|t| seconds(t));
    assert_eq!(times, sorted);
    assert!(autumn[1].1.ends_with("+01:00"), "{autumn:?}");
}
