//! What every charger connection shares: the configured devices by charge point, the
//! live connection of each charge point, device state transitions, telemetry out, and
//! the persisted transaction ids and open transactions (`kv:ocpp`).

use super::map::{Open, Tap};
use crate::buffer::{KvStore, Queue};
use crate::config::ocpp::{OcppCfg, OcppDeviceCfg};
use crate::model::command::WriteOutcome;
use crate::model::{LinkState, Value};
use crate::ops::counters::Counters;
use crate::pipeline::{DeviceInfo, Input};
use crate::profile::PointType;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Transaction ids are reserved in blocks: the block's end is flushed to disk before
/// any id of it is handed out, so a crash can skip ids but never reuse one.
const TX_BLOCK: i64 = 100;
/// Proxy mode: retry bounds for an unreachable upstream CSMS (full-jitter backoff).
const UPSTREAM_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(500);
const UPSTREAM_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// A connector device as configured.
#[derive(Debug, Clone)]
pub struct OcppDevice {
    pub info: Arc<DeviceInfo>,
    pub cfg: OcppDeviceCfg,
}

/// A command for the connection of a charge point.
pub struct ConnCmd {
    pub device: usize,
    /// (point name, point index, value)
    pub writes: Vec<(String, usize, Value)>,
    pub reply: oneshot::Sender<WriteOutcome>,
}

pub struct Live {
    pub conn: u64,
    pub cmds: mpsc::Sender<ConnCmd>,
    pub cancel: CancellationToken,
}

pub struct Hub {
    pub cfg: OcppCfg,
    pub devices: Vec<OcppDevice>,
    pub by_cp: HashMap<String, Vec<usize>>,
    /// The info each device's birth carries (meta extended after a BootNotification).
    births: Vec<Mutex<Arc<DeviceInfo>>>,
    pub live: Mutex<HashMap<String, Live>>,
    pub out: mpsc::Sender<Input>,
    pub counters: Arc<Counters>,
    kv: KvStore,
    queue: Queue,
    tx: tokio::sync::Mutex<(i64, i64)>,
    next_conn: AtomicU64,
    /// Refused handshakes: one line when they start, then summaries.
    refusals: Mutex<crate::ops::failure_log::FailureLog>,
    /// Proxy mode: per charge point, the upstream backoff and the earliest next attempt.
    upstream_retry: Mutex<HashMap<String, (crate::ops::backoff::Backoff, std::time::Instant)>>,
}

use crate::ops::lock::lock;

