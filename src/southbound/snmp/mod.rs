//! IP equipment over SNMP (SPEC §11): cameras, WiFi access points and the cabinet's PoE
//! switch. One task per agent: a device's own (`snmp = { address, ... }`) or an agent
//! shared by several devices (`[[bus]] kind = "snmp"`, devices by `index`).
//!
//! Layout: `value.rs` (SNMP values <-> point values, pure), `client.rs` (the session with
//! one agent: the `async-snmp` client, errors sorted, every exchange bounded), `task.rs`
//! (the bus protocol: the devices due together in GETs of up to `max_oids`), `write.rs` (SETs,
//! read-back, `power_cycle`).
//!
//! Seam: [`Agents`] collects devices per agent while the supervisor walks the config,
//! [`spawn_agent`] starts the task of one agent (the supervisor registers command routes).
//! The task is the shared bus task ([`crate::southbound::bus`]: schedule, inbox between
//! polls, heartbeat, liveness) with the SNMP protocol plugged in (`task.rs`).

mod client;
mod task;
pub mod value;
mod write;

pub use client::{Session, SnmpError};

use crate::config::Config;
use crate::config::snmp::{SnmpAgentCfg, SnmpDeviceCfg};
use crate::pipeline::DeviceInfo;
use crate::southbound::Wiring;
use async_snmp::Oid;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// One device read through an agent.
#[derive(Debug, Clone)]
pub struct SnmpDevice {
    pub info: Arc<DeviceInfo>,
    pub poll: Duration,
    /// Per profile point: its OID with `{index}` substituted; None for gateway points.
    pub oids: Vec<Option<Oid>>,
    /// The writable `poe_enabled` point a `power_cycle` switches.
    pub poe: Option<usize>,
    pub cycle_off: Duration,
}

impl SnmpDevice {
    /// A device of an SNMP profile at `index`: its OIDs resolved. The device back with
    /// the reason when it cannot run (not an SNMP profile, `{index}` without an index).
    pub fn new(
        info: Arc<DeviceInfo>,
        index: Option<u32>,
        poll: Duration,
    ) -> Result<SnmpDevice, (Arc<DeviceInfo>, String)> {
        let Some(spec) = info.profile.snmp.as_ref() else {
            return Err((info, "profile is not an snmp profile".into()));
        };
        let mut oids = Vec::with_capacity(info.profile.points.len());
        for t in &spec.oids {
            match t.as_deref().map(|t| resolve_oid(t, index)) {
                None => oids.push(None),
                Some(Ok(o)) => oids.push(Some(o)),
                Some(Err(e)) => return Err((info, e)),
            }
        }
        oids.resize(info.profile.points.len(), None);
        let poe = info
            .profile
            .point("poe_enabled")
            .filter(|(i, p)| p.writable && oids.get(*i).is_some_and(Option::is_some))
            .map(|(i, _)| i);
        Ok(SnmpDevice {
            cycle_off: Duration::from_secs(spec.cycle_off_s),
            info,
            poll,
            oids,
            poe,
        })
    }
}

/// An agent and the devices read through it.
#[derive(Debug, Clone)]
pub struct SnmpAgent {
    /// `[[bus]]` id, or the device id of a device with its own agent (logs: `bus_id`).
    pub id: String,
    pub cfg: SnmpAgentCfg,
    pub devices: Vec<SnmpDevice>,
}

/// An OID template with `{index}` replaced.
pub fn resolve_oid(template: &str, index: Option<u32>) -> Result<Oid, String> {
    let t = template.strip_prefix('.').unwrap_or(template);
    let text = if t.contains("{index}") {
        let Some(i) = index else {
            return Err(format!(
                "OID {template} has {{index}} but the device sets no index"
            ));
        };
        t.replace("{index}", &i.to_string())
    } else {
        t.to_string()
    };
    Oid::parse(&text).map_err(|e| format!("OID {text}: {e}"))
}

/// Agents collected from the configuration.
#[derive(Debug, Default)]
pub struct Agents {
    agents: BTreeMap<String, SnmpAgent>,
}

impl Agents {
    /// Adds a device to its agent; logs why and returns false when it cannot run (an
    /// unknown bus, a profile that is not an SNMP profile, an `{index}` without index).
    pub fn add(
        &mut self,
        cfg: &Config,
        device: &SnmpDeviceCfg,
        info: Arc<DeviceInfo>,
        poll: Duration,
    ) -> bool {
        // Keyed apart: a device may carry the id of a [[bus]].
        let (key, id, agent) = match device {
            SnmpDeviceCfg::Agent { agent, .. } => (
                format!("device {}", info.id),
                info.id.clone(),
                agent.clone(),
            ),
            SnmpDeviceCfg::Bus { bus, .. } => match cfg.snmp_agents.get(bus) {
                Some(a) => (format!("bus {bus}"), bus.clone(), a.clone()),
                None => {
                    tracing::error!(device_id = %info.id, bus_id = %bus, "no snmp bus with this id; device skipped");
                    return false;
                }
            },
        };
        let dev = match SnmpDevice::new(info, device.index(), poll) {
            Ok(d) => d,
            Err((info, e)) => {
                tracing::error!(device_id = %info.id, profile = %info.profile.name, error = %e, "device skipped");
                return false;
            }
        };
        let entry = self.agents.entry(key).or_insert_with(|| SnmpAgent {
            id,
            cfg: agent,
            devices: Vec::new(),
        });
        entry.devices.push(dev);
        true
    }

    /// The agents collected.
    pub fn into_agents(self) -> Vec<SnmpAgent> {
        self.agents.into_values().collect()
    }
}

/// Starts the task of one agent; commands for its devices arrive on the wiring's inbox,
/// and its heartbeat is beaten on every turn of its loop.
pub fn spawn_agent(agent: SnmpAgent, wiring: Wiring) -> JoinHandle<()> {
    let task = task::Task::new(agent, wiring.counters.clone());
    crate::southbound::bus::spawn(task, wiring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_templates_resolve_per_device() {
        let o = resolve_oid(".1.3.6.1.2.1.105.1.1.1.3.1.{index}", Some(7)).unwrap();
        assert_eq!(o.to_string(), "1.3.6.1.2.1.105.1.1.1.3.1.7");
        assert!(resolve_oid("1.3.6.1.2.1.2.2.1.8.{index}", None).is_err());
        assert!(resolve_oid("1.3.6.1.2.1.1.3.0", None).is_ok());
    }
}
