//! The serial port of one bus: opening it setting by setting (so a refused setting is
//! named), reopening with backoff, and reading frames under a deadline.
//!
//! `next_frame` is cancel-safe: bytes already read live in the framer, so the bus task
//! may drop the future in a `select!` (a command arrived) without losing input.

use super::framing::{Framed, Framer};
use crate::config::{BusCfg, Parity};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

pub const REOPEN_MIN: Duration = Duration::from_millis(500);
pub const REOPEN_MAX: Duration = Duration::from_secs(30);
/// Silence after which a partial frame (delimiter or length framing) is dropped.
pub const RESYNC_GAP: Duration = Duration::from_millis(200);
/// A write of one request may not take longer than this.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct Port {
    cfg: BusCfg,
    stream: Option<SerialStream>,
    framer: Framer,
    gap: Duration,
    pending: VecDeque<Framed>,
    last_byte: Instant,
    next_attempt: Instant,
    delay: Duration,
    /// Set when an open or I/O failure happened; taken by the bus for logging.
    pub error: Option<String>,
}

impl Port {
    pub fn new(cfg: BusCfg, framer: Framer, idle: Option<Duration>) -> Port {
        let now = Instant::now();
        Port {
            cfg,
            stream: None,
            framer,
            gap: idle.unwrap_or(RESYNC_GAP),
            pending: VecDeque::new(),
            last_byte: now,
            next_attempt: now,
            delay: REOPEN_MIN,
            error: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Opens the port if it is closed and the backoff allows.
    pub fn ensure_open(&mut self) -> Result<(), String> {
        if self.stream.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_attempt {
            return Err(format!(
                "port {} is not open; next attempt in {} ms",
                self.cfg.port.display(),
                self.next_attempt.duration_since(now).as_millis()
            ));
        }
        match open(&self.cfg) {
            Ok(s) => {
                self.stream = Some(s);
                self.delay = REOPEN_MIN;
                self.framer.reset();
                tracing::info!(bus_id = %self.cfg.id, port = %self.cfg.port.display(), "serial port open");
                Ok(())
            }
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    fn fail(&mut self, e: String) {
        self.stream = None;
        let jitter = fastrand::u64(0..=self.delay.as_millis() as u64 / 2);
        self.next_attempt = Instant::now() + self.delay + Duration::from_millis(jitter);
        self.delay = (self.delay * 2).min(REOPEN_MAX);
        self.error = Some(e);
    }

    /// Forgets buffered input (stale bytes are no reply to the next request).
    pub fn discard_input(&mut self) {
        self.framer.reset();
    }

    /// Frames already cut and not yet handed out.
    pub fn take_pending(&mut self) -> Vec<Framed> {
        self.pending.drain(..).collect()
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.ensure_open()?;
        let port = self.cfg.port.display().to_string();
        let Some(s) = self.stream.as_mut() else {
            return Err(format!("port {port} is not open"));
        };
        let r = tokio::time::timeout(WRITE_TIMEOUT, async {
            s.write_all(bytes).await?;
            s.flush().await
        })
        .await;
        let e = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("write to {port} failed: {e}"),
            Err(_) => format!(
                "write to {port} timed out after {} ms",
                WRITE_TIMEOUT.as_millis()
            ),
        };
        self.fail(e.clone());
        Err(e)
    }

    /// The next frame (or overlong drop) before `until`; `None` at the deadline. While the
    /// port is closed it waits for the reopen attempt.
    pub async fn next_frame(&mut self, until: Instant) -> Option<Framed> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Some(f);
            }
            if self.stream.is_none() {
                let at = self.next_attempt.min(until);
                tokio::time::sleep_until(at).await;
                if at == until {
                    return None;
                }
                let _ = self.ensure_open();
                continue;
            }
            let silence_at = self.framer.has_partial().then(|| self.last_byte + self.gap);
            let wake = silence_at.map_or(until, |s| s.min(until));
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => self.fail(format!("port {} closed", self.cfg.port.display())),
                    Ok(n) => {
                        self.last_byte = Instant::now();
                        let mut out = Vec::new();
                        self.framer.push(&buf[..n], &mut out);
                        self.pending.extend(out);
                    }
                    Err(e) => self.fail(format!("read from {} failed: {e}", self.cfg.port.display())),
                },
                _ = tokio::time::sleep_until(wake) => {
                    if silence_at.is_some_and(|s| Instant::now() >= s) {
                        let mut out = Vec::new();
                        self.framer.silence(&mut out);
                        self.pending.extend(out);
                    } else if Instant::now() >= until {
                        return None;
                    }
                }
            }
        }
    }
}

/// Opens the port, then applies each setting on its own so a refusal names it
/// (pseudo-terminals refuse even/odd parity with EINVAL).
fn open(cfg: &BusCfg) -> Result<SerialStream, String> {
    let port = cfg.port.display();
    let mut s = tokio_serial::new(cfg.port.to_string_lossy(), cfg.baud)
        .open_native_async()
        .map_err(|e| format!("cannot open serial port {port} at {} baud: {e}", cfg.baud))?;
    let data_bits = match cfg.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    s.set_data_bits(data_bits)
        .map_err(|e| format!("port {port} refused data_bits = {}: {e}", cfg.data_bits))?;
    let stop_bits = match cfg.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    s.set_stop_bits(stop_bits)
        .map_err(|e| format!("port {port} refused stop_bits = {}: {e}", cfg.stop_bits))?;
    let (parity, name) = match cfg.parity {
        Parity::None => (tokio_serial::Parity::None, "none"),
        Parity::Even => (tokio_serial::Parity::Even, "even"),
        Parity::Odd => (tokio_serial::Parity::Odd, "odd"),
    };
    s.set_parity(parity).map_err(|e| {
        format!("port {port} refused parity = \"{name}\": {e} (pseudo-terminals only take parity = \"none\")")
    })?;
    Ok(s)
}
