//! Opening a serial port, the one way every driver does it (Modbus RTU/ASCII links and
//! serial line-protocol buses).
//!
//! The port is opened at its baud rate, then each setting is applied on its own, so a
//! refusal names the `[[bus]]` key to fix (SPEC §8 "Serial ports that refuse a setting":
//! pseudo-terminals and some USB adapters refuse even/odd parity with EINVAL). Some
//! drivers (ptys) accept the parity ioctl but keep their own setting, so parity is read
//! back: a line silently left at the wrong parity would only show as garbled frames.

use crate::config::{BusCfg, Parity};
use std::fmt;
use tokio_serial::{DataBits, SerialPort, SerialPortBuilderExt, SerialStream, StopBits};

/// A line setting as the `[[bus]]` section spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    DataBits(u8),
    Parity(Parity),
    StopBits(u8),
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::DataBits(n) => write!(f, "data_bits = {n}"),
            Setting::StopBits(n) => write!(f, "stop_bits = {n}"),
            Setting::Parity(p) => {
                let label = match p {
                    Parity::None => "none",
                    Parity::Even => "even",
                    Parity::Odd => "odd",
                };
                write!(f, "parity = \"{label}\"")
            }
        }
    }
}

/// Why a bus's port could not be opened as configured.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    #[error("bus {bus}: cannot open {port} at {baud} baud: {source}")]
    Open {
        bus: String,
        port: String,
        baud: u32,
        #[source]
        source: tokio_serial::Error,
    },
    #[error(
        "bus {bus}: port {port} refuses {setting}: {source} (fix [[bus]] {setting} or the adapter)"
    )]
    Refused {
        bus: String,
        port: String,
        setting: Setting,
        #[source]
        source: tokio_serial::Error,
    },
}

/// Opens the port of `bus` with its baud rate, data bits, parity and stop bits.
pub fn open(bus: &BusCfg) -> Result<SerialStream, OpenError> {
    let port = bus.port.display().to_string();
    let mut s = tokio_serial::new(&port, bus.baud)
        .open_native_async()
        .map_err(|source| OpenError::Open {
            bus: bus.id.clone(),
            port: port.clone(),
            baud: bus.baud,
            source,
        })?;
    let refused = |setting, source| OpenError::Refused {
        bus: bus.id.clone(),
        port: port.clone(),
        setting,
        source,
    };
    let data_bits = match bus.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    s.set_data_bits(data_bits)
        .map_err(|e| refused(Setting::DataBits(bus.data_bits), e))?;
    let parity = match bus.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let setting = Setting::Parity(bus.parity);
    s.set_parity(parity).map_err(|e| refused(setting, e))?;
    match s.parity() {
        Ok(p) if p == parity => {}
        Ok(p) => {
            let e = tokio_serial::Error::new(
                tokio_serial::ErrorKind::InvalidInput,
                format!("the driver kept parity {p}"),
            );
            return Err(refused(setting, e));
        }
        Err(e) => return Err(refused(setting, e)),
    }
    let stop_bits = match bus.stop_bits {
        2 => StopBits::Two,
        _ => StopBits::One,
    };
    s.set_stop_bits(stop_bits)
        .map_err(|e| refused(Setting::StopBits(bus.stop_bits), e))?;
    Ok(s)
}
