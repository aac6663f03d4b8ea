//! Modbus drivers. `plan` coalesces points into block reads (pure), `frame` is the
//! serial framing (pure), `rtu` our RTU/ASCII client on any byte stream, `read`/`write`
//! one poll cycle or command on any transport, `connect` opens a transport, `link` is the
//! task that owns one connection or serial line, and `fault_counter` where its errors
//! are counted. The devices sharing
//! a line are ordered by the shared [`schedule`](super::schedule) (pure).
//! [`LinkSet`] groups configured devices into links: every device with the same TCP
//! address (several unit ids behind one gateway or device server) or the same `[[bus]]`
//! shares one link, one connection and one scheduler.

pub mod connect;
pub mod frame;
pub mod link;
pub mod plan;
pub mod read;
pub use super::schedule;
pub mod fault_counter;
pub mod rtu;
pub mod write;

use crate::config::{BusCfg, BusKind, Framing, Transport};
use crate::pipeline::DeviceInfo;
use link::{Link, PolledDevice};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The Modbus links of a configuration, before they run.
#[derive(Debug, Default)]
pub struct LinkSet {
    buses: HashMap<String, BusCfg>,
    links: BTreeMap<String, Link>,
}

impl LinkSet {
    pub fn new(buses: &[BusCfg]) -> LinkSet {
        LinkSet {
            buses: buses.iter().map(|b| (b.id.clone(), b.clone())).collect(),
            links: BTreeMap::new(),
        }
    }

    /// Adds a device to the link of its transport. `Err(label)` when the transport is
    /// not Modbus (or its bus is not a Modbus bus): the caller skips or routes it.
    pub fn add(
        &mut self,
        transport: &Transport,
        info: Arc<DeviceInfo>,
        poll: Duration,
    ) -> Result<(), &'static str> {
        let (key, unit, make): (String, u8, Box<dyn FnOnce() -> Link>) = match transport {
            Transport::ModbusTcp {
                address,
                unit,
                framing,
            } => {
                let tag = match framing {
                    Framing::Tcp => "tcp",
                    Framing::Rtu => "rtu-over-tcp",
                };
                let (a, f) = (address.clone(), *framing);
                (
                    format!("{tag} {address}"),
                    *unit,
                    Box::new(move || Link::tcp(&a, f)),
                )
            }
            Transport::ModbusBus { bus, unit } => {
                let Some(b) = self.buses.get(bus).cloned() else {
                    return Err("modbus_bus");
                };
                let mode = match b.kind {
                    BusKind::ModbusRtu => rtu::Mode::Rtu,
                    BusKind::ModbusAscii => rtu::Mode::Ascii,
                    BusKind::Serial | BusKind::Snmp => return Err("modbus_bus"),
                };
                (
                    format!("bus {bus}"),
                    *unit,
                    Box::new(move || Link::bus(&b, mode)),
                )
            }
            other => return Err(other.label()),
        };
        self.links
            .entry(key)
            .or_insert_with(make)
            .devices
            .push(PolledDevice::new(info, unit, poll));
        Ok(())
    }

    /// The links by key (`tcp <address>`, `rtu-over-tcp <address>`, `bus <id>`).
    pub fn into_links(self) -> Vec<(String, Link)> {
        self.links.into_iter().collect()
    }
}
