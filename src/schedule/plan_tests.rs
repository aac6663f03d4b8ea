//! The sans-IO core against fixed instants, without sockets or clocks: the current and
//! next step across midnight, the DST gap and fold of 2026 in Europe/Paris, exceptions,
//! and sun steps skipped in a polar night.

use super::plan::Plan;
use crate::config::schedule::{ExceptionCfg, ProgramCfg, ScheduleCfg, StepCfg};
use crate::config::schedule_parse::{at, date_spec};
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;

fn step(a: &str, set: serde_json::Value) -> StepCfg {
    StepCfg {
        at: at(a).unwrap(),
        text: a.to_string(),
        set: set.as_object().unwrap().clone().into_iter().collect(),
    }
}

/// The SPEC §10 example program in Dijon, with one exception.
fn residential(lat: f64, lon: f64, tz: &str) -> Plan {
    let cfg = ScheduleCfg {
        latitude: Some(lat),
        longitude: Some(lon),
        timezone: Some(tz.into()),
        clock: crate::config::schedule::ClockMode::Rtc,
        fail_safe: crate::config::schedule::FailSafe::On,
        reassert_s: 900,
        programs: vec![ProgramCfg {
            id: "residential".into(),
            devices: vec!["lamp-*".into()],
            steps: vec![
                step("sunset-10m", json!({"on": true, "dim_level": 100})),
                step("22:30", json!({"dim_level": 70})),
                step("00:00", json!({"dim_level": 40})),
                step("05:30", json!({"dim_level": 70})),
                step("sunrise+15m", json!({"on": false})),
            ],
            exceptions: vec![ExceptionCfg {
                dates: vec![date_spec("12-24").unwrap(), date_spec("12-31").unwrap()],
                label: "12-24, 12-31".into(),
                steps: vec![
                    step("sunset-10m", json!({"on": true, "dim_level": 100})),
                    step("sunrise+15m", json!({"on": false})),
                ],
            }],
        }],
    };
    Plan::new(&cfg).unwrap()
}

fn dijon() -> Plan {
    residential(47.3220, 5.0415, "Europe/Paris")
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

#[test]
fn at_three_in_the_night_the_current_step_is_midnight_and_at_noon_it_is_sunrise() {
    let p = dijon();
    let night = p.current(0, ts("2026-12-07T03:00:00+01:00")).unwrap();
    assert_eq!((night.index, night.exception), (2, None));
    assert_eq!(night.instant, ts("2026-12-07T00:00:00+01:00"));
    let next = p.next(0, ts("2026-12-07T03:00:00+01:00")).unwrap();
    assert_eq!(next.instant, ts("2026-12-07T05:30:00+01:00"));
    let noon = p.current(0, ts("2026-12-07T12:00:00+01:00")).unwrap();
    assert_eq!(noon.index, 4);
    let evening = p.current(0, ts("2026-12-07T23:00:00+01:00")).unwrap();
    assert_eq!(evening.index, 1);
    // Exactly at a step instant, that step is current; just before, the previous one.
    let t = ts("2026-12-07T22:30:00+01:00");
    assert_eq!(p.current(0, t).unwrap().index, 1);
    assert_eq!(
        p.current(0, ts("2026-12-07T22:29:59+01:00")).unwrap().index,
        0
    );
    assert_eq!(
        p.next(0, ts("2026-12-07T22:29:59+01:00")).unwrap().instant,
        t
    );
}

#[test]
fn a_day_lists_its_steps_in_time_order_and_an_exception_replaces_them() {
    let p = dijon();
    let day: Vec<usize> = p
        .day(0, date("2026-12-07"))
        .iter()
        .map(|o| o.index)
        .collect();
    assert_eq!(day, vec![2, 3, 4, 0, 1]);
    let eve = p.day(0, date("2026-12-24"));
    assert_eq!(eve.len(), 2);
    assert!(eve.iter().all(|o| o.exception == Some(0)));
    // Christmas Eve at 23:00: the exception's sunset step, not 22:30.
    let o = p.current(0, ts("2026-12-24T23:00:00+01:00")).unwrap();
    assert_eq!((o.index, o.exception), (0, Some(0)));
    // The next day is an ordinary one: its midnight step comes next.
    assert_eq!(
        p.next(0, ts("2026-12-24T23:00:00+01:00")).unwrap().instant,
        ts("2026-12-25T00:00:00+01:00")
    );
}

#[test]
fn a_time_in_the_spring_gap_means_the_first_instant_after_it_and_one_in_the_fold_its_first_occurrence()
 {
    let p = dijon();
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert_eq!(
        p.local(date("2026-03-29"), 2 * 3600 + 30 * 60),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        p.local(date("2026-03-29"), 2 * 3600),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        p.local(date("2026-03-29"), 3 * 3600),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert_eq!(
        p.local(date("2026-10-25"), 2 * 3600 + 30 * 60),
        Some(ts("2026-10-25T00:30:00Z"))
    );
    assert_eq!(
        p.local(date("2026-10-25"), 3 * 3600),
        Some(ts("2026-10-25T02:00:00Z"))
    );
}

#[test]
fn sun_steps_are_skipped_in_a_polar_night_and_the_current_step_is_looked_for_further_back() {
    let p = residential(69.6492, 18.9553, "Europe/Oslo"); // Tromsø
    let d = date("2026-12-21");
    assert_eq!(p.sun(d, crate::config::schedule::SunEvent::Sunrise), None);
    let day: Vec<usize> = p.day(0, d).iter().map(|o| o.index).collect();
    assert_eq!(day, vec![2, 3, 1]);
    let o = p.current(0, ts("2026-12-21T12:00:00+01:00")).unwrap();
    assert_eq!(o.index, 3, "05:30 is the latest step before noon");
}

#[test]
fn writes_skip_points_already_at_their_value_and_overridden_points() {
    use crate::model::Value;
    use crate::pipeline::latest::Latest;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let (reg, _) = crate::profile::Registry::load(&[dir]);
    let lamp = reg.get("generic-lamp-modbus").expect("lamp").clone();
    let (on, _) = lamp.point("on").unwrap();
    let (dim, _) = lamp.point("dim_level").unwrap();
    let set = vec![
        ("on".to_string(), json!(true)),
        ("dim_level".to_string(), json!(70)),
    ];
    let latest = Latest::default();
    let due = super::writes::due(&lamp, &set, &[], &latest.snapshot());
    assert_eq!(due.len(), 2, "nothing read yet: everything is written");
    latest.record(&[(on, Value::Bool(true)), (dim, Value::Float(70.0))], 1);
    assert!(super::writes::due(&lamp, &set, &[], &latest.snapshot()).is_empty());
    latest.record(&[(dim, Value::Int(100))], 2);
    let due = super::writes::due(&lamp, &set, &[], &latest.snapshot());
    assert_eq!(due, vec![("dim_level".to_string(), json!(70))]);
    assert!(super::writes::due(&lamp, &set, &["dim_level".into()], &latest.snapshot()).is_empty());
    assert_eq!(super::writes::fail_safe(&lamp).len(), 2);
}
