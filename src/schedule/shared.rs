//! What the scheduler shows the world (SPEC §10 "What the control room sees"): the
//! retained `P/G/schedule` payload (handed to the MQTT session through a watch channel,
//! published at start and on every change), the same view for the status page and
//! `/api/status`, and the two metrics. One owner: the scheduler writes, the views read.

use crate::model::rfc3339_ms;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One program as shown in `P/G/schedule`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgramView {
    /// Index of the current step in its list (the program's or the exception's); None
    /// while no step has happened yet (or the clock is not trusted).
    pub step: Option<usize>,
    /// The current step's rule as written (`22:30`, `sunset-10m`).
    pub at: Option<String>,
    /// When the current step began (local time with offset).
    pub since: Option<String>,
    /// The next step instant.
    pub next: Option<String>,
    /// Devices of the program that are running.
    pub devices: usize,
    /// Devices with a point under a control-room override.
    pub overridden: Vec<String>,
    /// The dates of the exception whose steps apply today, as written.
    pub exception: Option<String>,
}

/// The schedule's state (without `ts`/`gateway`, which the payload adds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduleView {
    /// `synchronized`, `unsynchronized` or `rtc`.
    pub clock: String,
    pub programs: BTreeMap<String, ProgramView>,
}

/// The schedule part of `/api/status` (and what `/metrics` is built from).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduleStatus {
    #[serde(flatten)]
    pub view: ScheduleView,
    pub clock_trusted: bool,
    /// Turns of the scheduler's loop since start (timer, override, online, reload).
    #[serde(default)]
    pub wakes: u64,
    /// (program, result, count), result `ok` or `failed`.
    pub writes: Vec<(String, String, u64)>,
}

/// Shared between the scheduler task and its readers.
#[derive(Debug)]
pub struct Shared {
    view: Mutex<Option<ScheduleView>>,
    trusted: AtomicBool,
    wakes: std::sync::atomic::AtomicU64,
    writes: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// The `P/G/schedule` payload for the MQTT session.
    payload: watch::Sender<Option<Arc<Vec<u8>>>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            view: Mutex::new(None),
            trusted: AtomicBool::new(false),
            wakes: Default::default(),
            writes: Mutex::new(BTreeMap::new()),
            payload: watch::Sender::new(None),
        })
    }

    /// The session's end: the latest payload, changed on every change of the view.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Vec<u8>>>> {
        self.payload.subscribe()
    }

    /// Sets the view; a new payload only when it differs from the last one. True when it
    /// changed.
    pub fn set(&self, gateway: &str, view: ScheduleView, now_ms: u64) -> bool {
        self.trusted.store(view.clock != "unsynchronized", Relaxed);
        let mut cur = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref() == Some(&view) {
            return false;
        }
        let body = payload(gateway, &view, now_ms);
        *cur = Some(view);
        self.payload.send_replace(Some(Arc::new(body)));
        true
    }

    /// One turn of the scheduler's loop.
    pub fn woke(&self) {
        self.wakes.fetch_add(1, Relaxed);
    }

    pub fn count_write(&self, program: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        *w.entry((program.to_string(), result)).or_default() += 1;
    }

    pub fn status(&self) -> Option<ScheduleStatus> {
        let view = self
            .view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let writes = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((p, r), n)| (p.clone(), r.to_string(), *n))
            .collect();
        Some(ScheduleStatus {
            view,
            clock_trusted: self.trusted.load(Relaxed),
            wakes: self.wakes.load(Relaxed),
            writes,
        })
    }
}

/// `P/G/schedule`: `{"ts","gateway","clock","programs":{…}}`.
pub fn payload(gateway: &str, view: &ScheduleView, now_ms: u64) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ts": rfc3339_ms(now_ms),
        "gateway": gateway,
    });
    if let (Some(o), Ok(serde_json::Value::Object(rest))) =
        (v.as_object_mut(), serde_json::to_value(view))
    {
        o.extend(rest);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}
