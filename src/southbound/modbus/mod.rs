//! Modbus drivers. `plan` coalesces points into block reads (pure), `schedule` orders
//! the devices sharing a line (pure), `frame` is the serial framing (pure), `serial` the
//! RTU/ASCII client on a stream, `read`/`write` one poll cycle or command on any
//! transport, `link` the task that owns one connection or serial line, and `tally` where
//! its errors are counted.
//! [`LinkSet`] groups configured devices into links: every device with the same TCP
//! address (several unit ids behind one gateway or device server) or the same `[[bus]]`
//! shares one link, one connection and one scheduler.

pub mod frame;
pub mod link;
pub mod plan;
pub mod read;
pub use super::schedule;
pub mod serial;
pub mod slave;
pub mod tally;
pub mod write;

use crate::config::{BusCfg, BusKind, Framing, Transport};
use crate::ops::counters::Counters;
use crate::pipeline::Route;
use crate::pipeline::{DeviceInfo, Input};
use crate::southbound::INBOX_CAPACITY;
use link::{Link, PolledDevice, run_link};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
                    BusKind::ModbusRtu => serial::Mode::Rtu,
                    BusKind::ModbusAscii => serial::Mode::Ascii,
                    BusKind::Serial => return Err("modbus_bus"),
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

    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// The links by key (`tcp <address>`, `rtu-over-tcp <address>`, `bus <id>`).
    pub fn into_links(self) -> Vec<(String, Link)> {
        self.links.into_iter().collect()
    }

    /// Spawns one task per link; fills `routes` for the command path.
    pub fn spawn(
        self,
        tx: &mpsc::Sender<Input>,
        counters: &Arc<Counters>,
        cancel: &CancellationToken,
        tasks: &mut Vec<JoinHandle<()>>,
        routes: &mut HashMap<String, Route>,
    ) {
        for link in self.links.into_values() {
            let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
            for (index, d) in link.devices.iter().enumerate() {
                routes.insert(
                    d.info.id.clone(),
                    Route {
                        info: d.info.clone(),
                        inbox: inbox_tx.clone(),
                        index,
                    },
                );
            }
            tasks.push(tokio::spawn(run_link(
                link,
                inbox_rx,
                tx.clone(),
                counters.clone(),
                cancel.clone(),
            )));
        }
    }
}
