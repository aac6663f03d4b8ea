//! The serial port of one bus: opening it through the shared opener (a refused setting
//! is named), reopening with the shared backoff, and reading frames under a deadline.
//!
//! `next_frame` is cancel-safe: bytes already read live in the framer, so the bus task
//! may drop the future in a `select!` (a command arrived) without losing input.

use super::framing::{Framed, Framer};
use crate::config::BusCfg;
use crate::southbound::bus::Reopen;
use crate::southbound::serial_port::{self, OpenError};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::SerialStream;

/// Reopen backoff bounds ([`Reopen`]).
pub const REOPEN_MIN: Duration = Duration::from_millis(500);
pub const REOPEN_MAX: Duration = Duration::from_secs(30);
/// Silence after which a partial frame (delimiter or length framing) is dropped.
pub const RESYNC_GAP: Duration = Duration::from_millis(200);
/// A write of one request may not take longer than this.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why the port could not take a request or lost its line. Cheap to clone: the bus
/// logs it and hands it to the cycle that was waiting.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("port {port} is not open; next attempt in {wait_ms} ms")]
    Waiting { port: String, wait_ms: u128 },
    #[error("write to {port} failed: {source}")]
    Write {
        port: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("write to {port} timed out after {ms} ms")]
    WriteTimeout { port: String, ms: u128 },
    #[error("port {port} closed")]
    Closed { port: String },
    #[error("read from {port} failed: {source}")]
    Read {
        port: String,
        #[source]
        source: Arc<io::Error>,
    },
}

pub struct Port {
    cfg: BusCfg,
    stream: Option<SerialStream>,
    framer: Framer,
    gap: Duration,
    pending: VecDeque<Framed>,
    last_byte: Instant,
    reopen: Reopen,
    /// Set when an open or I/O failure happened; taken by the bus for logging.
    pub error: Option<PortError>,
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
            reopen: Reopen::new(REOPEN_MIN, REOPEN_MAX),
            error: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Opens the port if it is closed and the backoff allows.
    pub fn ensure_open(&mut self) -> Result<&mut SerialStream, PortError> {
        if let Some(s) = self.stream.take() {
            return Ok(self.stream.insert(s));
        }
        if let Some(wait) = self.reopen.wait(Instant::now()) {
            return Err(PortError::Waiting {
                port: self.name(),
                wait_ms: wait.as_millis(),
            });
        }
        match serial_port::open(&self.cfg) {
            Ok(s) => {
                self.reopen.succeeded();
                self.framer.reset();
                tracing::info!(bus_id = %self.cfg.id, port = %self.cfg.port.display(), "serial port open");
                Ok(self.stream.insert(s))
            }
            Err(e) => {
                let e = PortError::from(e);
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    fn name(&self) -> String {
        self.cfg.port.display().to_string()
    }

    fn fail(&mut self, e: PortError) {
        self.stream = None;
        self.reopen.failed(Instant::now());
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

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        let port = self.name();
        let s = self.ensure_open()?;
        let r = tokio::time::timeout(WRITE_TIMEOUT, async {
            s.write_all(bytes).await?;
            s.flush().await
        })
        .await;
        let e = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => PortError::Write {
                port,
                source: Arc::new(e),
            },
            Err(_) => PortError::WriteTimeout {
                port,
                ms: WRITE_TIMEOUT.as_millis(),
            },
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
                let at = self.reopen.next().min(until);
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
                    Ok(0) => self.fail(PortError::Closed { port: self.name() }),
                    Ok(n) => {
                        self.last_byte = Instant::now();
                        let mut out = Vec::new();
                        self.framer.push(&buf[..n], &mut out);
                        self.pending.extend(out);
                    }
                    Err(e) => self.fail(PortError::Read { port: self.name(), source: Arc::new(e) }),
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
