//! The task that owns one Modbus TCP (or RTU-over-TCP) connection and every device
//! behind it. Devices are polled earliest-deadline-first on a fixed grid (deadlines
//! advance by `poll_ms` from the start, so polling never drifts; a missed slot is
//! skipped and counted as an overrun, never silently stretched). Exactly one transaction
//! is on the connection at a time. After a timeout or transport error the connection is
//! dropped and reopened with backoff.

use super::plan::{self, Block};
use super::read::{CycleError, exception_meaning, poll_cycle};
use super::write::write_point;
use crate::config::Framing;
use crate::model::Value;
use crate::model::now_ms;
use crate::ops::counters::Counters;
use crate::ops::ratelimit::{FailureLog, LogAction};
use crate::pipeline::{DeviceInfo, Input, LINK_OFFLINE, LINK_ONLINE};
use crate::southbound::{WriteOutcome, WriteRequest};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_util::sync::CancellationToken;

/// Consecutive failed poll cycles after which a device is reported offline (SPEC §8).
pub const OFFLINE_AFTER_FAILURES: u32 = 3;
/// Timeout of one request on a TCP link.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// Timeout of a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3000);
/// Reconnect backoff bounds.
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// One device polled on a link.
#[derive(Debug, Clone)]
pub struct PolledDevice {
    pub info: Arc<DeviceInfo>,
    pub unit: u8,
    pub poll: Duration,
    pub blocks: Vec<Block>,
}

impl PolledDevice {
    pub fn new(info: Arc<DeviceInfo>, unit: u8, poll: Duration) -> PolledDevice {
        let blocks = plan::plan(&info.profile.points, plan::DEFAULT_MAX_GAP);
        PolledDevice {
            info,
            unit,
            poll,
            blocks,
        }
    }
}

/// A TCP endpoint and the devices behind it.
#[derive(Debug, Clone)]
pub struct TcpLink {
    pub address: String,
    pub framing: Framing,
    pub devices: Vec<PolledDevice>,
    pub request_timeout: Duration,
}

struct DevState {
    next: Instant,
    failures: u32,
    online: Option<bool>,
    log: FailureLog,
}

struct Conn {
    ctx: Option<Context>,
    next_attempt: Instant,
    delay: Duration,
}

/// Runs the link until `cancel`. Readings and transitions go to `tx`.
pub async fn run_link(
    link: TcpLink,
    mut inbox: mpsc::Receiver<WriteRequest>,
    tx: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let start = Instant::now();
    let mut states: Vec<DevState> = link
        .devices
        .iter()
        .map(|_| DevState {
            next: start,
            failures: 0,
            online: None,
            log: FailureLog::default(),
        })
        .collect();
    let mut conn = Conn {
        ctx: None,
        next_attempt: start,
        delay: RECONNECT_MIN,
    };
    tracing::info!(address = %link.address, devices = link.devices.len(), "modbus link started");
    while let Some((i, deadline)) = states
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.next))
        .min_by_key(|(_, t)| *t)
    {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            // Commands go ahead of polls, between two transactions.
            Some(req) = inbox.recv() => {
                let msgs = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = run_write(&link, &mut conn, req, &counters) => m,
                };
                for m in msgs {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = tx.send(m) => if r.is_err() { return },
                    }
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let dev = &link.devices[i];
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            r = poll_once(&link, &mut conn, dev, &counters) => r,
        };
        let st = &mut states[i];
        // Fixed grid: next slot after now; skipped slots are overruns.
        st.next += dev.poll;
        let now = Instant::now();
        if st.next <= now {
            let behind = now.duration_since(st.next).as_nanos() / dev.poll.as_nanos().max(1) + 1;
            st.next += dev.poll * behind as u32;
            Counters::add(&counters.poll_overrun, behind as u64);
        }
        let msgs = judge(dev, st, outcome);
        for m in msgs {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = tx.send(m) => if r.is_err() { return },
            }
        }
    }
    tracing::info!(address = %link.address, "modbus link stopped");
}

/// Opens the connection if needed (respecting the reconnect backoff).
async fn ensure_connected<'c>(
    link: &TcpLink,
    conn: &'c mut Conn,
    counters: &Counters,
) -> Result<&'c mut Context, String> {
    if conn.ctx.is_none() {
        let now = Instant::now();
        if now < conn.next_attempt {
            return Err(format!(
                "not connected to {}; next attempt in {} ms",
                link.address,
                conn.next_attempt.duration_since(now).as_millis()
            ));
        }
        match connect(&link.address, link.framing).await {
            Ok(ctx) => {
                conn.ctx = Some(ctx);
                conn.delay = RECONNECT_MIN;
            }
            Err(e) => {
                Counters::inc(&counters.connect_failed);
                let jitter = fastrand::u64(0..=conn.delay.as_millis() as u64 / 2);
                conn.next_attempt = Instant::now() + conn.delay + Duration::from_millis(jitter);
                conn.delay = (conn.delay * 2).min(RECONNECT_MAX);
                return Err(e);
            }
        }
    }
    conn.ctx.as_mut().ok_or_else(|| "not connected".to_string())
}

async fn poll_once(
    link: &TcpLink,
    conn: &mut Conn,
    dev: &PolledDevice,
    counters: &Counters,
) -> Result<super::read::Cycle, String> {
    let ctx = ensure_connected(link, conn, counters).await?;
    match poll_cycle(
        ctx,
        dev.unit,
        &dev.info.profile,
        &dev.blocks,
        link.request_timeout,
        counters,
    )
    .await
    {
        Ok(c) => Ok(c),
        Err(e) => {
            // Drop the context: a late reply must never answer the next request.
            conn.ctx = None;
            Err(describe(&e, link))
        }
    }
}

