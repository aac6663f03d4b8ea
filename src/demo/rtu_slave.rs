//! A simulated Modbus RTU/ASCII slave bus with several units, for tests, the benchmark
//! and trying `polegate probe` without hardware. It speaks through the same codec as
//! the client ([`frame`]) and can misbehave per unit: stay silent, corrupt its CRC,
//! answer with an exception, or chatter a stray frame before each reply. It lives under
//! `demo` so that a cabinet build (`--no-default-features`) carries no simulator.
//!
//! Invariants: one request is answered at a time, in arrival order; with `wire` set,
//! each reply is delayed by the wire time of the request and the reply plus one
//! inter-frame gap (what a real line at that baud costs), so throughput measured against
//! it is comparable with the theoretical limit; every request addressed to a unit is
//! counted, answered or not.

use crate::ops::lock::lock;
use crate::southbound::modbus::frame::{self, Scan};
use crate::southbound::modbus::rtu::{Mode, Timing};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

/// How a simulated unit answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    #[default]
    Normal,
    /// Never answers.
    Dead,
    /// Answers with a corrupted CRC/LRC.
    BadChecksum,
    /// Answers every request with this exception.
    Exception(ExceptionCode),
}

/// One simulated unit: 256 entries per table.
#[derive(Debug)]
pub struct Unit {
    pub coils: Mutex<Vec<bool>>,
    pub holding: Mutex<Vec<u16>>,
    pub input: Mutex<Vec<u16>>,
    pub behaviour: Mutex<Behaviour>,
    pub requests: AtomicU64,
}

impl Default for Unit {
    fn default() -> Self {
        Unit {
            coils: Mutex::new(vec![false; 256]),
            holding: Mutex::new(vec![0; 256]),
            input: Mutex::new(vec![0; 256]),
            behaviour: Mutex::new(Behaviour::Normal),
            requests: AtomicU64::new(0),
        }
    }
}

