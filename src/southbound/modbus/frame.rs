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
    let mut p = vec![function(req)];
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
        _ => return None,
    }
    Some(p)
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
    let crc = crc16_modbus(&f);
    f.extend(crc.to_le_bytes());
    f
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

/// Looks at the head of `buf` for the ASCII reply of `unit` to function `f`.
pub fn scan_ascii(buf: &[u8], unit: u8, f: u8) -> Scan {
    let Some(&first) = buf.first() else {
        return Scan::NeedMore;
    };
    if first != b':' {
        return Scan::Garbage;
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
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
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_modbus_specification_example() {
        // Read holding 0x006B x3 from unit 0x11: CRC 0x8776 sent as 76 87.
        let f = rtu_frame(0x11, &[0x03, 0x00, 0x6B, 0x00, 0x03]);
        assert_eq!(f, [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87]);
    }

    #[test]
    fn ascii_frame_matches_the_modbus_serial_guide_example() {
        // Guide example: unit 0x11 read holding 0x006B x3 → LRC 0x7E.
        let f = ascii_frame(0x11, &[0x03, 0x00, 0x6B, 0x00, 0x03]);
        assert_eq!(f, b":1103006B00037E\r\n");
        assert_eq!(
            scan_ascii(&f, 0x11, 3),
            Scan::Reply {
                pdu: vec![0x03, 0x00, 0x6B, 0x00, 0x03],
                len: f.len()
            }
        );
    }

    #[test]
    fn ascii_reply_with_a_wrong_lrc_is_a_bad_checksum_and_other_units_are_stray() {
        let mut f = ascii_frame(2, &[0x03, 0x02, 0x12, 0x34]);
        let n = f.len();
        f[n - 3] = b'0';
        f[n - 4] = b'0';
        assert_eq!(scan_ascii(&f, 2, 3), Scan::BadChecksum { len: n });
        let other = ascii_frame(9, &[0x03, 0x02, 0x12, 0x34]);
        assert_eq!(scan_ascii(&other, 2, 3), Scan::Stray { len: n });
        assert_eq!(scan_ascii(b"xx", 2, 3), Scan::Garbage);
        assert_eq!(scan_ascii(b":0103", 2, 3), Scan::NeedMore);
    }

    #[test]
    fn every_request_round_trips_through_the_slave_codec() {
        let reqs = [
            Request::ReadCoils(3, 10),
            Request::ReadDiscreteInputs(0, 1),
            Request::ReadHoldingRegisters(100, 2),
            Request::ReadInputRegisters(7, 125),
            Request::WriteSingleCoil(4, true),
            Request::WriteSingleRegister(5, 0xBEEF),
            Request::WriteMultipleCoils(1, Cow::Owned(vec![true, false, true])),
            Request::WriteMultipleRegisters(9, Cow::Owned(vec![1, 2, 3])),
            Request::MaskWriteRegister(2, 0xFF00, 0x0012),
        ];
        for r in reqs {
            let pdu = encode_request(&r).expect("encodable");
            assert_eq!(decode_request(&pdu), Some(r));
        }
    }

    #[test]
    fn replies_decode_against_their_request_and_exceptions_are_data() {
        let req = Request::ReadHoldingRegisters(0, 2);
        let pdu = encode_response(3, &Ok(Response::ReadHoldingRegisters(vec![0x4148, 1])));
        assert_eq!(
            decode_response(&req, &pdu),
            Ok(Ok(Response::ReadHoldingRegisters(vec![0x4148, 1])))
        );
        let exc = encode_response(3, &Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(exc, [0x83, 0x02]);
        assert_eq!(
            decode_response(&req, &exc),
            Ok(Err(ExceptionCode::IllegalDataAddress))
        );
        assert!(decode_response(&req, &[0x04, 0x02, 0, 1]).is_err());
        assert!(decode_response(&req, &[0x03, 0x04, 0, 1]).is_err());
        let coils = Request::ReadCoils(0, 3);
        assert_eq!(
            decode_response(&coils, &[0x01, 0x01, 0b101]),
            Ok(Ok(Response::ReadCoils(vec![true, false, true])))
        );
    }

    #[test]
    fn the_scanner_skips_strays_and_garbage_and_flags_our_corrupted_reply() {
        let reply = rtu_frame(2, &[0x03, 0x02, 0x00, 0x2A]);
        // Another unit's reply, another master's request, a noise byte, then ours.
        let mut line = rtu_frame(7, &[0x03, 0x02, 0x00, 0x01]);
        line.extend(rtu_frame(5, &[0x03, 0x00, 0x00, 0x00, 0x01]));
        line.push(0x00);
        line.extend(&reply);
        let mut at = 0;
        let mut seen = Vec::new();
        loop {
            match scan_rtu(&line[at..], 2, 3) {
                Scan::Reply { pdu, len } => {
                    assert_eq!(pdu, [0x03, 0x02, 0x00, 0x2A]);
                    assert_eq!(at + len, line.len());
                    break;
                }
                Scan::Stray { len } => {
                    seen.push("stray");
                    at += len;
                }
                Scan::Garbage => {
                    seen.push("garbage");
                    at += 1;
                }
                other => panic!("unexpected {other:?} at {at}"),
            }
        }
        assert_eq!(seen, ["stray", "stray", "garbage"]);
        let mut bad = reply.clone();
        bad[4] ^= 0xFF;
        assert_eq!(scan_rtu(&bad, 2, 3), Scan::BadChecksum { len: 7 });
        assert_eq!(scan_rtu(&reply[..4], 2, 3), Scan::NeedMore);
    }
}
