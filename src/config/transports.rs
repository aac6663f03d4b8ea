//! The `modbus = {...}` and `serial = {...}` transports of a `[[device]]`: address or
//! bus, unit, framing, checked against the declared buses.

use super::ctx::Ctx;
use super::parse::split_host_port;
use super::values::{Checked, Int};
use super::{BusIndex, BusKind, Framing, Transport, bus_kind_label};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModbus {
    address: Option<String>,
    /// Checked once the transport is known: 0..=255 over TCP, 1..=247 on a bus.
    unit: Option<i64>,
    framing: Option<String>,
    bus: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSerial {
    bus: Option<String>,
    address: Option<String>,
}

pub(super) fn modbus(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    m: RawModbus,
    buses: &BusIndex,
) -> Option<Transport> {
    match (m.address, m.bus) {
        (Some(_), Some(_)) => {
            let msg = "address and bus are mutually exclusive: address = \"host:port\" for Modbus over TCP, bus = \"<id>\" for a [[bus]]";
            cx.at(file, key, msg);
            None
        }
        (None, None) => {
            let msg = "needs address = \"host:port\" (Modbus over TCP) or bus = \"<bus id>\" (RTU on a [[bus]])";
            cx.at(file, key, msg);
            None
        }
        (Some(address), None) => {
            if split_host_port(&address, None).is_none() {
                let msg = format!(
                    "'{address}' is not host:port (port 1..=65535), e.g. \"10.0.0.17:502\""
                );
                cx.at(file, &format!("{key}.address"), msg);
            }
            let unit = m.unit.map(Checked::<Int<0, 255>>::of);
            let unit = cx
                .valid(Some(file), &format!("{key}.unit"), unit)
                .map_or(1, |u| u.get() as u8);
            let framing = match m.framing.as_deref() {
                None | Some("tcp") => Framing::Tcp,
                Some("rtu") => Framing::Rtu,
                Some(s) => {
                    let msg = format!(
                        "'{s}' is not a framing: expected tcp (Modbus TCP) or rtu (RTU over TCP)"
                    );
                    cx.at(file, &format!("{key}.framing"), msg);
                    Framing::Tcp
                }
            };
            Some(Transport::ModbusTcp {
                address,
                unit,
                framing,
            })
        }
        (None, Some(bus)) => {
            if m.framing.is_some() {
                let msg = "applies to address (Modbus over TCP) only; a [[bus]] has its own kind";
                cx.at(file, &format!("{key}.framing"), msg);
            }
            let unit = match m.unit {
                None => {
                    cx.at(
                        file,
                        &format!("{key}.unit"),
                        "is required on a bus: the slave address 1..=247",
                    );
                    1
                }
                Some(u) => {
                    let u = Checked::<Int<1, 247>>::of(u);
                    cx.valid(Some(file), &format!("{key}.unit"), Some(u))
                        .map_or(1, |u| u.get() as u8)
                }
            };
            match buses.get(&bus) {
                None => {
                    cx.at(
                        file,
                        &format!("{key}.bus"),
                        format!("bus '{bus}' is not declared by any [[bus]]"),
                    );
                }
                Some(Some(BusKind::Serial)) => {
                    let msg = format!(
                        "bus '{bus}' is a serial bus; Modbus needs a [[bus]] of kind modbus_rtu or modbus_ascii"
                    );
                    cx.at(file, &format!("{key}.bus"), msg);
                }
                Some(_) => {}
            }
            Some(Transport::ModbusBus { bus, unit })
        }
    }
}

pub(super) fn serial(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    s: RawSerial,
    buses: &BusIndex,
) -> Option<Transport> {
    let address = s.address.unwrap_or_else(|| {
        let msg = "is required: the device's address on the line, e.g. address = \"01\"";
        cx.at(file, &format!("{key}.address"), msg);
        String::new()
    });
    let Some(bus) = s.bus else {
        cx.at(
            file,
            &format!("{key}.bus"),
            "is required: the id of a [[bus]] of kind serial",
        );
        return None;
    };
    match buses.get(&bus) {
        None => cx.at(
            file,
            &format!("{key}.bus"),
            format!("bus '{bus}' is not declared by any [[bus]]"),
        ),
        Some(Some(k)) if *k != BusKind::Serial => {
            let msg = format!(
                "bus '{bus}' is a {} bus; serial needs a [[bus]] of kind serial",
                bus_kind_label(*k)
            );
            cx.at(file, &format!("{key}.bus"), msg);
        }
        Some(_) => {}
    }
    Some(Transport::Serial { bus, address })
}
