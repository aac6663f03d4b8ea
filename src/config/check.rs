//! The readable summary printed by `polegate check` once the configuration and its
//! profiles are valid. Never prints secrets: the broker URL carries no credentials
//! (validation rejects `user:pass@`), and the password is only said to be set.

use super::{Config, bus_kind_label};
use crate::profile::Registry;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A multi-line summary: gateway, broker, buses, device counts per kind and per
/// transport, enabled/disabled, and the profiles used with their files.
pub fn summary(cfg: &Config, reg: &Registry) -> String {
    let mut s = String::new();
    let m = &cfg.mqtt;
    let _ = writeln!(s, "config      {}", cfg.path.display());
    let _ = writeln!(s, "gateway     {}", cfg.gateway.id);
    let auth = match (&m.broker.username, &m.broker.password) {
        (Some(u), Some(_)) => format!(", user {u} (password set)"),
        (Some(u), None) => format!(", user {u}"),
        (None, Some(_)) => ", password set".to_string(),
        (None, None) => String::new(),
    };
    let tls = match (m.broker.tls, &m.broker.ca_file, &m.broker.cert_file) {
        (false, _, _) => "no TLS".to_string(),
        (true, None, _) => "TLS, system roots".to_string(),
        (true, Some(ca), _) => format!("TLS, CA {}", ca.display()),
    };
    let mutual = if m.broker.cert_file.is_some() {
        ", client certificate"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "broker      {} ({tls}{mutual}, client id {}{auth})",
        m.broker.url, m.client_id
    );
    let _ = writeln!(s, "topics      {}/{}/...", m.topic_prefix, cfg.gateway.id);
    let _ = writeln!(s, "state_dir   {}", cfg.gateway.state_dir.display());
    let dirs: Vec<String> = cfg
        .gateway
        .plugins_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let _ = writeln!(s, "plugins     {}", dirs.join(", "));
    let _ = writeln!(
        s,
        "buffer      {} bytes max, flush every {} ms, {}",
        cfg.buffer.max_bytes,
        cfg.buffer.flush_every_ms,
        match cfg.buffer.on_full {
            super::OnFull::DropOldest => "drop_oldest when full",
            super::OnFull::DropNewest => "drop_newest when full",
        }
    );
    if cfg.lora.is_some() {
        let _ = writeln!(s, "lora        [lora] section present");
    }
    if let Some(o) = &cfg.ocpp {
        let scheme = if o.tls.is_some() { "wss" } else { "ws" };
        let mode = match &o.upstream {
            Some(u) => format!("proxy to {u}"),
            None => "central system".to_string(),
        };
        let _ = writeln!(
            s,
            "ocpp        {scheme}://{}/ocpp/<charge point id>, {mode}",
            o.listen
        );
    }
    let _ = writeln!(s, "buses       {}", cfg.buses.len());
    for b in &cfg.buses {
        let parity = match b.parity {
            super::Parity::None => 'N',
            super::Parity::Even => 'E',
            super::Parity::Odd => 'O',
        };
        let _ = writeln!(
            s,
            "  {:<20} {} {} {} {}{}{}",
            b.id,
            bus_kind_label(b.kind),
            b.port.display(),
            b.baud,
            b.data_bits,
            parity,
            b.stop_bits
        );
    }
    let enabled = cfg.devices.iter().filter(|d| d.enabled).count();
    let _ = writeln!(
        s,
        "devices     {} ({} enabled, {} disabled)",
        cfg.devices.len(),
        enabled,
        cfg.devices.len() - enabled
    );
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_transport: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_profile: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &cfg.devices {
        let kind = reg.get(&d.profile).map_or("unknown", |p| p.kind.as_str());
        *by_kind.entry(kind).or_default() += 1;
        *by_transport.entry(d.transport.label()).or_default() += 1;
        *by_profile.entry(d.profile.as_str()).or_default() += 1;
    }
    let _ = writeln!(s, "  by kind       {}", counts(&by_kind));
    let _ = writeln!(s, "  by transport  {}", counts(&by_transport));
    let _ = writeln!(s, "profiles    {} used", by_profile.len());
    for (name, n) in &by_profile {
        match reg.get(name) {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "  {name:<24} {:<10} {:<6} {} device{}  {}",
                    p.kind.as_str(),
                    p.protocol.as_str(),
                    n,
                    if *n == 1 { "" } else { "s" },
                    p.source.display()
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  {name:<24} NOT FOUND  {n} device{}",
                    if *n == 1 { "" } else { "s" }
                );
            }
        }
    }
    s
}

fn counts(m: &BTreeMap<&str, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
