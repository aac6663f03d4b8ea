//! The status page: one server-rendered HTML document with inline style and no script or
//! external asset (it must work on a laptop plugged into the cabinet, offline), readable
//! on a phone, refreshing itself every few seconds. Offline devices come first.

use super::status::{Status, human_age};
use std::fmt::Write as _;

/// Seconds between refreshes of the page.
pub const REFRESH_S: u32 = 5;

/// `s` with the HTML metacharacters escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:.8em;background:#f4f5f7;color:#222}\
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .4em}\
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{background:#fff;border-radius:6px;padding:.6em .8em;flex:1 1 14em}\
.k{color:#666;font-size:.85em}.bad{color:#b00020;font-weight:600}.ok{color:#0a7d32;font-weight:600}.warn{color:#a66300;font-weight:600}\
.dev{background:#fff;border-radius:6px;padding:.6em .8em;margin:.5em 0;border-left:6px solid #0a7d32}\
.dev.offline{border-left-color:#b00020}.dev.unknown{border-left-color:#a66300}\
table{border-collapse:collapse;width:100%}td{padding:.15em .4em;border-top:1px solid #eee;vertical-align:top}\
td.v{text-align:right;font-variant-numeric:tabular-nums}.age{color:#888;font-size:.85em}";

fn class(state: &str) -> &'static str {
    match state {
        "online" | "ok" | "connected" => "ok",
        "unknown" => "warn",
        _ => "bad",
    }
}

/// The whole document.
pub fn render(s: &Status) -> String {
    let mut o = String::with_capacity(8192);
    let online = s.devices.iter().filter(|d| d.state == "online").count();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\"><title>polegate {gw}</title><style>{STYLE}</style></head><body>\
<h1 id=\"gateway\">{gw}</h1><div class=\"k\">polegate {ver} · up {up} · refreshes every {REFRESH_S} s</div>\
<div class=\"cards\">",
        gw = esc(&s.gateway),
        ver = esc(&s.version),
        up = human_age(s.uptime_s as f64),
    );
    let health = if s.stalled.is_empty() {
        "ok".to_string()
    } else {
        format!("stalled: {}", s.stalled.join(", "))
    };
    let _ = write!(
        o,
        "<div class=\"card\"><div class=\"k\">Health</div><span id=\"health\" class=\"{}\">{}</span></div>",
        class(&s.health),
        esc(&health)
    );
    let _ = write!(
        o,
        "<div class=\"card\"><div class=\"k\">Broker</div><span id=\"broker\" class=\"{}\">{}</span>\
<div class=\"k\">{} events published</div></div>",
        class(&s.broker),
        s.broker,
        s.published
    );
    let b = &s.buffer;
    let _ = write!(
        o,
        "<div class=\"card\"><div class=\"k\">Buffer</div><span id=\"buffer\" class=\"{}\">{}</span>{}\
<div class=\"k\"><span id=\"buffer-events\">{}</span> events · {} bytes · oldest {} · {} dropped</div></div>",
        class(&b.state),
        b.state,
        b.error.as_ref().map_or(String::new(), |e| format!(
            " <span class=\"bad\">{}</span>",
            esc(e)
        )),
        b.events,
        b.bytes,
        b.oldest_age_s.map_or("-".to_string(), human_age),
        b.dropped
    );
    let _ = write!(
        o,
        "<div class=\"card\"><div class=\"k\">Devices</div><span id=\"devices\">{online} online of {}</span></div></div>",
        s.devices.len()
    );
    o.push_str("<h2>Devices</h2>");
    for d in &s.devices {
        let _ = write!(
            o,
            "<div class=\"dev {st}\" id=\"dev-{idc}\"><b>{id}</b> <span class=\"{cl}\">{st}</span>{reason}\
<div class=\"k\">{kind} · {profile} · {transport} {addr}</div>",
            st = d.state,
            idc = esc(&d.id),
            id = esc(&d.id),
            cl = class(&d.state),
            reason = d.reason.as_ref().map_or(String::new(), |r| format!(
                " <span class=\"reason\">({})</span>",
                esc(r)
            )),
            kind = esc(&d.kind),
            profile = esc(&d.profile),
            transport = esc(&d.transport),
            addr = esc(&d.address),
        );
        if !d.points.is_empty() {
            o.push_str("<table>");
            for p in &d.points {
                let v = match &p.value {
                    serde_json::Value::String(t) => t.clone(),
                    v => v.to_string(),
                };
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td class=\"v\">{} {}</td><td class=\"age\">{} ago</td></tr>",
                    esc(&p.name),
                    esc(&v),
                    esc(p.unit.as_deref().unwrap_or("")),
                    human_age(p.age_s)
                );
            }
            o.push_str("</table>");
        }
        o.push_str("</div>");
    }
    if let Some(sch) = &s.schedule {
        schedule(&mut o, sch);
    }
    o.push_str("<h2>Errors</h2><table id=\"errors\">");
    let nonzero: Vec<_> = s.errors.iter().filter(|(_, n)| *n > 0).collect();
    if nonzero.is_empty() {
        o.push_str("<tr><td>none</td></tr>");
    }
    for (k, n) in nonzero {
        let _ = write!(o, "<tr><td>{}</td><td class=\"v\">{n}</td></tr>", esc(k));
    }
    o.push_str("</table>");
    if !s.links.is_empty() {
        o.push_str("<h2>Links</h2><table id=\"links\">");
        for l in &s.links {
            let errs: Vec<String> = l
                .errors
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{} {n}", esc(k)))
                .collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&l.link),
                if errs.is_empty() {
                    "no errors".to_string()
                } else {
                    errs.join(", ")
                }
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</body></html>");
    o
}

/// The lighting schedules: the clock, and each program's step, next step and overrides.
fn schedule(o: &mut String, s: &crate::schedule::ScheduleStatus) {
    let _ = write!(
        o,
        "<h2>Schedule</h2><div class=\"k\">clock <span id=\"schedule-clock\" class=\"{}\">{}</span></div><table id=\"schedule\">",
        if s.clock_trusted { "ok" } else { "bad" },
        esc(&s.view.clock)
    );
    for (id, p) in &s.view.programs {
        let step = match (&p.at, &p.since) {
            (Some(at), Some(since)) => format!("{} since {}", esc(at), esc(since)),
            _ => "no step yet".to_string(),
        };
        let _ = write!(
            o,
            "<tr id=\"program-{idc}\"><td>{idc}</td><td class=\"v\">{step}</td><td>next {next}</td><td>{n} devices</td><td>{ov}</td><td>{ex}</td></tr>",
            idc = esc(id),
            next = esc(p.next.as_deref().unwrap_or("-")),
            n = p.devices,
            ov = if p.overridden.is_empty() {
                String::new()
            } else {
                format!("overridden: {}", esc(&p.overridden.join(", ")))
            },
            ex = p
                .exception
                .as_deref()
                .map_or(String::new(), |e| format!("exception {}", esc(e))),
        );
    }
    o.push_str("</table>");
}
