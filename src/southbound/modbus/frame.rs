//! Modbus serial framing, pure: PDUs for the functions polegate uses, RTU frames
//! (address + PDU + CRC-16/Modbus) and ASCII frames (`:` + hex + LRC + CRLF), and the
//! scanner that picks our reply out of whatever is on the line.
//!
//! Invariants:
//! - [`scan_rtu`] never accepts a frame whose address, function or CRC does not match
//!   the outstanding request; a CRC-valid frame that is not our reply (another master,
//!   an unsolicited broadcast, a late reply from another unit) is reported as
//!   [`Scan::Stray`] and skipped, bytes that cannot start any frame are dropped one at
//!   a time ([`Scan::Garbage`]) so the scanner resynchronises on the next frame.
//! - The same PDU code serves the client and the simulator (`demo::rtu_slave`): both agree.

use std::borrow::Cow;
use tokio_modbus::{ExceptionCode, Request, Response};

use crate::model::bytes::{crc16_modbus, lrc};

fn be(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn unpack_bits(bytes: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

fn words(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn word_bytes(ws: &[u16]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Function code of a request.
pub fn function(req: &Request<'_>) -> u8 {
    req.function_code().value()
}

/// Encodes a request PDU (function code first). `None` for functions we do not speak.
pub fn encode_request(req: &Request<'_>) -> Option<Vec<u8>> {
    // A read or single write is 5 bytes: allocated once.
    let mut p = Vec::with_capacity(5);
    encode_request_into(req, &mut p).then_some(p)
}

/// Appends the request PDU to `p`; false (nothing appended) for functions we do not speak.
pub fn encode_request_into(req: &Request<'_>, p: &mut Vec<u8>) -> bool {
    let f = function(req);
    let mark = p.len();
    p.push(f);
    match req {
        Request::ReadCoils(a, q)
        | Request::ReadDiscreteInputs(a, q)
        | Request::ReadHoldingRegisters(a, q)
        | Request::ReadInputRegisters(a, q) => {
            p.extend(be(*a));
            p.extend(be(*q));
        }
        Request::WriteSingleCoil(a, on) => {
            p.extend(be(*a));
            p.extend(be(if *on { 0xFF00 } else { 0 }));
        }
        Request::WriteSingleRegister(a, w) => {
            p.extend(be(*a));
            p.extend(be(*w));
        }
        Request::WriteMultipleCoils(a, bits) => {
            let packed = pack_bits(bits);
            p.extend(be(*a));
            p.extend(be(bits.len() as u16));
            p.push(packed.len() as u8);
            p.extend(packed);
        }
        Request::WriteMultipleRegisters(a, ws) => {
            p.extend(be(*a));
            p.extend(be(ws.len() as u16));
            p.push((ws.len() * 2) as u8);
            p.extend(word_bytes(ws));
        }
        Request::MaskWriteRegister(a, and, or) => {
            p.extend(be(*a));
            p.extend(be(*and));
            p.extend(be(*or));
        }
        _ => {
            p.truncate(mark);
            return false;
        }
    }
    true
}

/// Exception code from its wire byte.
pub fn exception_from(code: u8) -> ExceptionCode {
    match code {
        0x01 => ExceptionCode::IllegalFunction,
        0x02 => ExceptionCode::IllegalDataAddress,
        0x03 => ExceptionCode::IllegalDataValue,
        0x04 => ExceptionCode::ServerDeviceFailure,
        0x05 => ExceptionCode::Acknowledge,
        0x06 => ExceptionCode::ServerDeviceBusy,
        0x08 => ExceptionCode::MemoryParityError,
        0x0A => ExceptionCode::GatewayPathUnavailable,
        0x0B => ExceptionCode::GatewayTargetDevice,
        c => ExceptionCode::Custom(c),
    }
}

/// Why a reply PDU is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReply {
    #[error("function {got:#04x} in reply to {want:#04x}")]
    WrongFunction { got: u8, want: u8 },
    #[error("empty reply")]
    Empty,
    #[error("reply without byte count")]
    NoByteCount,
    #[error("byte count {count} but {data} data bytes")]
    ByteCount { count: usize, data: usize },
    #[error("reply too short")]
    TooShort,
    #[error("function {0:#04x} not supported")]
    Unsupported(u8),
}

/// Decodes a reply PDU to `req`.
pub fn decode_response(
    req: &Request<'_>,
    pdu: &[u8],
) -> Result<Result<Response, ExceptionCode>, MalformedReply> {
    let f = function(req);
    match pdu {
        [x, code] if *x == f | 0x80 => return Ok(Err(exception_from(*code))),
        [x, ..] if *x != f => return Err(MalformedReply::WrongFunction { got: *x, want: f }),
        [] => return Err(MalformedReply::Empty),
        _ => {}
    }
    let u16at = |i: usize| pdu.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let counted = || -> Result<&[u8], MalformedReply> {
        let count = usize::from(*pdu.get(1).ok_or(MalformedReply::NoByteCount)?);
        pdu.get(2..2 + count)
            .filter(|d| d.len() + 2 == pdu.len())
            .ok_or(MalformedReply::ByteCount {
                count,
                data: pdu.len() - 2,
            })
    };
    let short = || MalformedReply::TooShort;
    let r = match req {
        Request::ReadCoils(_, q) => Response::ReadCoils(unpack_bits(counted()?, usize::from(*q))),
        Request::ReadDiscreteInputs(_, q) => {
            Response::ReadDiscreteInputs(unpack_bits(counted()?, usize::from(*q)))
        }
        Request::ReadHoldingRegisters(..) => Response::ReadHoldingRegisters(words(counted()?)),
        Request::ReadInputRegisters(..) => Response::ReadInputRegisters(words(counted()?)),
        Request::WriteSingleCoil(..) => Response::WriteSingleCoil(
            u16at(1).ok_or_else(short)?,
            u16at(3).ok_or_else(short)? == 0xFF00,
        ),
        Request::WriteSingleRegister(..) => {
            Response::WriteSingleRegister(u16at(1).ok_or_else(short)?, u16at(3).ok_or_else(short)?)
        }
        Request::WriteMultipleCoils(..) => {
            Response::WriteMultipleCoils(u16at(1).ok_or_else(short)?, u16at(3).ok_or_else(short)?)
        }
        Request::WriteMultipleRegisters(..) => Response::WriteMultipleRegisters(
            u16at(1).ok_or_else(short)?,
            u16at(3).ok_or_else(short)?,
        ),
        Request::MaskWriteRegister(..) => Response::MaskWriteRegister(
            u16at(1).ok_or_else(short)?,
            u16at(3).ok_or_else(short)?,
            u16at(5).ok_or_else(short)?,
        ),
        _ => return Err(MalformedReply::Unsupported(f)),
    };
    Ok(Ok(r))
}

/// Decodes a request PDU (for the simulated slave).
pub fn decode_request(pdu: &[u8]) -> Option<Request<'static>> {
    let u16at = |i: usize| pdu.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    Some(match *pdu.first()? {
        1 => Request::ReadCoils(u16at(1)?, u16at(3)?),
        2 => Request::ReadDiscreteInputs(u16at(1)?, u16at(3)?),
        3 => Request::ReadHoldingRegisters(u16at(1)?, u16at(3)?),
        4 => Request::ReadInputRegisters(u16at(1)?, u16at(3)?),
        5 => Request::WriteSingleCoil(u16at(1)?, u16at(3)? == 0xFF00),
        6 => Request::WriteSingleRegister(u16at(1)?, u16at(3)?),
        15 => {
            let q = usize::from(u16at(3)?);
            Request::WriteMultipleCoils(u16at(1)?, Cow::Owned(unpack_bits(pdu.get(6..)?, q)))
        }
        16 => Request::WriteMultipleRegisters(u16at(1)?, Cow::Owned(words(pdu.get(6..)?))),
        22 => Request::MaskWriteRegister(u16at(1)?, u16at(3)?, u16at(5)?),
        _ => return None,
    })
}

/// Encodes a reply PDU (for the simulated slave).
pub fn encode_response(f: u8, r: &Result<Response, ExceptionCode>) -> Vec<u8> {
    let mut p = vec![f];
    match r {
        Err(code) => {
            p[0] = f | 0x80;
            p.push(u8::from(*code));
        }
        Ok(Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits)) => {
            let packed = pack_bits(bits);
            p.push(packed.len() as u8);
            p.extend(packed);
        }
        Ok(Response::ReadHoldingRegisters(ws) | Response::ReadInputRegisters(ws)) => {
            p.push((ws.len() * 2) as u8);
            p.extend(word_bytes(ws));
        }
        Ok(Response::WriteSingleCoil(a, on)) => {
            p.extend(be(*a));
            p.extend(be(if *on { 0xFF00 } else { 0 }));
        }
        Ok(
            Response::WriteSingleRegister(a, w)
            | Response::WriteMultipleCoils(a, w)
            | Response::WriteMultipleRegisters(a, w),
        ) => {
            p.extend(be(*a));
            p.extend(be(*w));
        }
        Ok(Response::MaskWriteRegister(a, x, y)) => {
            p.extend(be(*a));
            p.extend(be(*x));
            p.extend(be(*y));
        }
        Ok(_) => {}
    }
    p
}

/// An RTU frame: address, PDU, CRC (low byte first).
pub fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(pdu.len() + 3);
    f.push(unit);
    f.extend_from_slice(pdu);
    rtu_seal(&mut f);
    f
}

