//! References from the configuration to the profiles (SPEC §8 "check"): every device's
//! profile exists in `plugins_dirs` and speaks the device's transport. Resolved from the
//! validated [`Config`], and from the merged files as written when validation failed, so
//! a misspelled profile is reported together with the file's other errors, not after
//! they are fixed. Bus references are resolved by `entries.rs` in the same pass as the
//! other checks; scripts by the profile loader.

use super::ctx::{Merged, resolve};
use super::validate::DEFAULT_PLUGINS_DIRS;
use super::{Config, Transport};
use crate::model::FileError as ConfigError;
use crate::profile::{Protocol, Registry};
use std::path::PathBuf;

/// The profile references of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct References {
    /// `None` when `gateway.plugins_dirs` itself is invalid (reported by validation).
    pub plugins_dirs: Option<Vec<PathBuf>>,
    devices: Vec<DeviceRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceRef {
    index: usize,
    file: PathBuf,
    profile: String,
    /// (protocol, label of the transport) when exactly one valid transport is set.
    transport: Option<(Protocol, &'static str)>,
    /// An `snmp = {…}` without `index` (its profile must not use `{index}`).
    snmp_without_index: bool,
}

impl References {
    /// The references of a validated configuration.
    pub fn of_config(cfg: &Config) -> References {
        let devices = cfg.devices.iter().enumerate().map(|(index, d)| {
            let protocol = match &d.transport {
                Transport::ModbusTcp { .. } | Transport::ModbusBus { .. } => Protocol::Modbus,
                Transport::Serial { .. } => Protocol::Serial,
                Transport::Lora(_) => Protocol::Lora,
                Transport::Ocpp(_) => Protocol::Ocpp,
                Transport::Snmp(_) => Protocol::Snmp,
                Transport::Reach => Protocol::Reach,
            };
            DeviceRef {
                index,
                file: device_file(&d.origin).unwrap_or_else(|| cfg.path.clone()),
                profile: d.profile.clone(),
                transport: Some((protocol, d.transport.label())),
                snmp_without_index: matches!(&d.transport, Transport::Snmp(s) if s.index().is_none()),
            }
        });
        References {
            plugins_dirs: Some(cfg.gateway.plugins_dirs.clone()),
            devices: devices.collect(),
        }
    }

    /// The references of the merged files as written: entries whose `profile` is not a
    /// non-empty string, or whose transport is missing or doubled, are left to
    /// validation's own messages.
    pub(super) fn of_merged(merged: &Merged) -> References {
        let dirs = match merged.table.get("gateway").map(|g| g.get("plugins_dirs")) {
            None | Some(None) => Some(DEFAULT_PLUGINS_DIRS.iter().map(PathBuf::from).collect()),
            Some(Some(v)) => {
                let origin = merged.origin_of("gateway.plugins_dirs");
                v.as_array()
                    .and_then(|a| a.iter().map(|d| d.as_str()).collect::<Option<Vec<_>>>())
                    .filter(|a| !a.is_empty())
                    .map(|a| a.iter().map(|d| resolve(&origin, d)).collect())
            }
        };
        let devices = merged
            .devices
            .iter()
            .enumerate()
            .filter_map(|(index, (v, o))| {
                let profile = v.get("profile")?.as_str().filter(|p| !p.is_empty())?;
                let present: Vec<(Protocol, &'static str)> = [
                    ("modbus", Protocol::Modbus),
                    ("serial", Protocol::Serial),
                    ("lora", Protocol::Lora),
                    ("ocpp", Protocol::Ocpp),
                    ("snmp", Protocol::Snmp),
                ]
                .into_iter()
                .filter(|(k, _)| v.get(k).is_some_and(|t| t.is_table()))
                .map(|(k, p)| (p, k))
                .collect();
                Some(DeviceRef {
                    index,
                    file: o.file.clone(),
                    profile: profile.to_string(),
                    transport: match present.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    },
                    snmp_without_index: v
                        .get("snmp")
                        .and_then(|t| t.as_table())
                        .is_some_and(|t| !t.contains_key("index")),
                })
            });
        References {
            plugins_dirs: dirs,
            devices: devices.collect(),
        }
    }

    /// Every device whose profile is missing from `profiles` or speaks another protocol.
    pub fn check(&self, profiles: &Registry) -> Vec<ConfigError> {
        let Some(dirs) = &self.plugins_dirs else {
            return vec![];
        };
        let mut errors = Vec::new();
        for d in &self.devices {
            let key = format!("device[{}].profile", d.index);
            let message = match (profiles.get(&d.profile), d.transport) {
                (None, _) => {
                    let dirs: Vec<String> = dirs.iter().map(|p| p.display().to_string()).collect();
                    format!(
                        "profile '{}' not found in plugins_dirs [{}]",
                        d.profile,
                        dirs.join(", ")
                    )
                }
                (Some(p), Some((protocol, label))) if p.protocol != protocol => format!(
                    "profile '{}' speaks {} but the device has a {label} transport; use {} = {{ ... }}",
                    d.profile,
                    p.protocol.as_str(),
                    p.protocol.as_str()
                ),
                (Some(p), _) if d.snmp_without_index && uses_index(p) => {
                    errors.push(ConfigError {
                        file: d.file.clone(),
                        key: format!("device[{}].snmp.index", d.index),
                        message: format!(
                            "is required: profile '{}' reads OIDs with {{index}} (the switch port or interface number)",
                            d.profile
                        ),
                    });
                    continue;
                }
                _ => continue,
            };
            errors.push(ConfigError {
                file: d.file.clone(),
                key,
                message,
            });
        }
        errors
    }
}

/// Whether an SNMP profile's OIDs name `{index}`.
fn uses_index(p: &crate::profile::Profile) -> bool {
    p.snmp
        .as_ref()
        .is_some_and(|s| s.oids.iter().flatten().any(|o| o.contains("{index}")))
}

/// Checks that need the profiles: every device's profile exists and fits its transport.
pub fn cross_check(cfg: &Config, profiles: &Registry) -> Vec<ConfigError> {
    References::of_config(cfg).check(profiles)
}

/// The file part of a `DeviceCfg::origin` (`/etc/polegate/polegate.toml: device[3]`).
fn device_file(origin: &str) -> Option<PathBuf> {
    origin
        .rsplit_once(": device[")
        .map(|(f, _)| PathBuf::from(f))
}
