//! Command writes on an open Modbus connection: the right function per table and width
//! (5 for a coil, 6 for one register, 16 for several, read-modify-write for one bit of a
//! holding register, all in the same transaction slot), scale inverted by the convert.

use super::fault_counter::FaultCounter;
use super::read::exception_meaning;
use super::rtu::LinkClient;
use crate::model::Value;
use crate::ops::counters::ModbusFault;
use crate::profile::{PointDef, Table, convert};
use std::borrow::Cow;
use std::time::Duration;
use tokio_modbus::{ExceptionCode, Request, Response};

/// Why one point's write failed. `what` names the transaction (`write holding 12..14`).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u128 },
    #[error("{what} failed: {source}")]
    Transport {
        what: String,
        #[source]
        source: tokio_modbus::Error,
    },
    #[error("{what}: device answered exception {code:?} ({})", exception_meaning(*code))]
    Exception { what: String, code: ExceptionCode },
    #[error("read holding {address}: empty reply")]
    EmptyReply { address: u16 },
    #[error("point '{point}' has no Modbus address")]
    NoAddress { point: String },
    #[error("point '{point}' lives in the read-only {table} table")]
    ReadOnly { point: String, table: &'static str },
    #[error(transparent)]
    Value(#[from] convert::CodecError),
}

impl WriteError {
    /// The transaction did not complete: the context must be dropped (a late reply
    /// would answer the next request).
    pub fn fatal(&self) -> bool {
        matches!(
            self,
            WriteError::Timeout { .. }
                | WriteError::Transport { .. }
                | WriteError::EmptyReply { .. }
        )
    }
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
            Err(WriteError::Timeout {
                what: what.to_string(),
                ms: timeout.as_millis(),
            })
        }
        Ok(Err(source)) => {
            faults.count(ModbusFault::Transport, Some(unit));
            Err(WriteError::Transport {
                what: what.to_string(),
                source,
            })
        }
        Ok(Ok(Err(code))) => {
            faults.count(ModbusFault::Exception, Some(unit));
            Err(WriteError::Exception {
                what: what.to_string(),
                code,
            })
        }
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// Writes one point of `unit`.
pub async fn write_point(
    ctx: &mut LinkClient,
    unit: u8,
    p: &PointDef,
    value: &Value,
    timeout: Duration,
    faults: &FaultCounter,
) -> Result<(), WriteError> {
    let Some(reg) = &p.reg else {
        return Err(WriteError::NoAddress {
            point: p.name.clone(),
        });
    };
    let a = reg.address;
    match reg.table {
        Table::Coil => {
            let on = convert::encode_bit(p, value)?;
            timed(
                &format!("write coil {a}"),
                timeout,
                faults,
                unit,
                ctx.request(unit, &Request::WriteSingleCoil(a, on)),
            )
            .await
            .map(drop)
        }
        Table::Holding if reg.bit.is_some() => {
            let on = convert::encode_bit(p, value)?;
            let cur = timed(
                &format!("read holding {a} before setting bit"),
                timeout,
                faults,
                unit,
                ctx.request(unit, &Request::ReadHoldingRegisters(a, 1)),
            )
            .await?;
            let cur = match cur {
                Response::ReadHoldingRegisters(words) => words,
                _ => Vec::new(),
            };
            let Some(&cur) = cur.first() else {
                faults.count(ModbusFault::Malformed, Some(unit));
                return Err(WriteError::EmptyReply { address: a });
            };
            let merged = convert::merge_bit(p, cur, on)?;
            timed(
                &format!("write holding {a}"),
                timeout,
                faults,
                unit,
                ctx.request(unit, &Request::WriteSingleRegister(a, merged)),
            )
            .await
            .map(drop)
        }
        Table::Holding => {
            let words = convert::encode_registers(p, value)?;
            match words.as_slice() {
                [w] => timed(
                    &format!("write holding {a}"),
                    timeout,
                    faults,
                    unit,
                    ctx.request(unit, &Request::WriteSingleRegister(a, *w)),
                )
                .await
                .map(drop),
                _ => {
                    let end = u32::from(a) + words.len() as u32;
                    timed(
                        &format!("write holding {a}..{end}"),
                        timeout,
                        faults,
                        unit,
                        ctx.request(
                            unit,
                            &Request::WriteMultipleRegisters(a, Cow::Borrowed(&words)),
                        ),
                    )
                    .await
                    .map(drop)
                }
            }
        }
        Table::Input | Table::Discrete => Err(WriteError::ReadOnly {
            point: p.name.clone(),
            table: reg.table.as_str(),
        }),
    }
}
