//! The gateway's state as one serializable snapshot: what `/api/status`, the status page
//! and `polegate status` show, and what `/metrics` is built from. Built from cheap
//! reads (atomics, short locks, one queue read); never waits on the pipeline.

use super::Sources;
use crate::config::{Framing, Transport};
use crate::model::{LinkState, now_ms};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub gateway: String,
    pub version: String,
    pub uptime_s: u64,
    /// "ok", or "stalled" with the parts named in `stalled`.
    pub health: String,
    pub stalled: Vec<String>,
    pub broker: String,
    pub buffer: BufferView,
    pub published: u64,
    pub devices: Vec<DeviceView>,
    pub errors: Vec<(String, u64)>,
    pub links: Vec<LinkView>,
    /// The lighting schedules (SPEC §10): the `P/G/schedule` view and the write counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::ScheduleStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BufferView {
    pub events: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub oldest_age_s: Option<f64>,
    /// "ok" or "degraded".
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceView {
    pub id: String,
    pub kind: String,
    pub profile: String,
    /// "modbus_tcp", "modbus_bus", "serial", "lora", ...
    pub transport: String,
    /// Address, or bus and unit.
    pub address: String,
    /// "online", "offline" or "unknown" (not heard from yet).
    pub state: String,
    pub reason: Option<String>,
    pub points: Vec<PointView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PointView {
    pub name: String,
    pub value: serde_json::Value,
    pub unit: Option<String>,
    pub age_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkView {
    pub link: String,
    pub errors: Vec<(String, u64)>,
}

fn address(t: &Transport) -> String {
    match t {
        Transport::ModbusTcp {
            address,
            unit,
            framing,
        } => match framing {
            Framing::Tcp => format!("{address} unit {unit}"),
            Framing::Rtu => format!("{address} unit {unit} (RTU)"),
        },
        Transport::ModbusBus { bus, unit } => format!("bus {bus} unit {unit}"),
        Transport::Serial { bus, address } => format!("bus {bus} address {address}"),
        Transport::Lora(l) => {
            let hex: String = l.dev_eui.iter().map(|b| format!("{b:02x}")).collect();
            format!("DevEUI {hex}")
        }
        Transport::Ocpp(o) => format!(
            "charge point {} connector {}",
            o.charge_point_id, o.connector
        ),
        Transport::Snmp(crate::config::snmp::SnmpDeviceCfg::Agent { agent, index }) => {
            let port = index.map(|i| format!(" index {i}")).unwrap_or_default();
            format!("SNMP {}{port}", agent.address)
        }
        Transport::Snmp(crate::config::snmp::SnmpDeviceCfg::Bus { bus, index }) => {
            let port = index.map(|i| format!(" index {i}")).unwrap_or_default();
            format!("SNMP bus {bus}{port}")
        }
        Transport::Reach => "reach".to_string(),
    }
}

fn state_rank(s: &str) -> u8 {
    match s {
        "offline" => 0,
        "unknown" => 1,
        _ => 2,
    }
}

/// Reads everything once. Call from a blocking thread: it reads the queue's oldest record.
pub fn snapshot(src: &Sources) -> Status {
    let now = now_ms();
    let b = src.queue.stats();
    let oldest_age_s = match src.queue.read_after(None, 1) {
        Ok(r) => r
            .first()
            .map(|(_, rec)| now.saturating_sub(rec.created_ms) as f64 / 1000.0),
        Err(_) => None,
    };
    let degraded = src.buffer_health.is_degraded();
    let fleet = src.fleet.borrow().clone();
    let mut devices: Vec<DeviceView> = fleet
        .iter()
        .map(|e| {
            let snap = e.info.latest.snapshot();
            let state = match e.info.link.get() {
                LinkState::Online => "online",
                LinkState::Offline => "offline",
                LinkState::Unknown => "unknown",
            };
            let points = e
                .info
                .profile
                .points
                .iter()
                .zip(snap.values.iter())
                .filter_map(|(p, v)| {
                    v.as_ref().map(|(v, at)| PointView {
                        name: p.name.clone(),
                        value: v.to_json(),
                        unit: p.unit.clone(),
                        age_s: now.saturating_sub(*at) as f64 / 1000.0,
                    })
                })
                .collect();
            DeviceView {
                id: e.info.id.clone(),
                kind: e.info.kind.as_str().to_string(),
                profile: e.info.profile.name.clone(),
                transport: e.transport.label().to_string(),
                address: address(&e.transport),
                state: state.to_string(),
                reason: if state == "online" { None } else { snap.reason },
                points,
            }
        })
        .collect();
    devices.sort_by(|a, b| (state_rank(&a.state), &a.id).cmp(&(state_rank(&b.state), &b.id)));
    let stalled = src.liveness.stale(src.stall_after);
    let owned =
        |v: Vec<(&'static str, u64)>| v.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    Status {
        gateway: src.gateway.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: src.started.elapsed().as_secs(),
        health: if stalled.is_empty() { "ok" } else { "stalled" }.to_string(),
        stalled,
        broker: if src.session.connected.load(Relaxed) {
            "connected"
        } else {
            "disconnected"
        }
        .to_string(),
        buffer: BufferView {
            events: b.events,
            bytes: b.bytes,
            dropped: b.dropped,
            oldest_age_s,
            state: if degraded { "degraded" } else { "ok" }.to_string(),
            error: if degraded {
                src.buffer_health.reason()
            } else {
                None
            },
        },
        published: src.counters.published.load(Relaxed),
        devices,
        errors: owned(src.counters.errors()),
        links: src
            .counters
            .breakdown
            .links()
            .into_iter()
            .map(|(link, c)| LinkView {
                link,
                errors: owned(c),
            })
            .collect(),
        schedule: src.schedule.as_ref().and_then(|s| s.status()),
    }
}

/// Seconds as a person reads them: "42 s", "3 min", "2 h 5 min", "3 d 4 h".
pub fn human_age(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The summary `polegate status` prints.
pub fn text(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let online = s.devices.iter().filter(|d| d.state == "online").count();
    let _ = writeln!(
        o,
        "gateway {} (polegate {}), up {}, health {}{}",
        s.gateway,
        s.version,
        human_age(s.uptime_s as f64),
        s.health,
        if s.stalled.is_empty() {
            String::new()
        } else {
            format!(" (stalled: {})", s.stalled.join(", "))
        }
    );
    let _ = writeln!(o, "broker {}, {} events published", s.broker, s.published);
    let _ = writeln!(
        o,
        "buffer {}: {} events, {} bytes, oldest {}, {} dropped{}",
        s.buffer.state,
        s.buffer.events,
        s.buffer.bytes,
        s.buffer.oldest_age_s.map_or("-".to_string(), human_age),
        s.buffer.dropped,
        s.buffer
            .error
            .as_ref()
            .map_or(String::new(), |e| format!(" ({e})"))
    );
    let _ = writeln!(o, "devices: {online} online of {}", s.devices.len());
    for d in &s.devices {
        let values: Vec<String> = d
            .points
            .iter()
            .map(|p| format!("{}={}{}", p.name, p.value, p.unit.as_deref().unwrap_or("")))
            .collect();
        let _ = writeln!(
            o,
            "  {:<8} {:<16} {:<14} {:<28} {}{}",
            d.state,
            d.id,
            d.kind,
            d.address,
            d.reason
                .as_ref()
                .map_or(String::new(), |r| format!("({r}) ")),
            values.join(" ")
        );
    }
    if let Some(sch) = &s.schedule {
        let _ = writeln!(o, "schedule: clock {}", sch.view.clock);
        for (id, p) in &sch.view.programs {
            let _ = writeln!(
                o,
                "  {id}: {} since {}, next {}, {} devices{}",
                p.at.as_deref().unwrap_or("no step"),
                p.since.as_deref().unwrap_or("-"),
                p.next.as_deref().unwrap_or("-"),
                p.devices,
                if p.overridden.is_empty() {
                    String::new()
                } else {
                    format!(", overridden: {}", p.overridden.join(", "))
                }
            );
        }
    }
    let errors: Vec<String> = s
        .errors
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let _ = writeln!(
        o,
        "errors: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(" ")
        }
    );
    o
}
