//! Command writes on an open Modbus context: the right function per table and width
//! (5 for a coil, 6 for one register, 16 for several, read-modify-write for one bit of a
//! holding register, all in the same transaction slot), scale inverted by the codec.

use super::fault_counter::FaultCounter;
use crate::model::Value;
use crate::ops::counters::ModbusFault;
use crate::profile::{PointDef, Table, codec};
use std::time::Duration;
use tokio_modbus::Slave;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;

/// Why one point's write failed. `fatal` means the context must be dropped.
#[derive(Debug)]
pub struct WriteError {
    pub message: String,
    pub fatal: bool,
}

async fn timed<T>(
    what: &str,
    timeout: Duration,
    faults: &FaultCounter,
    unit: u8,
    fut: impl std::future::Future<Output = tokio_modbus::Result<T>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => {
            faults.count(ModbusFault::Timeout, Some(unit));
            Err(WriteError {
                message: format!("{what} timed out after {} ms", timeout.as_millis()),
                fatal: true,
            })
        }
        Ok(Err(e)) => {
            faults.count(ModbusFault::Transport, Some(unit));
            Err(WriteError {
                message: format!("{what} failed: {e}"),
                fatal: true,
            })
        }
        Ok(Ok(Err(code))) => {
            faults.count(ModbusFault::Exception, Some(unit));
            Err(WriteError {
                message: format!(
                    "{what}: device answered exception {code:?} ({})",
                    super::read::exception_meaning(code)
                ),
                fatal: false,
            })
        }
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// Writes one point of `unit`.
pub async fn write_point(
    ctx: &mut Context,
    unit: u8,
    p: &PointDef,
    value: &Value,
    timeout: Duration,
    faults: &FaultCounter,
) -> Result<(), WriteError> {
    ctx.set_slave(Slave(unit));
    let Some(reg) = &p.reg else {
        return Err(WriteError {
            message: format!("point '{}' has no Modbus address", p.name),
            fatal: false,
        });
    };
    let bad = |e: codec::CodecError| WriteError {
        message: e.to_string(),
        fatal: false,
    };
    let a = reg.address;
    match reg.table {
        Table::Coil => {
            let on = codec::encode_bit(p, value).map_err(bad)?;
            timed(
                &format!("write coil {a}"),
                timeout,
                faults,
                unit,
                ctx.write_single_coil(a, on),
            )
            .await
        }
        Table::Holding if reg.bit.is_some() => {
            let on = codec::encode_bit(p, value).map_err(bad)?;
            let cur = timed(
                &format!("read holding {a} before setting bit"),
                timeout,
                faults,
                unit,
                ctx.read_holding_registers(a, 1),
            )
            .await?;
            let Some(&cur) = cur.first() else {
                faults.count(ModbusFault::Malformed, Some(unit));
                return Err(WriteError {
                    message: format!("read holding {a}: empty reply"),
                    fatal: true,
                });
            };
            let merged = codec::merge_bit(p, cur, on).map_err(bad)?;
            timed(
                &format!("write holding {a}"),
                timeout,
                faults,
                unit,
                ctx.write_single_register(a, merged),
            )
            .await
        }
        Table::Holding => {
            let words = codec::encode_registers(p, value).map_err(bad)?;
            match words.as_slice() {
                [w] => {
                    timed(
                        &format!("write holding {a}"),
                        timeout,
                        faults,
                        unit,
                        ctx.write_single_register(a, *w),
                    )
                    .await
                }
                _ => {
                    let end = u32::from(a) + words.len() as u32;
                    timed(
                        &format!("write holding {a}..{end}"),
                        timeout,
                        faults,
                        unit,
                        ctx.write_multiple_registers(a, &words),
                    )
                    .await
                }
            }
        }
        Table::Input | Table::Discrete => Err(WriteError {
            message: format!(
                "point '{}' lives in the read-only {} table",
                p.name,
                reg.table.as_str()
            ),
            fatal: false,
        }),
    }
}
