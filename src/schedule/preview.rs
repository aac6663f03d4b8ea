//! `polegate schedule` (SPEC §10 "Preview"): for a date and the configured zone, the sun
//! times and every program's steps in time order with their rule, local time and UTC
//! offset to the second, and the points they set; the exception when one applies.
//! Pure: the caller reads the configuration and chooses the date.

use super::plan::Plan;
use crate::config::schedule::SunEvent;
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Map, Value, json};

fn local(plan: &Plan, t: Timestamp) -> String {
    jiff::ZonedDateTime::new(t, plan.zone().clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The `--json` document.
pub fn json(plan: &Plan, date: Date) -> Value {
    let mut sun = Map::new();
    for e in SunEvent::ALL {
        let v = plan
            .sun(date, e)
            .map_or(Value::Null, |t| json!(local(plan, t)));
        sun.insert(e.as_str().to_string(), v);
    }
    let programs: Vec<Value> = (0..plan.programs.len())
        .map(|p| {
            let exception = plan
                .exception_on(p, date)
                .map(|e| plan.programs[p].exceptions[e].label.clone());
            let steps: Vec<Value> = plan
                .day(p, date)
                .iter()
                .map(|o| {
                    let s = plan.step(p, o);
                    let set: Map<String, Value> = s.set.iter().cloned().collect();
                    json!({"at": s.text, "time": local(plan, o.instant), "set": set})
                })
                .collect();
            json!({"id": plan.programs[p].id, "exception": exception, "steps": steps})
        })
        .collect();
    json!({
        "date": date.to_string(),
        "timezone": plan.zone_name(),
        "sun": sun,
        "programs": programs,
    })
}

/// The plain-text form of the same.
pub fn text(plan: &Plan, date: Date) -> String {
    let doc = json(plan, date);
    let mut out = format!("{date} in {}\n", plan.zone_name());
    for e in SunEvent::ALL {
        let t = doc["sun"][e.as_str()].as_str().unwrap_or("does not occur");
        out.push_str(&format!("  {:<11} {t}\n", e.as_str()));
    }
    for p in doc["programs"].as_array().into_iter().flatten() {
        out.push_str(&format!("program {}", p["id"].as_str().unwrap_or_default()));
        if let Some(e) = p["exception"].as_str() {
            out.push_str(&format!(" (exception {e})"));
        }
        out.push('\n');
        for s in p["steps"].as_array().into_iter().flatten() {
            let set: Vec<String> = s["set"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "  {}  {:<14} {}\n",
                s["time"].as_str().unwrap_or_default(),
                s["at"].as_str().unwrap_or_default(),
                set.join(" ")
            ));
        }
    }
    out
}