/// Appends the CRC of the RTU frame in `out` (address and PDU already there).
pub fn rtu_seal(out: &mut Vec<u8>) {
    let crc = crc16_modbus(out);
    out.extend(crc.to_le_bytes());
}

/// A Modbus TCP frame: the MBAP header (transaction id, protocol 0, length of unit + PDU,
/// unit), then the PDU.
pub fn mbap_frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(pdu.len() + 7);
    mbap_header(&mut f, tid, unit);
    f.extend_from_slice(pdu);
    mbap_seal(&mut f);
    f
}

/// Appends an MBAP header whose length [`mbap_seal`] fills in once the PDU follows it.
pub fn mbap_header(out: &mut Vec<u8>, tid: u16, unit: u8) {
    out.extend(tid.to_be_bytes());
    out.extend([0, 0, 0, 0, unit]);
}

/// Writes the length field of the MBAP frame in `out` (header and PDU already there).
pub fn mbap_seal(out: &mut [u8]) {
    let len = out.len().saturating_sub(6) as u16;
    if let Some(field) = out.get_mut(4..6) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

/// The reply to transaction `tid` at the start of a Modbus TCP stream: [`Scan::Reply`]
/// (its PDU, whatever its function: the decoder judges it), [`Scan::Stray`] for a frame
/// of another transaction (a late reply), [`Scan::Garbage`] when the bytes are not an
/// MBAP header (the stream is out of step), [`Scan::NeedMore`].
pub fn scan_mbap(buf: &[u8], tid: u16) -> Scan {
    let Some(h) = buf.get(..7) else {
        return Scan::NeedMore;
    };
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // Unit + function at least; a PDU is at most 253 bytes.
    if h[2] != 0 || h[3] != 0 || !(2..=254).contains(&len) {
        return Scan::Garbage;
    }
    let total = 6 + len;
    let Some(frame) = buf.get(..total) else {
        return Scan::NeedMore;
    };
    if u16::from_be_bytes([h[0], h[1]]) == tid {
        Scan::Reply {
            pdu: frame[7..].to_vec(),
            len: total,
        }
    } else {
        Scan::Stray { len: total }
    }
}

/// An ASCII frame: `:`, hex of address + PDU + LRC, CRLF.
pub fn ascii_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut raw = vec![unit];
    raw.extend_from_slice(pdu);
    raw.push(lrc(&raw));
    let mut f = Vec::with_capacity(raw.len() * 2 + 3);
    f.push(b':');
    for b in raw {
        f.extend(format!("{b:02X}").bytes());
    }
    f.extend(b"\r\n");
    f
}

