//! Serial line-protocol equipment (SPEC §3 serial profiles, §8 "Serial profiles"):
//! `[[bus]] kind = "serial"` with several addressed devices, framed by the profile and
//! decoded by its Rhai script.
//!
//! Layout: `framing.rs` (bytes -> frames, pure), `decode.rs` (frames <-> values through
//! the script, pure), `port.rs` (opening and reading the port), `bus.rs` (the task: polling
//! through the shared scheduler, unsolicited frames, commands).
//!
//! Seam: [`Buses`] collects devices per bus while the supervisor walks the config, and
//! [`spawn_bus`] starts the task of one bus (the supervisor registers command routes).
//! Devices share the line through the same scheduler as the Modbus RTU buses
//! (`southbound::schedule`).

mod bus;
pub mod decode;
pub mod framing;
mod port;

pub use bus::printable;

use crate::config::{BusCfg, BusKind, Config};
use crate::pipeline::DeviceInfo;
use crate::profile::{SerialFraming, SerialSpec};
use crate::southbound::Wiring;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// One device on a serial bus.
#[derive(Debug, Clone)]
pub struct SerialDevice {
    pub info: Arc<DeviceInfo>,
    /// Its address on the line (`{address}` in poll templates, `address` in frames).
    pub address: String,
    pub poll: Duration,
}

impl SerialDevice {
    /// Only devices whose profile has a `[serial]` section are admitted ([`Buses::add`]).
    fn spec(&self) -> &SerialSpec {
        self.info
            .profile
            .serial
            .as_ref()
            .expect("admitted serial devices have a serial spec")
    }
}

/// A serial port and its devices.
#[derive(Debug, Clone)]
pub struct SerialBus {
    pub cfg: BusCfg,
    pub devices: Vec<SerialDevice>,
}

/// Serial buses collected from the configuration.
#[derive(Debug, Default)]
pub struct Buses {
    buses: BTreeMap<String, SerialBus>,
}

impl Buses {
    /// Adds a device to its bus. Returns false (and logs why) when it cannot run: an
    /// unknown or non-serial bus, a profile without `[serial]`, or a framing that differs
    /// from the other devices on the same line.
    pub fn add(
        &mut self,
        cfg: &Config,
        bus: &str,
        info: Arc<DeviceInfo>,
        address: &str,
        poll: Duration,
    ) -> bool {
        let Some(bus_cfg) = cfg
            .buses
            .iter()
            .find(|b| b.id == bus && b.kind == BusKind::Serial)
        else {
            tracing::error!(device_id = %info.id, bus_id = %bus, "no serial bus with this id; device skipped");
            return false;
        };
        let Some(spec) = info.profile.serial.as_ref() else {
            tracing::error!(device_id = %info.id, profile = %info.profile.name, "profile is not a serial profile; device skipped");
            return false;
        };
        let entry = self
            .buses
            .entry(bus.to_string())
            .or_insert_with(|| SerialBus {
                cfg: bus_cfg.clone(),
                devices: Vec::new(),
            });
        if let Some(first) = entry.devices.first() {
            let other = first.spec();
            if other.framing != spec.framing || other.max_frame != spec.max_frame {
                tracing::error!(device_id = %info.id, bus_id = %bus, profile = %info.profile.name,
                    other = %first.info.profile.name,
                    "profile frames the line differently from the other devices on this bus; device skipped");
                return false;
            }
        }
        entry.devices.push(SerialDevice {
            info,
            address: address.to_string(),
            poll,
        });
        true
    }

    pub fn is_empty(&self) -> bool {
        self.buses.is_empty()
    }

    /// The buses collected, by id.
    pub fn into_buses(self) -> Vec<SerialBus> {
        self.buses.into_values().collect()
    }
}

/// Starts the task of one bus; commands for its devices arrive on the wiring's inbox, and
/// its heartbeat is beaten on every turn of its loop (at least every second).
pub fn spawn_bus(bus: SerialBus, wiring: Wiring) -> JoinHandle<()> {
    let spec = bus.devices[0].spec();
    let framer = framing::Framer::new(spec.framing.clone(), spec.max_frame);
    let idle = match spec.framing {
        SerialFraming::IdleMs(ms) => Some(Duration::from_millis(ms)),
        _ => None,
    };
    let port = port::Port::new(bus.cfg.clone(), framer, idle);
    let task = bus::Task::new(bus, port, wiring.counters.clone());
    crate::southbound::bus::spawn(task, wiring)
}
