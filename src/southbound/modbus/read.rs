//! One poll cycle of one device on an open Modbus connection: block reads under a timeout,
//! decoding, and the split between device exceptions (data: the device answered) and
//! transport failures (the connection must be dropped: a late reply would otherwise be
//! matched to the next request).

use super::fault_counter::FaultCounter;
use super::plan::Block;
use super::rtu::{LineError, LinkClient};
use crate::model::Value;
use crate::ops::counters::{Counters, ModbusFault};
use crate::profile::{Profile, Table, convert};
use std::time::Duration;
use tokio_modbus::{ExceptionCode, Request, Response};

/// Why a poll cycle failed. Modbus TCP drops the context after every variant; our own
/// serial framing keeps it after a timeout, a short reply or a bad frame, because it
/// drains the line before the next request (`Link::keeps_connection`).
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("read {table} {start}..{end} timed out after {ms} ms")]
    Timeout {
        table: &'static str,
        start: u16,
        end: u32,
        ms: u128,
    },
    #[error("read {table} {start}..{end} failed: {source}")]
    Transport {
        table: &'static str,
        start: u16,
        end: u32,
        #[source]
        source: tokio_modbus::Error,
    },
    #[error("read {table} {start}..{end}: reply carries {got} values, expected {want}")]
    Short {
        table: &'static str,
        start: u16,
        end: u32,
        got: usize,
        want: u16,
    },
}

/// A device exception on one block: the device is alive, these points are missing.
#[derive(Debug, Clone)]
pub struct BlockException {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    pub code: ExceptionCode,
}

#[derive(Debug, Default)]
pub struct Cycle {
    pub values: Vec<(usize, Value)>,
    pub exceptions: Vec<BlockException>,
    pub decode_errors: Vec<String>,
}

enum Data {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

/// Reads every block of `profile` from `unit`. Exceptions are returned as data; any
/// transport problem aborts the cycle with an error (the caller drops the context).
pub async fn poll_cycle(
    ctx: &mut LinkClient,
    unit: u8,
    profile: &Profile,
    blocks: &[Block],
    timeout: Duration,
    faults: &FaultCounter,
) -> Result<Cycle, CycleError> {
    let mut cycle = Cycle {
        values: Vec::with_capacity(blocks.iter().map(|b| b.points.len()).sum()),
        ..Cycle::default()
    };
    for b in blocks {
        let table = b.table.as_str();
        let end = u32::from(b.start) + u32::from(b.count);
        let req = match b.table {
            Table::Coil => Request::ReadCoils(b.start, b.count),
            Table::Discrete => Request::ReadDiscreteInputs(b.start, b.count),
            Table::Input => Request::ReadInputRegisters(b.start, b.count),
            Table::Holding => Request::ReadHoldingRegisters(b.start, b.count),
        };
        let fut = async {
            let reply = ctx.request(unit, &req).await?;
            Ok::<_, tokio_modbus::Error>(reply.map(|r| match r {
                Response::ReadCoils(v) | Response::ReadDiscreteInputs(v) => Data::Bits(v),
                Response::ReadInputRegisters(v) | Response::ReadHoldingRegisters(v) => {
                    Data::Words(v)
                }
                // The decoder answers a read with a read: this is not reached, and would
                // be a short reply.
                _ => Data::Words(Vec::new()),
            }))
        };
        let data = match tokio::time::timeout(timeout, fut).await {
            Err(_) => {
                faults.count(ModbusFault::Timeout, Some(unit));
                return Err(CycleError::Timeout {
                    table,
                    start: b.start,
                    end,
                    ms: timeout.as_millis(),
                });
            }
            Ok(Err(source)) => {
                match &source {
                    tokio_modbus::Error::Protocol(_) => {
                        faults.count(ModbusFault::Malformed, Some(unit))
                    }
                    // Bad checksums, garbled frames and an out-of-step TCP stream were
                    // counted by our client, which marks them (LineError); any other
                    // InvalidData is counted here.
                    tokio_modbus::Error::Transport(e)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        if !e.get_ref().is_some_and(|inner| inner.is::<LineError>()) {
                            faults.count(ModbusFault::Malformed, Some(unit))
                        }
                    }
                    tokio_modbus::Error::Transport(_) => {
                        faults.count(ModbusFault::Transport, Some(unit))
                    }
                }
                return Err(CycleError::Transport {
                    table,
                    start: b.start,
                    end,
                    source,
                });
            }
            Ok(Ok(Err(code))) => {
                faults.count(ModbusFault::Exception, Some(unit));
                cycle.exceptions.push(BlockException {
                    table: b.table,
                    start: b.start,
                    count: b.count,
                    code,
                });
                continue;
            }
            Ok(Ok(Ok(d))) => d,
        };
        let got = match &data {
            Data::Bits(v) => v.len(),
            Data::Words(v) => v.len(),
        };
        if got < usize::from(b.count) {
            faults.count(ModbusFault::Malformed, Some(unit));
            return Err(CycleError::Short {
                table,
                start: b.start,
                end,
                got,
                want: b.count,
            });
        }
        decode_block(profile, b, &data, &mut cycle, faults.counters());
    }
    Ok(cycle)
}

fn decode_block(profile: &Profile, b: &Block, data: &Data, cycle: &mut Cycle, counters: &Counters) {
    for &(idx, off) in &b.points {
        let Some(def) = profile.points.get(idx) else {
            continue;
        };
        let off = usize::from(off);
        let decoded = match (data, &def.reg) {
            (Data::Bits(bits), _) => match bits.get(off) {
                Some(bit) => convert::decode_bit(def, *bit),
                None => continue,
            },
            (Data::Words(words), Some(reg)) => {
                let span = usize::from(convert::span(reg, def.ty));
                match words.get(off..off + span) {
                    Some(w) => convert::decode_registers(def, w),
                    None => continue,
                }
            }
            (Data::Words(_), None) => continue,
        };
        match decoded {
            Ok(d) => {
                if d.unknown_enum {
                    Counters::inc(&counters.unknown_enum);
                }
                cycle.values.push((idx, d.value));
            }
            Err(e) => {
                Counters::inc(&counters.decode_error);
                cycle.decode_errors.push(e.to_string());
            }
        }
    }
}

/// Human meaning of an exception code, for the log.
pub fn exception_meaning(code: ExceptionCode) -> &'static str {
    match code {
        ExceptionCode::IllegalFunction => {
            "illegal function (the device does not support this table)"
        }
        ExceptionCode::IllegalDataAddress => "illegal data address (check the profile's addresses)",
        ExceptionCode::IllegalDataValue => "illegal data value",
        ExceptionCode::ServerDeviceFailure => "server device failure",
        ExceptionCode::Acknowledge => "acknowledge (request accepted, still processing)",
        ExceptionCode::ServerDeviceBusy => "server device busy",
        ExceptionCode::MemoryParityError => "memory parity error",
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond",
        _ => "unknown exception code",
    }
}