/// What the head of a receive buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Our reply: its PDU, and how many bytes it took.
    Reply { pdu: Vec<u8>, len: usize },
    /// Our unit and function but a bad checksum: the reply is lost.
    BadChecksum { len: usize },
    /// A valid frame that is not our reply.
    Stray { len: usize },
    /// A byte that cannot start a frame.
    Garbage,
    /// Not enough bytes yet.
    NeedMore,
}

/// Length of a reply frame (address..CRC) to function `f`, from the bytes so far.
fn rtu_reply_len(buf: &[u8]) -> Option<usize> {
    let f = *buf.get(1)?;
    Some(match f {
        x if x & 0x80 != 0 => 5,
        1..=4 | 23 => 5 + usize::from(*buf.get(2)?),
        5 | 6 | 15 | 16 => 8,
        22 => 10,
        _ => return None,
    })
}

/// Length of a request frame to function `f` (other masters on the line).
pub fn rtu_request_len(buf: &[u8]) -> Option<usize> {
    Some(match *buf.get(1)? {
        1..=6 => 8,
        15 | 16 => 9 + usize::from(*buf.get(6)?),
        22 => 10,
        _ => return None,
    })
}

pub fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 4 && {
        let (body, crc) = frame.split_at(frame.len() - 2);
        crc16_modbus(body).to_le_bytes() == [crc[0], crc[1]]
    }
}

