//! `/metrics`: the Prometheus exposition (OpenMetrics text) of a [`Status`] snapshot
//! plus the timing histograms. The registry is built per scrape from the snapshot, so
//! there is one owner of each fact (the counters, the queue, the links) and no second
//! copy to keep in step; `prometheus-client` does the formatting. It writes label values
//! as given (0.24.1 escapes nothing), so every value that comes from configuration or
//! from a peer goes through [`label`] first.

use super::status::Status;
use crate::ops::timings::Timings;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What Prometheus asks for and accepts.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// A label value as the text format needs it: `\\`, `\"` and `\n` escaped.
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    r.register(name, help, c);
}

/// The exposition of `s` and `t`, ending with `# EOF`.
pub fn render(s: &Status, t: &Timings, http: &super::HttpCounters) -> String {
    let mut r = Registry::default();
    gauge(&mut r, "polegate_up", "1 while the daemon runs", 1);
    counter(
        &mut r,
        "polegate_published",
        "Events acknowledged by the broker",
        s.published,
    );
    gauge(
        &mut r,
        "polegate_buffer_events",
        "Events in the durable queue",
        s.buffer.events as i64,
    );
    gauge(
        &mut r,
        "polegate_buffer_bytes",
        "Bytes of the events in the queue",
        s.buffer.bytes as i64,
    );
    counter(
        &mut r,
        "polegate_buffer_dropped",
        "Events dropped by buffer.on_full or a storage fault",
        s.buffer.dropped,
    );
    let age = Gauge::<f64, AtomicU64>::default();
    age.set(s.buffer.oldest_age_s.unwrap_or(0.0));
    r.register(
        "polegate_buffer_oldest_age_seconds",
        "Age of the oldest queued event (0 when empty)",
        age,
    );
    gauge(
        &mut r,
        "polegate_buffer_degraded",
        "1 while the queue cannot store (SPEC 5 Storage faults)",
        (s.buffer.state == "degraded") as i64,
    );
    gauge(
        &mut r,
        "polegate_broker_connected",
        "1 while the MQTT session is up",
        (s.broker == "connected") as i64,
    );
    let devices = Family::<Labels, Gauge>::default();
    for state in ["online", "offline", "unknown"] {
        let n = s.devices.iter().filter(|d| d.state == state).count();
        devices
            .get_or_create(&vec![("state", state.to_string())])
            .set(n as i64);
    }
    r.register("polegate_devices", "Enabled devices by state", devices);
    let online = Family::<Labels, Gauge>::default();
    for d in &s.devices {
        online
            .get_or_create(&vec![
                ("device", label(&d.id)),
                ("profile", label(&d.profile)),
            ])
            .set((d.state == "online") as i64);
    }
    r.register(
        "polegate_device_online",
        "1 while the device answers",
        online,
    );
    let errors = Family::<Labels, Counter>::default();
    for (name, n) in &s.errors {
        errors
            .get_or_create(&vec![("counter", label(name))])
            .inc_by(*n);
    }
    r.register(
        "polegate_errors",
        "Error counters (the names of stats.errors)",
        errors,
    );
    let links = Family::<Labels, Counter>::default();
    for l in &s.links {
        for (name, n) in &l.errors {
            links
                .get_or_create(&vec![("link", label(&l.link)), ("counter", label(name))])
                .inc_by(*n);
        }
    }
    r.register("polegate_link_errors", "Modbus errors per link", links);
    r.register(
        "polegate_poll_duration_seconds",
        "One device's poll cycle, per link",
        t.poll.clone(),
    );
    r.register(
        "polegate_publish_ack_seconds",
        "From a publish written to the broker to its PUBACK",
        t.puback.clone(),
    );
    if let Some(sch) = &s.schedule {
        gauge(
            &mut r,
            "polegate_schedule_clock_trusted",
            "1 while the lighting schedules trust the clock (SPEC 10 Clock)",
            sch.clock_trusted as i64,
        );
        counter(
            &mut r,
            "polegate_schedule_wakes",
            "Turns of the scheduler's loop (it sleeps until the next step, override end or reassert)",
            sch.wakes,
        );
        let writes = Family::<Labels, Counter>::default();
        for (program, result, n) in &sch.writes {
            writes
                .get_or_create(&vec![
                    ("program", program.clone()),
                    ("result", result.clone()),
                ])
                .inc_by(*n);
        }
        r.register(
            "polegate_schedule_writes",
            "Writes of the lighting programs by result",
            writes,
        );
    }
    let requests = Family::<Labels, Counter>::default();
    for (code, n) in http.snapshot() {
        requests
            .get_or_create(&vec![("code", code.to_string())])
            .inc_by(n);
    }
    r.register(
        "polegate_http_requests",
        "Requests to this listener by answer (refused connections count as 503)",
        requests,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    //! Label values that could break the exposition are escaped.
    use super::*;

    #[test]
    fn quotes_backslashes_and_newlines_in_label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let f = Family::<Labels, Gauge>::default();
        f.get_or_create(&vec![("profile", label("x\"} 1\nfake_metric 9"))])
            .set(1);
        let mut r = Registry::default();
        r.register("t", "t", f);
        let mut out = String::new();
        encode(&mut out, &r).expect("encodes");
        assert!(!out.contains("\nfake_metric"), "{out}");
        assert!(out.contains(r#"profile="x\"} 1\nfake_metric 9""#), "{out}");
    }
}
