//! Our own Modbus client over any byte stream: RTU and ASCII on a serial port (RS-485) or
//! a TCP stream to a serial device server (`framing = "rtu"`), and Modbus TCP (MBAP).
//!
//! Why not tokio-modbus's RTU client: it has no ASCII mode, no inter-frame silence, and
//! it takes the next frame with the right unit and function as the answer, so a late
//! reply to a timed-out request (or a broadcast from a lighting panel) answers the next
//! request. Why not its TCP client: its `Framed` transport keeps an 8 KiB read and an
//! 8 KiB write buffer per connection (measured: 14.5 KB of RSS per connected device, 2.9
//! MB at 200 devices); this one reads into one small buffer and matches a reply by its
//! transaction id, so a late reply is skipped, never taken for the next one. A link calls
//! it directly ([`LinkClient`], [`FramedClient::request`]): no boxed future per request,
//! the request frame built in a buffer kept for the connection. `polegate probe` and the
//! tests reach it through tokio-modbus's `Context` (the `Client` trait).
//!
//! Invariants:
//! - One transaction at a time (`&mut self`); the inter-frame gap before each request is
//!   spent listening, and whatever arrives is discarded and counted
//!   (`modbus_stray_frame`); after a timeout the line is drained for a full gap from
//!   then on: a late reply can never answer the next request.
//! - A request leaves at least one gap (3.5 character times, 1.75 ms above 19200 baud)
//!   after the last byte seen on the line or the estimated end of our own last frame.
//! - Only a frame with our unit, our function (or its exception) and a valid CRC/LRC is
//!   an answer; other valid frames are skipped; a bad checksum on our reply is an error
//!   (`InvalidData`, the port stays open).
//! - No await here is unbounded except the reply wait, which the caller wraps in its
//!   request timeout (read.rs/write.rs); drains are bounded by [`MAX_DRAIN`].

use super::fault_counter::FaultCounter;
use super::frame::{self, Scan};
use crate::ops::counters::ModbusFault;
use async_trait::async_trait;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_modbus::client::Client;
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{Request, Response, Slave};

/// Longest we keep draining a chattering line before sending anyway.
pub const MAX_DRAIN: Duration = Duration::from_millis(200);
/// Floor of the drain silence window, for ptys and device servers whose timing is not
/// the wire's (bytes arrive in bursts over TCP).
pub const MIN_DRAIN_SILENCE: Duration = Duration::from_millis(2);

/// What goes wrong on the line, carried inside the `io::Error`s tokio-modbus's
/// `Client` trait returns (`InvalidData`: the port stays open).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("function {0:#04x} not supported on serial")]
    Unsupported(u8),
    #[error("{} error in the reply of unit {unit}", if *.mode == Mode::Rtu { "CRC" } else { "LRC" })]
    BadChecksum { mode: Mode, unit: u8 },
    #[error("the Modbus TCP stream is out of step (not an MBAP header) waiting for unit {unit}")]
    OutOfStep { unit: u8 },
    #[error("garbled reply from unit {unit}: {source}")]
    Garbled {
        unit: u8,
        #[source]
        source: frame::MalformedReply,
    },
}

/// Line discipline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rtu,
    Ascii,
}

/// Wire timing of a serial line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// One character on the wire (start + data + parity + stop bits).
    pub char_time: Duration,
    /// Inter-frame silence: 3.5 characters, 1.75 ms above 19200 baud.
    pub gap: Duration,
}

impl Timing {
    pub fn new(baud: u32, data_bits: u8, parity: bool, stop_bits: u8) -> Timing {
        let bits = 1 + u32::from(data_bits) + u32::from(parity) + u32::from(stop_bits);
        let char_time = Duration::from_nanos(u64::from(bits) * 1_000_000_000 / u64::from(baud));
        let gap = if baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            char_time * 7 / 2
        };
        Timing { char_time, gap }
    }

    /// No wire (TCP to a device server): no pacing beyond the drain.
    pub fn none() -> Timing {
        Timing {
            char_time: Duration::ZERO,
            gap: Duration::ZERO,
        }
    }
}

