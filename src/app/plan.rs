//! Planning driver tasks from a configuration. A plan has a key (the connection or bus
//! it owns) and its [`DriverSettings`]: everything that shapes its behaviour (its own
//! section, its devices' entries and profiles), in config types only. A reload compares
//! settings with `==`, so an untouched driver keeps running and misses no poll, and the
//! runtime state a running driver's devices carry (link state, latest values) never
//! takes part.

use crate::config::lora::LoraCfg;
use crate::config::ocpp::OcppCfg;
use crate::config::snmp::{ReachCfg, SnmpAgentCfg};
use crate::config::{self, BusCfg, Config, Transport};
use crate::pipeline::DeviceInfo;
use crate::profile::{ProfileRef, Registry};
use crate::southbound::lora::driver::LoraDevice;
use crate::southbound::modbus::LinkSet;
use crate::southbound::modbus::connect::Endpoint;
use crate::southbound::modbus::link::Link;
use crate::southbound::ocpp::OcppDevice;
use crate::southbound::reach::ReachDevice;
use crate::southbound::serial::{Buses, SerialBus};
use crate::southbound::snmp::{Agents, SnmpAgent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How to run one planned driver (cloned for every restart).
#[derive(Debug, Clone)]
pub enum DriverKind {
    Modbus(Link),
    /// The cabinet's LoRa source (Semtech UDP or ChirpStack) and its devices.
    Lora(Box<LoraCfg>, Vec<LoraDevice>),
    Serial(SerialBus),
    /// The OCPP listener (`[ocpp]`) and its connector devices.
    Ocpp(Box<OcppCfg>, Vec<OcppDevice>),
    /// An SNMP agent and the devices read through it (SPEC §11).
    Snmp(SnmpAgent),
    /// Every device with `reach` (SPEC §11).
    Reach(Vec<ReachDevice>),
}

#[derive(Debug)]
pub struct DriverPlan {
    pub key: String,
    pub settings: DriverSettings,
    pub devices: Vec<Arc<DeviceInfo>>,
    pub kind: DriverKind,
}

/// What a reload compares for one driver: a difference restarts it.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverSettings {
    pub section: Section,
    /// In the order the driver runs them.
    pub devices: Vec<DeviceSettings>,
}

/// The driver's own configuration section.
#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    /// A Modbus TCP connection (its address is in its devices' transport) or the reach
    /// task.
    None,
    /// A Modbus RTU/ASCII or serial `[[bus]]`.
    Bus(BusCfg),
    Lora(Box<LoraCfg>),
    Ocpp(Box<OcppCfg>),
    /// The agent, credentials included (a changed community or passphrase restarts it).
    Snmp(SnmpAgentCfg),
}

/// One device as its driver runs it: the inputs of its [`DeviceInfo`] without the
/// runtime state the info carries, and the part of its entry the driver reads.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    pub id: String,
    /// As planned: with the reach points when the device has `reach`.
    pub profile: ProfileRef,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub heartbeat_ms: u64,
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A polled transport (Modbus, serial, SNMP) and its effective poll period.
    Polled(Transport, Duration),
    /// A transport whose devices push (LoRa, OCPP): no poll period.
    Pushed(Transport),
    /// A reachability check; `alone`: the device has no other transport.
    Reach {
        target: ReachCfg,
        poll: Duration,
        alone: bool,
    },
}

/// The device info of an enabled device whose profile exists.
fn device_info(d: &config::DeviceCfg, registry: &Registry) -> Option<Arc<DeviceInfo>> {
    let Some(profile) = registry.get(&d.profile) else {
        tracing::error!(device_id = %d.id, profile = %d.profile, "profile not found; device skipped");
        return None;
    };
    // A device with `reach` also publishes reachable/rtt (SPEC §11).
    let profile = match &d.reach {
        Some(_) if profile.protocol != crate::profile::Protocol::Reach => {
            Arc::new(crate::profile::snmp::with_reach(profile))
        }
        _ => profile.clone(),
    };
    Some(Arc::new(DeviceInfo::new(
        d.id.clone(),
        profile,
        d.meta.clone(),
        d.heartbeat_s.saturating_mul(1000),
    )))
}