/// Runs a command's writes in order, then reads the device back. Returns the messages
/// for the pipeline (read-back telemetry).
async fn run_write(
    link: &TcpLink,
    conn: &mut Conn,
    req: WriteRequest,
    counters: &Counters,
) -> Vec<Input> {
    let Some(dev) = link.devices.get(req.device) else {
        let _ = req.reply.send(WriteOutcome {
            points: vec![],
            error: Some("device not served by this link".into()),
        });
        return vec![];
    };
    let info = &dev.info;
    let mut applied = Vec::new();
    let fail = |applied: Vec<(usize, Value)>, error: String| {
        tracing::warn!(device_id = %info.id, error = %error, "command write failed");
        WriteOutcome {
            points: applied,
            error: Some(error),
        }
    };
    for (idx, value) in &req.writes {
        let Some(def) = info.profile.points.get(*idx) else {
            continue;
        };
        let ctx = match ensure_connected(link, conn, counters).await {
            Ok(c) => c,
            Err(e) => {
                let _ = req.reply.send(fail(applied, e));
                return vec![];
            }
        };
        match write_point(ctx, dev.unit, def, value, link.request_timeout, counters).await {
            Ok(()) => applied.push((*idx, value.clone())),
            Err(e) => {
                if e.fatal {
                    conn.ctx = None;
                }
                let msg = format!("point '{}': {} at {}", def.name, e.message, link.address);
                let _ = req.reply.send(fail(applied, msg));
                return vec![];
            }
        }
    }
    tracing::info!(device_id = %info.id, points = applied.len(), "command written");
    let written: Vec<usize> = applied.iter().map(|(i, _)| *i).collect();
    let readback = match ensure_connected(link, conn, counters).await {
        Ok(ctx) => poll_cycle(
            ctx,
            dev.unit,
            &info.profile,
            &dev.blocks,
            link.request_timeout,
            counters,
        )
        .await
        .map_err(|e| describe(&e, link)),
        Err(e) => Err(e),
    };
    match readback {
        Ok(cycle) => {
            let points = written
                .iter()
                .filter_map(|i| cycle.values.iter().find(|(j, _)| j == i).cloned())
                .collect();
            let _ = req.reply.send(WriteOutcome {
                points,
                error: None,
            });
            vec![Input::Reading {
                device: info.clone(),
                values: cycle.values,
                at_ms: now_ms(),
                force: written,
            }]
        }
        Err(e) => {
            conn.ctx = None;
            let _ = req.reply.send(fail(
                applied,
                format!("written, but the read-back failed: {e}"),
            ));
            vec![]
        }
    }
}

fn describe(e: &CycleError, link: &TcpLink) -> String {
    format!("{e} at {}", link.address)
}

async fn connect(address: &str, framing: Framing) -> Result<Context, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Err(_) => {
            return Err(format!(
                "connect to {address} timed out after {} ms",
                CONNECT_TIMEOUT.as_millis()
            ));
        }
        Ok(Err(e)) => return Err(format!("connect to {address} failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(match framing {
        Framing::Tcp => tokio_modbus::client::tcp::attach(stream),
        Framing::Rtu => tokio_modbus::client::rtu::attach(stream),
    })
}

/// Turns a cycle outcome into pipeline messages and log lines (state changes only).
fn judge(
    dev: &PolledDevice,
    st: &mut DevState,
    outcome: Result<super::read::Cycle, String>,
) -> Vec<Input> {
    let info = &dev.info;
    let mut out = Vec::new();
    match outcome {
        Ok(cycle) => {
            st.failures = 0;
            if let LogAction::Recovered { count } = st.log.success() {
                tracing::info!(device_id = %info.id, profile = %info.profile.name, failures = count, "device responding again");
            }
            for e in &cycle.exceptions {
                tracing::debug!(device_id = %info.id, table = e.table.as_str(), start = e.start, count = e.count,
                    code = ?e.code, meaning = exception_meaning(e.code), "device answered with an exception");
            }
            if st.online != Some(true) {
                st.online = Some(true);
                if let Some(e) = cycle.exceptions.first() {
                    tracing::warn!(device_id = %info.id, profile = %info.profile.name, table = e.table.as_str(),
                        start = e.start, count = e.count, meaning = exception_meaning(e.code),
                        "device online but some points answer with an exception");
                }
                if let Some(e) = cycle.decode_errors.first() {
                    tracing::warn!(device_id = %info.id, profile = %info.profile.name, error = %e, "point cannot be decoded");
                }
                tracing::info!(device_id = %info.id, profile = %info.profile.name, "device online");
                info.link.store(LINK_ONLINE, Relaxed);
                out.push(Input::State {
                    device: info.clone(),
                    online: true,
                    reason: None,
                });
            }
            if !cycle.values.is_empty() {
                out.push(Input::Reading {
                    device: info.clone(),
                    values: cycle.values,
                    at_ms: now_ms(),
                    force: Vec::new(),
                });
            }
        }
        Err(reason) => {
            st.failures += 1;
            match st.log.failure(std::time::Instant::now()) {
                LogAction::Failed => {
                    tracing::warn!(device_id = %info.id, profile = %info.profile.name, error = %reason, "device poll failed")
                }
                LogAction::Summary { count } => {
                    tracing::warn!(device_id = %info.id, profile = %info.profile.name, error = %reason, failures = count, "device still failing")
                }
                _ => {}
            }
            if st.failures >= OFFLINE_AFTER_FAILURES && st.online != Some(false) {
                st.online = Some(false);
                info.link.store(LINK_OFFLINE, Relaxed);
                tracing::warn!(device_id = %info.id, profile = %info.profile.name, failures = st.failures, "device offline");
                out.push(Input::State {
                    device: info.clone(),
                    online: false,
                    reason: Some(reason),
                });
            }
        }
    }
    out
}