/// A Modbus RTU/ASCII master on a stream.
pub struct FramedClient<S> {
    stream: S,
    mode: Mode,
    timing: Timing,
    /// The unit of the current (or last) request; also what tokio-modbus's `set_slave`
    /// sets for `Client::call`.
    unit: u8,
    /// Earliest instant the next request may start.
    quiet_from: Instant,
    /// The last transaction did not complete: drain a full gap before the next.
    dirty: bool,
    buf: Vec<u8>,
    /// The request frame being sent.
    out: Vec<u8>,
    /// Modbus TCP (MBAP headers, no checksum, no line timing) instead of `mode`.
    tcp: bool,
    /// Modbus TCP: the transaction id of the last request.
    tid: u16,
    faults: FaultCounter,
}

impl<S> std::fmt::Debug for FramedClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedClient")
            .field("mode", &self.mode)
            .field("unit", &self.unit)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FramedClient<S> {
    pub fn new(stream: S, mode: Mode, timing: Timing, faults: FaultCounter) -> Self {
        FramedClient {
            stream,
            mode,
            timing,
            unit: 1,
            quiet_from: Instant::now(),
            dirty: true,
            buf: Vec::with_capacity(256),
            out: Vec::with_capacity(32),
            tcp: false,
            tid: 0,
            faults,
        }
    }

    /// A Modbus TCP master on `stream`.
    pub fn tcp(stream: S, faults: FaultCounter) -> FramedClient<S> {
        FramedClient {
            tcp: true,
            ..FramedClient::new(stream, Mode::Rtu, Timing::none(), faults)
        }
    }

    /// The pacing gap before a request, spent listening: whatever arrives is discarded
    /// and extends the wait until the line has been silent for the gap. After an
    /// unfinished transaction (timeout, fresh port) the line is drained for at least one
    /// gap from now. Bounded by [`MAX_DRAIN`].
    async fn drain(&mut self) -> io::Result<()> {
        let silence = self.timing.gap.max(MIN_DRAIN_SILENCE);
        let now = Instant::now();
        let mut until = if self.dirty {
            self.quiet_from.max(now + silence)
        } else {
            self.quiet_from
        };
        let hard = now + MAX_DRAIN;
        let mut junk = [0u8; 256];
        let mut dropped = !self.buf.is_empty();
        self.buf.clear();
        loop {
            // `timeout_at` polls the read once even when `until` has passed, so bytes
            // already buffered are always seen.
            match tokio::time::timeout_at(until.min(hard), self.stream.read(&mut junk)).await {
                Err(_) => break,
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {
                    dropped = true;
                    until = Instant::now() + silence;
                }
                Ok(Err(e)) => return Err(e),
            }
            if Instant::now() >= hard {
                break;
            }
        }
        if dropped {
            // Nobody's reply: the link's, not a device's.
            self.faults.count(ModbusFault::StrayFrame, None);
            tracing::debug!(unit = self.unit, "discarded bytes left on the line");
        }
        Ok(())
    }

    async fn transact(&mut self, unit: u8, req: &Request<'_>) -> io::Result<Vec<u8>> {
        let f = frame::function(req);
        self.unit = unit;
        if !self.encode(unit, req) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                LineError::Unsupported(f),
            ));
        }
        self.send().await?;
        self.reply(unit, f).await
    }

    /// Builds the request frame in `out` (kept for the connection's life); false for a
    /// function we do not speak.
    fn encode(&mut self, unit: u8, req: &Request<'_>) -> bool {
        self.tid = self.tid.wrapping_add(1);
        let out = &mut self.out;
        out.clear();
        match self.mode {
            _ if self.tcp => {
                frame::mbap_header(out, self.tid, unit);
                let ok = frame::encode_request_into(req, out);
                frame::mbap_seal(out);
                ok
            }
            Mode::Rtu => {
                out.push(unit);
                let ok = frame::encode_request_into(req, out);
                frame::rtu_seal(out);
                ok
            }
            Mode::Ascii => frame::encode_request(req)
                .map(|pdu| *out = frame::ascii_frame(unit, &pdu))
                .is_some(),
        }
    }

    /// Drains the line (serial framings) and writes the request frame in `out`.
    async fn send(&mut self) -> io::Result<()> {
        // Over TCP a late reply is told apart by its transaction id: nothing to drain.
        if !self.tcp {
            self.drain().await?;
        }
        self.dirty = true;
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        self.quiet_from =
            Instant::now() + self.timing.char_time * self.out.len() as u32 + self.timing.gap;
        Ok(())
    }

    /// Reads until the reply of `unit` to function `f` (its PDU), skipping what is not.
    async fn reply(&mut self, unit: u8, f: u8) -> io::Result<Vec<u8>> {
        let mut chunk = [0u8; 256];
        loop {
            // Consume everything decidable in the buffer.
            loop {
                let scan = match self.mode {
                    _ if self.tcp => frame::scan_mbap(&self.buf, self.tid),
                    Mode::Rtu => frame::scan_rtu(&self.buf, unit, f),
                    Mode::Ascii => frame::scan_ascii(&self.buf, unit, f),
                };
                match scan {
                    Scan::Reply { pdu, len } => {
                        self.buf.drain(..len);
                        self.dirty = false;
                        self.quiet_from = Instant::now() + self.timing.gap;
                        return Ok(pdu);
                    }
                    Scan::BadChecksum { len } => {
                        self.buf.drain(..len);
                        self.dirty = false;
                        self.faults.count(ModbusFault::CrcError, Some(unit));
                        self.quiet_from = Instant::now() + self.timing.gap;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            LineError::BadChecksum {
                                mode: self.mode,
                                unit,
                            },
                        ));
                    }
                    Scan::Stray { len } => {
                        self.buf.drain(..len);
                        self.faults.count(ModbusFault::StrayFrame, None);
                    }
                    Scan::Garbage if self.tcp => {
                        self.buf.clear();
                        self.faults.count(ModbusFault::Malformed, Some(unit));
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            LineError::OutOfStep { unit },
                        ));
                    }
                    Scan::Garbage => {
                        self.buf.remove(0);
                    }
                    Scan::NeedMore => break,
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl<S> SlaveContext for FramedClient<S> {
    fn set_slave(&mut self, slave: Slave) {
        self.unit = slave.0;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FramedClient<S> {
    /// One transaction with `unit`: what tokio-modbus's `Client::call` does, called
    /// directly by the link's poll and write paths (no boxed future per request).
    pub async fn request(
        &mut self,
        unit: u8,
        request: &Request<'_>,
    ) -> tokio_modbus::Result<Response> {
        let pdu = self.transact(unit, request).await?;
        frame::decode_response(request, &pdu).map_err(|source| {
            self.faults.count(ModbusFault::Malformed, Some(unit));
            tokio_modbus::Error::Transport(io::Error::new(
                io::ErrorKind::InvalidData,
                LineError::Garbled { unit, source },
            ))
        })
    }
}

/// Any byte stream a link runs on: a TCP stream or a serial port.
pub trait LineStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> LineStream for T {}

/// The client a link keeps: ours, on whichever stream its endpoint opened.
pub type LinkClient = FramedClient<Box<dyn LineStream>>;

/// tokio-modbus's `Context` on our client, for `polegate probe` and the tests.
#[async_trait]
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Client for FramedClient<S> {
    async fn call(&mut self, request: Request<'_>) -> tokio_modbus::Result<Response> {
        let unit = self.unit;
        self.request(unit, &request).await
    }

    async fn disconnect(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

/// True when an error leaves the stream usable (the framing already resynchronised).
pub fn recoverable(e: &tokio_modbus::Error) -> bool {
    matches!(e, tokio_modbus::Error::Transport(io) if io.kind() == io::ErrorKind::InvalidData)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::counters::Counters;
    use std::sync::Arc;
    use tokio::io::duplex;
    use tokio_modbus::client::{Context, Reader};

    fn reply(unit: u8, value: u16) -> Vec<u8> {
        frame::rtu_frame(unit, &[0x03, 0x02, (value >> 8) as u8, value as u8])
    }

    #[tokio::test]
    async fn a_late_reply_after_a_timeout_is_drained_and_never_answers_the_next_request() {
        let (ours, mut line) = duplex(1024);
        let counters = Arc::new(Counters::default());
        let client = FramedClient::new(
            ours,
            Mode::Rtu,
            Timing::new(19200, 8, false, 1),
            FaultCounter::process_only(counters.clone()),
        );
        let mut ctx = Context::from(Box::new(client) as Box<dyn Client>);
        ctx.set_slave(Slave(5));
        // First request: nobody answers in time.
        let first =
            tokio::time::timeout(Duration::from_millis(50), ctx.read_holding_registers(0, 1)).await;
        assert!(first.is_err(), "timed out");
        let mut req = [0u8; 8];
        line.read_exact(&mut req)
            .await
            .expect("request 1 on the line");
        // Its answer arrives late, before the second request.
        line.write_all(&reply(5, 111)).await.expect("late reply");
        let slave = async {
            let mut req = [0u8; 8];
            line.read_exact(&mut req)
                .await
                .expect("request 2 on the line");
            line.write_all(&reply(5, 222)).await.expect("reply");
        };
        let (second, ()) = tokio::join!(ctx.read_holding_registers(0, 1), slave);
        assert_eq!(second.expect("transport").expect("no exception"), [222]);
        assert_eq!(
            counters
                .modbus_stray_frame
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn a_stray_frame_before_the_reply_is_skipped_and_a_bad_crc_is_an_error_that_keeps_the_line()
     {
        let (ours, mut line) = duplex(1024);
        let counters = Arc::new(Counters::default());
        let faults = FaultCounter::new(counters.clone(), "bus-a", [(2, "meter-2"), (9, "meter-9")]);
        let client = FramedClient::new(ours, Mode::Rtu, Timing::none(), faults);
        let mut ctx = Context::from(Box::new(client) as Box<dyn Client>);
        ctx.set_slave(Slave(2));
        let slave = async {
            let mut req = [0u8; 8];
            line.read_exact(&mut req).await.expect("request");
            let mut out = reply(9, 1);
            out.extend(reply(2, 7));
            line.write_all(&out).await.expect("reply");
            line.read_exact(&mut req).await.expect("request");
            let mut bad = reply(2, 8);
            bad[4] ^= 1;
            line.write_all(&bad).await.expect("reply");
        };
        let ((a, b), ()) = tokio::join!(
            async {
                let a = ctx.read_holding_registers(0, 1).await;
                let b = ctx.read_holding_registers(0, 1).await;
                (a, b)
            },
            slave
        );
        assert_eq!(a.expect("transport").expect("no exception"), [7]);
        let e = b.expect_err("bad CRC");
        assert!(recoverable(&e), "{e}");
        assert!(e.to_string().contains("CRC"));
        assert_eq!(
            counters
                .modbus_crc_error
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The bad CRC is unit 2's; the frame for unit 9 came unasked, so only the bus
        // counts it.
        let links = counters.breakdown.links();
        assert_eq!(links[0].0, "bus-a");
        assert!(links[0].1.contains(&("modbus_crc_error", 1)), "{links:?}");
        assert!(links[0].1.contains(&("modbus_stray_frame", 1)), "{links:?}");
        assert_eq!(
            counters.breakdown.device_errors(),
            vec![("meter-2".to_string(), vec![("modbus_crc_error", 1)])]
        );
    }
}