/// The configuration's enabled devices, grouped by the driver that runs them.
struct Groups<'c> {
    cfg: &'c Config,
    modbus: LinkSet,
    serial: Buses,
    lora: Vec<LoraDevice>,
    ocpp: Vec<OcppDevice>,
    snmp: Agents,
    reach: Vec<ReachDevice>,
    script_engine: crate::script::Engine,
}

impl<'c> Groups<'c> {
    fn new(cfg: &'c Config) -> Groups<'c> {
        Groups {
            cfg,
            modbus: LinkSet::new(&cfg.buses),
            serial: Buses::default(),
            lora: Vec::new(),
            ocpp: Vec::new(),
            snmp: Agents::default(),
            reach: Vec::new(),
            script_engine: crate::script::Engine::new(),
        }
    }

    fn add(&mut self, d: &config::DeviceCfg, info: Arc<DeviceInfo>) {
        let cfg = self.cfg;
        let poll = Duration::from_millis(d.effective_poll_ms(info.profile.poll_ms));
        if let Some(target) = &d.reach {
            self.reach.push(ReachDevice {
                info: info.clone(),
                target: target.clone(),
                poll,
                alone: d.transport == Transport::Reach,
            });
        }
        match &d.transport {
            Transport::Reach => {}
            Transport::Serial { bus, address } => {
                self.serial.add(cfg, bus, info, address, poll);
            }
            Transport::Lora(l) if cfg.lora.is_some() => {
                let codec = crate::southbound::lora::script::LoraCodec::new(
                    &self.script_engine,
                    &info.profile,
                );
                if codec.is_none() {
                    tracing::error!(device_id = %d.id, profile = %d.profile, "not a LoRa profile; uplinks not decoded");
                }
                self.lora.push(LoraDevice {
                    info,
                    cfg: l.clone(),
                    codec,
                });
            }
            Transport::Snmp(s) => {
                self.snmp.add(cfg, s, info, poll);
            }
            Transport::Ocpp(o) if cfg.ocpp.is_some() => {
                self.ocpp.push(OcppDevice {
                    info,
                    cfg: o.clone(),
                });
            }
            other => {
                if let Err(transport) = self.modbus.add(other, info, poll) {
                    tracing::warn!(device_id = %d.id, transport, "transport not supported by this build yet; device skipped");
                }
            }
        }
    }

    fn into_plans(self) -> Vec<DriverPlan> {
        let entries = Entries::of(self.cfg);
        let mut plans: Vec<DriverPlan> = self
            .modbus
            .into_links()
            .into_iter()
            .map(|(key, link)| modbus_plan(key, link, &entries))
            .collect();
        // LoRa: one UDP socket (or the network server's MQTT) only when [lora] is present.
        if let Some(lcfg) = &self.cfg.lora {
            plans.push(DriverPlan {
                key: "lora".into(),
                settings: DriverSettings {
                    section: Section::Lora(Box::new(lcfg.clone())),
                    devices: entries.pushed(self.lora.iter().map(|d| &d.info)),
                },
                devices: self.lora.iter().map(|d| d.info.clone()).collect(),
                kind: DriverKind::Lora(Box::new(lcfg.clone()), self.lora),
            });
        }
        // OCPP: one listener only when [ocpp] is present.
        if let Some(ocfg) = &self.cfg.ocpp {
            plans.push(DriverPlan {
                key: "ocpp".into(),
                settings: DriverSettings {
                    section: Section::Ocpp(Box::new(ocfg.clone())),
                    devices: entries.pushed(self.ocpp.iter().map(|d| &d.info)),
                },
                devices: self.ocpp.iter().map(|d| d.info.clone()).collect(),
                kind: DriverKind::Ocpp(Box::new(ocfg.clone()), self.ocpp),
            });
        }
        plans.extend(
            self.serial
                .into_buses()
                .into_iter()
                .map(|bus| serial_plan(bus, &entries)),
        );
        if !self.reach.is_empty() {
            plans.push(reach_plan(self.reach));
        }
        plans.extend(
            self.snmp
                .into_agents()
                .into_iter()
                .map(|agent| snmp_plan(agent, &entries)),
        );
        plans
    }
}

/// The configuration's device entries by id (ids are unique in a valid configuration).
struct Entries<'c>(HashMap<&'c str, &'c config::DeviceCfg>);

impl<'c> Entries<'c> {
    fn of(cfg: &'c Config) -> Entries<'c> {
        Entries(cfg.devices.iter().map(|d| (d.id.as_str(), d)).collect())
    }

    fn polled<'i>(
        &self,
        devices: impl Iterator<Item = (&'i Arc<DeviceInfo>, Duration)>,
    ) -> Vec<DeviceSettings> {
        devices
            .filter_map(|(info, poll)| {
                let d = self.0.get(info.id.as_str())?;
                Some(settings(info, Entry::Polled(d.transport.clone(), poll)))
            })
            .collect()
    }

    fn pushed<'i>(
        &self,
        devices: impl Iterator<Item = &'i Arc<DeviceInfo>>,
    ) -> Vec<DeviceSettings> {
        devices
            .filter_map(|info| {
                let d = self.0.get(info.id.as_str())?;
                Some(settings(info, Entry::Pushed(d.transport.clone())))
            })
            .collect()
    }
}

fn settings(info: &DeviceInfo, entry: Entry) -> DeviceSettings {
    DeviceSettings {
        id: info.id.clone(),
        profile: info.profile.clone(),
        meta: info.meta.clone(),
        heartbeat_ms: info.heartbeat_ms,
        entry,
    }
}

fn modbus_plan(key: String, link: Link, entries: &Entries) -> DriverPlan {
    let section = match &link.endpoint {
        Endpoint::Serial { bus, .. } => Section::Bus(bus.clone()),
        Endpoint::Tcp { .. } => Section::None,
    };
    DriverPlan {
        key: format!("modbus {key}"),
        settings: DriverSettings {
            section,
            devices: entries.polled(link.devices.iter().map(|d| (&d.info, d.poll))),
        },
        devices: link.devices.iter().map(|d| d.info.clone()).collect(),
        kind: DriverKind::Modbus(link),
    }
}

fn serial_plan(bus: SerialBus, entries: &Entries) -> DriverPlan {
    DriverPlan {
        key: format!("serial {}", bus.cfg.id),
        settings: DriverSettings {
            section: Section::Bus(bus.cfg.clone()),
            devices: entries.polled(bus.devices.iter().map(|d| (&d.info, d.poll))),
        },
        devices: bus.devices.iter().map(|d| d.info.clone()).collect(),
        kind: DriverKind::Serial(bus),
    }
}

fn snmp_plan(agent: SnmpAgent, entries: &Entries) -> DriverPlan {
    DriverPlan {
        key: format!("snmp {}", agent.id),
        settings: DriverSettings {
            section: Section::Snmp(agent.cfg.clone()),
            devices: entries.polled(agent.devices.iter().map(|d| (&d.info, d.poll))),
        },
        devices: agent.devices.iter().map(|d| d.info.clone()).collect(),
        kind: DriverKind::Snmp(agent),
    }
}

fn reach_plan(reach: Vec<ReachDevice>) -> DriverPlan {
    let devices = reach
        .iter()
        .map(|d| {
            let entry = Entry::Reach {
                target: d.target.clone(),
                poll: d.poll,
                alone: d.alone,
            };
            settings(&d.info, entry)
        })
        .collect();
    DriverPlan {
        key: "reach".into(),
        settings: DriverSettings {
            section: Section::None,
            devices,
        },
        // Commands and state belong to the transport's driver; only reach-only devices
        // are this task's own.
        devices: reach
            .iter()
            .filter(|d| d.alone)
            .map(|d| d.info.clone())
            .collect(),
        kind: DriverKind::Reach(reach),
    }
}

/// Groups the configuration's enabled devices into driver tasks.
pub fn plan(cfg: &Config, registry: &Registry) -> Vec<DriverPlan> {
    let mut groups = Groups::new(cfg);
    for d in cfg.devices.iter().filter(|d| d.enabled) {
        if let Some(info) = device_info(d, registry) {
            groups.add(d, info);
        }
    }
    groups.into_plans()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