impl Unit {
    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.behaviour) = b;
    }
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
    pub fn set_holding(&self, addr: usize, words: &[u16]) {
        let mut h = lock(&self.holding);
        h[addr..addr + words.len()].copy_from_slice(words);
    }
    pub fn holding(&self, addr: usize) -> u16 {
        lock(&self.holding)[addr]
    }

    fn answer(&self, req: &Request<'_>) -> Result<Response, ExceptionCode> {
        let range = |a: u16, q: u16, len: usize| {
            let (a, q) = (usize::from(a), usize::from(q));
            (q >= 1 && a + q <= len)
                .then_some(a..a + q)
                .ok_or(ExceptionCode::IllegalDataAddress)
        };
        Ok(match req {
            Request::ReadHoldingRegisters(a, q) => {
                let h = lock(&self.holding);
                Response::ReadHoldingRegisters(h[range(*a, *q, h.len())?].to_vec())
            }
            Request::ReadInputRegisters(a, q) => {
                let h = lock(&self.input);
                Response::ReadInputRegisters(h[range(*a, *q, h.len())?].to_vec())
            }
            Request::ReadCoils(a, q) | Request::ReadDiscreteInputs(a, q) => {
                let c = lock(&self.coils).clone();
                let bits = c[range(*a, *q, c.len())?].to_vec();
                if matches!(req, Request::ReadCoils(..)) {
                    Response::ReadCoils(bits)
                } else {
                    Response::ReadDiscreteInputs(bits)
                }
            }
            Request::WriteSingleCoil(a, on) => {
                let mut c = lock(&self.coils);
                let r = range(*a, 1, c.len())?;
                c[r.start] = *on;
                Response::WriteSingleCoil(*a, *on)
            }
            Request::WriteSingleRegister(a, w) => {
                self.set_holding(range(*a, 1, 256)?.start, &[*w]);
                Response::WriteSingleRegister(*a, *w)
            }
            Request::WriteMultipleRegisters(a, ws) => {
                let r = range(*a, ws.len() as u16, 256)?;
                self.set_holding(r.start, ws);
                Response::WriteMultipleRegisters(*a, ws.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// A simulated bus: units by address, a framing, optional wire timing.
#[derive(Debug)]
pub struct SlaveBus {
    pub mode: Mode,
    pub units: BTreeMap<u8, Arc<Unit>>,
    /// Honour wire time at this timing (benchmarks).
    pub wire: Option<Timing>,
    /// Send another unit's frame before every reply (a chattering line).
    pub chatter: bool,
    /// TCP connections accepted by [`SlaveBus::serve_tcp`].
    pub connections: AtomicU64,
    /// With `wire`: the theoretical line time of every answered transaction (request
    /// and reply characters plus two inter-frame gaps), in nanoseconds.
    pub wire_ns: AtomicU64,
    /// Answered transactions.
    pub answered: AtomicU64,
}

impl SlaveBus {
    pub fn new(mode: Mode, units: &[u8]) -> SlaveBus {
        SlaveBus {
            mode,
            units: units
                .iter()
                .map(|&u| (u, Arc::new(Unit::default())))
                .collect(),
            wire: None,
            chatter: false,
            connections: AtomicU64::new(0),
            wire_ns: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    pub fn unit(&self, u: u8) -> Arc<Unit> {
        self.units.get(&u).cloned().unwrap_or_default()
    }

    fn frame(&self, unit: u8, pdu: &[u8]) -> Vec<u8> {
        match self.mode {
            Mode::Rtu => frame::rtu_frame(unit, pdu),
            Mode::Ascii => frame::ascii_frame(unit, pdu),
        }
    }

    /// Takes one request frame off the head of `buf`: `(unit, request bytes, len)`.
    fn take_request(&self, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>, usize)> {
        loop {
            match self.mode {
                Mode::Rtu => {
                    if buf.len() < 2 {
                        return None;
                    }
                    let Some(len) = frame::rtu_request_len(buf) else {
                        // 15/16 need their byte count (offset 6) first.
                        if matches!(buf[1], 15 | 16) && buf.len() < 7 {
                            return None;
                        }
                        buf.remove(0);
                        continue;
                    };
                    if buf.len() < len {
                        return None;
                    }
                    if !frame::crc_ok(&buf[..len]) {
                        buf.remove(0);
                        continue;
                    }
                    let f: Vec<u8> = buf.drain(..len).collect();
                    return Some((f[0], f[1..len - 2].to_vec(), len));
                }
                Mode::Ascii => {
                    // Any unit and function: scan with the frame's own header.
                    let (u, f) = ascii_header(buf)?;
                    match frame::scan_ascii(buf, u, f) {
                        Scan::Reply { pdu, len } => {
                            buf.drain(..len);
                            return Some((u, pdu, len));
                        }
                        Scan::NeedMore => return None,
                        Scan::Stray { len } | Scan::BadChecksum { len } => {
                            buf.drain(..len);
                        }
                        Scan::Garbage => {
                            buf.remove(0);
                        }
                    }
                }
            }
        }
    }

    /// Serves one stream (a pty master or a TCP connection) until EOF or `cancel`.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut stream: S,
        cancel: CancellationToken,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            while let Some((u, pdu, req_len)) = self.take_request(&mut buf) {
                let Some(unit) = self.units.get(&u) else {
                    continue;
                };
                unit.requests.fetch_add(1, Relaxed);
                let Some(req) = frame::decode_request(&pdu) else {
                    continue;
                };
                let behaviour = *lock(&unit.behaviour);
                let f = frame::function(&req);
                let answer = match behaviour {
                    Behaviour::Dead => continue,
                    Behaviour::Exception(c) => Err(c),
                    _ => unit.answer(&req),
                };
                let mut out = self.frame(u, &frame::encode_response(f, &answer));
                if behaviour == Behaviour::BadChecksum {
                    let n = out.len();
                    let i = if self.mode == Mode::Rtu { n - 1 } else { n - 3 };
                    out[i] = match self.mode {
                        Mode::Rtu => out[i] ^ 0x5A,
                        Mode::Ascii if out[i] == b'0' => b'1',
                        Mode::Ascii => b'0',
                    };
                }
                if self.chatter {
                    let mut stray = self.frame(u.wrapping_add(100), &[3, 2, 0, 0]);
                    stray.extend(out);
                    out = stray;
                }
                if let Some(t) = self.wire {
                    let chars = (req_len + out.len()) as u32;
                    wire_delay(t.char_time * chars + t.gap).await;
                    let line = t.char_time * chars + t.gap * 2;
                    self.wire_ns.fetch_add(line.as_nanos() as u64, Relaxed);
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                self.answered.fetch_add(1, Relaxed);
            }
            let n = tokio::select! {
                _ = cancel.cancelled() => return,
                r = stream.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Serves RTU-over-TCP connections on `listener`, one task per connection.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        loop {
            let conn = tokio::select! {
                _ = cancel.cancelled() => return,
                c = listener.accept() => c,
            };
            if let Ok((s, _)) = conn {
                self.connections.fetch_add(1, Relaxed);
                let _ = s.set_nodelay(true);
                tokio::spawn(self.clone().serve(s, cancel.clone()));
            }
        }
    }
}

/// Sleeps `d` with sub-millisecond precision (the tokio timer ticks in whole
/// milliseconds, which would make the simulated line slower than the wire): the timer
/// for the bulk, a yielding wait for the last millisecond. Benchmarks only.
async fn wire_delay(d: std::time::Duration) {
    let end = tokio::time::Instant::now() + d;
    if let Some(bulk) = d.checked_sub(std::time::Duration::from_millis(1)) {
        tokio::time::sleep(bulk).await;
    }
    while tokio::time::Instant::now() < end {
        tokio::task::yield_now().await;
    }
}

fn ascii_header(buf: &[u8]) -> Option<(u8, u8)> {
    let hex = |i: usize| -> Option<u8> {
        let s = std::str::from_utf8(buf.get(i..i + 2)?).ok()?;
        u8::from_str_radix(s, 16).ok()
    };
    if buf.first() != Some(&b':') {
        return Some((0, 0));
    }
    Some((hex(1)?, hex(3)?))
}