impl Hub {
    pub fn new(
        cfg: OcppCfg,
        devices: Vec<OcppDevice>,
        kv: KvStore,
        queue: Queue,
        out: mpsc::Sender<Input>,
        counters: Arc<Counters>,
    ) -> Hub {
        let mut by_cp: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in devices.iter().enumerate() {
            by_cp
                .entry(d.cfg.charge_point_id.clone())
                .or_default()
                .push(i);
        }
        let reserved = kv
            .get(b"tx_reserved")
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_be_bytes);
        Hub {
            births: devices.iter().map(|d| Mutex::new(d.info.clone())).collect(),
            cfg,
            devices,
            by_cp,
            live: Mutex::new(HashMap::new()),
            out,
            counters,
            kv,
            queue,
            tx: tokio::sync::Mutex::new((reserved, reserved)),
            next_conn: AtomicU64::new(1),
            upstream_retry: Mutex::new(HashMap::new()),
            refusals: Mutex::default(),
        }
    }

    /// Logs a refused handshake (`cp`: the charge point id asked for, cut to 64
    /// characters), rate-limited: the first of a run, then a summary every few minutes.
    pub fn refused(&self, cp: &str, why: &str) {
        let cp = super::map::bounded(cp.to_string(), 64);
        lock(&self.refusals).on_failure(
            std::time::Instant::now(),
            || tracing::info!(charge_point = %cp, why, "charger refused; further refusals are counted and summarized"),
            |count| tracing::info!(charge_point = %cp, why, refused = count, "chargers still being refused"),
        );
    }

    /// Proxy mode: whether the upstream of `cp` may be tried now (not within its backoff).
    pub fn upstream_due(&self, cp: &str) -> bool {
        lock(&self.upstream_retry)
            .get(cp)
            .is_none_or(|(_, at)| *at <= std::time::Instant::now())
    }

    /// Proxy mode: records the outcome of an upstream attempt for `cp`.
    pub fn upstream_outcome(&self, cp: &str, ok: bool) {
        let mut m = lock(&self.upstream_retry);
        if ok {
            m.remove(cp);
            return;
        }
        let (b, at) = m.entry(cp.to_string()).or_insert_with(|| {
            (
                crate::ops::backoff::Backoff::new(UPSTREAM_RETRY_MIN, UPSTREAM_RETRY_MAX),
                std::time::Instant::now(),
            )
        });
        *at = std::time::Instant::now() + b.next_wait();
    }

    /// Whether `connector` (a request's `connectorId`) is a configured connector of `cp`.
    pub fn has_connector(&self, cp: &str, connector: Option<&serde_json::Value>) -> bool {
        // Lenient like the mapping: real chargers send numbers as strings too.
        let Some(n) = connector.and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        }) else {
            return false;
        };
        self.by_cp
            .get(cp)
            .into_iter()
            .flatten()
            .any(|&d| u64::from(self.devices[d].cfg.connector) == n)
    }

    pub fn conn_no(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh transaction id, unique per gateway across restarts. Ids are handed out
    /// from blocks whose end is durable before the first id of the block is used
    /// (SPEC §5), degraded queue or not; each block starts above the stored reservation
    /// as read now (never taken as absent: an unreadable one is an error), so ids never
    /// go backwards even when the hub started while the state could not be read.
    pub async fn next_tx(&self) -> Result<i64, crate::buffer::BufferError> {
        let mut g = self.tx.lock().await;
        if g.0 >= g.1 {
            let stored = self
                .kv
                .get(b"tx_reserved")?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map_or(0, i64::from_be_bytes);
            let base = g.1.max(stored);
            let high = base + TX_BLOCK;
            let kv = self.kv.clone();
            tokio::task::spawn_blocking(move || {
                kv.insert_durable(b"tx_reserved", &high.to_be_bytes())
            })
            .await
            .unwrap_or_else(|_| Err(self.queue_closed()))?;
            g.0 = g.0.max(base);
            g.1 = high;
        }
        g.0 += 1;
        Ok(g.0)
    }

    fn queue_closed(&self) -> crate::buffer::BufferError {
        crate::buffer::BufferError::Closed {
            path: self.queue.path().to_path_buf(),
        }
    }

    /// The open transactions of charge point `cp` remembered from the last run; an error
    /// when the stored state cannot be read (never taken as "none", SPEC §5).
    pub fn load_open(&self, cp: &str) -> Result<BTreeMap<u32, Open>, crate::buffer::BufferError> {
        let key = format!("open/{cp}");
        Ok(self
            .kv
            .get(key.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Stores the open transactions of `cp` (at most one per configured connector: small)
    /// on the blocking pool; awaited, so the saves of one connection stay in order.
    pub async fn save_open(&self, cp: &str, open: &BTreeMap<u32, Open>) {
        let Ok(v) = serde_json::to_vec(open) else {
            return;
        };
        let (kv, key) = (self.kv.clone(), format!("open/{cp}"));
        let r = tokio::task::spawn_blocking(move || kv.insert(key.as_bytes(), &v).map(drop)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(charge_point = cp, error = %e, "open transactions not persisted")
            }
            Err(e) => {
                tracing::warn!(charge_point = cp, error = %e, "open transactions not persisted")
            }
        }
    }

    /// Records a device transition and publishes its state when it is one.
    pub async fn set_state(&self, dev: usize, online: bool, reason: Option<&str>) {
        let info = &self.devices[dev].info;
        let state = if online {
            LinkState::Online
        } else {
            LinkState::Offline
        };
        if !info.link.set(state) {
            return;
        }
        tracing::info!(device_id = %info.id, profile = %info.profile.name, online, reason, "OCPP charger {}", if online { "online" } else { "offline" });
        let birth = lock(&self.births[dev]).clone();
        let _ = self
            .out
            .send(Input::State {
                device: birth,
                online,
                reason: reason.map(str::to_string),
            })
            .await;
    }

    pub async fn set_cp_state(&self, cp: &str, online: bool, reason: Option<&str>) {
        for &d in self.by_cp.get(cp).into_iter().flatten() {
            self.set_state(d, online, reason).await;
        }
    }

    /// Applies what a frame meant: births with the charger's identity, telemetry.
    pub async fn apply(&self, cp: &str, taps: Vec<Tap>) {
        let devs = self.by_cp.get(cp).cloned().unwrap_or_default();
        for tap in taps {
            match tap {
                Tap::Booted(extra) => {
                    for &d in &devs {
                        let base = &self.devices[d].info;
                        let mut meta = base.meta.clone();
                        meta.extend(extra.clone());
                        let info = Arc::new(base.with_meta(meta));
                        *lock(&self.births[d]) = info.clone();
                        base.link.set(LinkState::Online);
                        let _ = self
                            .out
                            .send(Input::State {
                                device: info,
                                online: true,
                                reason: None,
                            })
                            .await;
                    }
                }
                Tap::Points { connector, points } => {
                    for &d in devs
                        .iter()
                        .filter(|&&d| connector == 0 || self.devices[d].cfg.connector == connector)
                    {
                        self.reading(d, &points, &[]).await;
                    }
                }
            }
        }
    }

    /// Telemetry of device `dev`: the named points its profile declares, typed by it.
    pub async fn reading(&self, dev: usize, points: &[(String, Value)], force: &[&str]) {
        let info = &self.devices[dev].info;
        let mut values = Vec::new();
        let mut forced = Vec::new();
        for (name, v) in points {
            let Some(i) = info.profile.points.iter().position(|p| &p.name == name) else {
                continue;
            };
            values.push((i, coerce(info.profile.points[i].ty, v)));
            if force.contains(&name.as_str()) {
                forced.push(i);
            }
        }
        if values.is_empty() {
            return;
        }
        let _ = self
            .out
            .send(Input::Reading {
                device: info.clone(),
                values,
                at_ms: crate::model::now_ms(),
                force: forced,
            })
            .await;
    }
}

/// Numbers as the profile's point type publishes them (SPEC §8 "Numbers in JSON").
fn coerce(ty: PointType, v: &Value) -> Value {
    match (ty.is_integer(), v) {
        (true, Value::Float(f)) if f.is_finite() => Value::Int(f.round() as i64),
        (false, Value::Int(i)) if !matches!(ty, PointType::Bool | PointType::String) => {
            Value::Float(*i as f64)
        }
        _ => v.clone(),
    }
}