/// Looks at the head of `buf` for the reply of `unit` to function `f`.
pub fn scan_rtu(buf: &[u8], unit: u8, f: u8) -> Scan {
    if buf.len() < 2 {
        return Scan::NeedMore;
    }
    let ours = buf[0] == unit && (buf[1] == f || buf[1] == f | 0x80);
    // A frame with our unit and function is judged as our reply only: another master
    // addressing our unit with our function while we hold the line is not plausible,
    // and waiting for a longer request frame would only end in a timeout.
    let candidates = [
        rtu_reply_len(buf),
        if ours { None } else { rtu_request_len(buf) },
    ];
    let mut need_more = buf.len() < 3;
    for len in candidates.into_iter().flatten() {
        match buf.get(..len) {
            Some(frame) if crc_ok(frame) => {
                return if ours && Some(len) == candidates[0] {
                    Scan::Reply {
                        pdu: frame[1..len - 2].to_vec(),
                        len,
                    }
                } else {
                    Scan::Stray { len }
                };
            }
            Some(_) => {}
            None => need_more = true,
        }
    }
    match candidates[0] {
        _ if need_more => Scan::NeedMore,
        Some(len) if ours => Scan::BadChecksum { len },
        _ => Scan::Garbage,
    }
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Longest ASCII frame (Modbus over serial line §2.5.2.1): `:`, 2 × 255 hex digits, CRLF.
pub const MAX_ASCII_FRAME: usize = 513;

/// Looks at the head of `buf` for the ASCII reply of `unit` to function `f`.
pub fn scan_ascii(buf: &[u8], unit: u8, f: u8) -> Scan {
    let Some(&first) = buf.first() else {
        return Scan::NeedMore;
    };
    if first != b':' {
        return Scan::Garbage;
    }
    let window = &buf[..buf.len().min(MAX_ASCII_FRAME)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        // No frame is longer: a run without its LF is noise up to the next `:`, so a
        // chattering line cannot grow the receive buffer until the request times out.
        if buf.len() >= MAX_ASCII_FRAME {
            let len = buf[1..]
                .iter()
                .position(|&b| b == b':')
                .map_or(buf.len(), |p| p + 1);
            return Scan::Stray { len };
        }
        return Scan::NeedMore;
    };
    let len = end + 1;
    let body = buf[1..end].strip_suffix(b"\r").unwrap_or(&buf[1..end]);
    if !body.len().is_multiple_of(2) || body.len() < 6 {
        return Scan::Stray { len };
    }
    let Some(raw) = body
        .chunks_exact(2)
        .map(|c| Some(hex_val(c[0])? << 4 | hex_val(c[1])?))
        .collect::<Option<Vec<u8>>>()
    else {
        return Scan::Stray { len };
    };
    let ours = raw[0] == unit && (raw[1] == f || raw[1] == f | 0x80);
    let (data, sum) = raw.split_at(raw.len() - 1);
    match (lrc(data) == sum[0], ours) {
        (true, true) => Scan::Reply {
            pdu: data[1..].to_vec(),
            len,
        },
        (false, true) => Scan::BadChecksum { len },
        _ => Scan::Stray { len },
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
