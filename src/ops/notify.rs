//! The service-manager protocol (`sd_notify(3)`): `READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=`, `WATCHDOG=1`, sent as one datagram each to the socket named by
//! `NOTIFY_SOCKET`.
//!
//! Invariants:
//! - Without `NOTIFY_SOCKET` (a terminal, a test, a non-systemd init) every call is a no-op.
//! - A failed send never stops the daemon: it is logged once at `warn` and then at `debug`.
//! - `WATCHDOG=1` is sent by the supervisor only while [`Liveness::all_fresh`] holds: a
//!   stalled publisher, pipeline, supervisor or bus task (each Modbus link and serial bus
//!   beats, named by its driver key, e.g. `modbus 10.0.0.17:502`) stops the pings and
//!   systemd restarts us. A task that ends or panics is the supervision's business
//!   (`app::supervise`), not the heartbeat's.
//!
//! We build the datagram ourselves with the `sd-notify` crate's message formatting
//! ([`NotifyState`]) because `sd_notify::notify` 0.5 reads the socket only from the
//! environment and connects to it as a filesystem path, so it cannot reach the abstract
//! sockets (`@/org/freedesktop/systemd1/notify/...`) that systemd hands to services, nor a
//! socket a test names explicitly.
//!
//! Wiring (for `app.rs`):
//! ```text
//! let notifier = Notifier::from_env();                       // once, at start
//! let liveness = Liveness::new();                            // shared with tasks
//! let hb = liveness.register("publisher");                   // per task; hb.beat() in its loop
//! notifier.ready();                                          // config + buffer + drivers up
//! if let Some(every) = notifier.watchdog_interval() {        // ticker task:
//!     // each tick: if liveness.all_fresh(every * 2) { notifier.watchdog() }
//!     //            else { warn!(stale = ?liveness.stale(every * 2)) }
//! }
//! notifier.status(&status_line(online, total, buffered, connected)); // every few seconds
//! notifier.reloading(); /* diff applied or rejected */ notifier.ready();   // on SIGHUP
//! notifier.stopping();                                       // first thing on shutdown
//! ```

use sd_notify::NotifyState;
use std::fmt::Write as _;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace: `NOTIFY_SOCKET=@name`, sent as `\0name`.
    Abstract(Vec<u8>),
}

/// Talks to the service manager. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| parse_target(&s));
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let watchdog = watchdog_interval_from(
            usec.as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        if watchdog == Some(MIN_WATCHDOG_PING)
            && let Some(u) = usec.as_deref().and_then(|u| u.trim().parse::<u64>().ok())
            && Duration::from_micros(u / 2) < MIN_WATCHDOG_PING
        {
            tracing::warn!(
                watchdog_usec = u,
                ping_every_ms = MIN_WATCHDOG_PING.as_millis() as u64,
                "WATCHDOG_USEC is too short to be met: pinging every 100 ms; set WatchdogSec= to 1s or more"
            );
        }
        Notifier {
            target,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that does nothing (for `demo`, tests, and `check`).
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Sends to an explicit socket path (or `@abstract` name); no watchdog unless
    /// [`Notifier::with_watchdog`] sets one. For tests and for embedding.
    pub fn with_socket(path: impl AsRef<Path>) -> Self {
        Notifier {
            target: parse_target(path.as_ref().as_os_str()),
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Sets the ping interval [`Notifier::watchdog_interval`] reports.
    pub fn with_watchdog(mut self, interval: Duration) -> Self {
        self.watchdog = Some(interval);
        self
    }

    /// True when a socket was configured, i.e. we run under a service manager.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is
    /// enabled for this process (`WATCHDOG_PID` absent or ours). `None`: never ping.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1`: config, buffer and drivers are up (not waiting for the broker).
    pub fn ready(&self) {
        self.send_logged(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (required by systemd 253+ for notify-reload);
    /// follow with [`Notifier::ready`] once the reload is applied or rejected.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send_logged(&[NotifyState::Reloading, now]),
            Err(_) => self.send_logged(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send_logged(&[NotifyState::Stopping]);
    }

    /// `STATUS=<line>`: what `systemctl status polegate` shows. Newlines become spaces.
    pub fn status(&self, line: &str) {
        let one_line = line.replace(['\n', '\r'], " ");
        self.send_logged(&[NotifyState::Status(&one_line)]);
    }

    /// `WATCHDOG=1`. Call only while [`Liveness::all_fresh`] holds.
    pub fn watchdog(&self) {
        self.send_logged(&[NotifyState::Watchdog]);
    }

    /// Sends one datagram holding `states`, one per line. `Ok(())` when disabled.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let mut msg = String::new();
        for s in states {
            let _ = writeln!(msg, "{s}");
        }
        let sock = UnixDatagram::unbound()?;
        let sent = match target {
            Target::Path(p) => sock.send_to(msg.as_bytes(), p)?,
            Target::Abstract(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(msg.as_bytes(), &addr)?
            }
        };
        if sent != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to NOTIFY_SOCKET",
            ));
        }
        Ok(())
    }

    fn send_logged(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = self.send(states) {
            let first = !self.warned.swap(true, Ordering::Relaxed);
            let what = states.first().map(|s| s.to_string()).unwrap_or_default();
            if first {
                tracing::warn!(error = %e, message = %what, target = ?self.target,
                    "cannot notify the service manager (further failures at debug level)");
            } else {
                tracing::debug!(error = %e, message = %what, "cannot notify the service manager");
            }
        }
    }
}

fn parse_target(s: &std::ffi::OsStr) -> Option<Target> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = s.as_bytes();
    match bytes.first() {
        None => None,
        Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
        Some(_) => Some(Target::Path(PathBuf::from(s))),
    }
}

/// The shortest watchdog ping interval: the supervisor's loop pings at most this often.
/// A `WatchdogSec=` under twice this (a few µs in an odd unit file or a test) cannot be
/// met by a daemon that also polls devices; pinging every 100 ms keeps the loop cheap
/// (10 datagrams/s) while meeting any `WatchdogSec=` of 200 ms and more, and a zero
/// interval would panic tokio's `interval`.
pub const MIN_WATCHDOG_PING: Duration = Duration::from_millis(100);

/// Half of `WATCHDOG_USEC` when it is set, non-zero, and `WATCHDOG_PID` is absent or
/// `our_pid`; never under [`MIN_WATCHDOG_PING`] ([`Notifier::from_env`] warns then).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(our_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(MIN_WATCHDOG_PING))
}

/// The one-line `STATUS=`: `12/14 devices online, 3 buffered, broker connected`.
pub fn status_line(online: usize, total: usize, buffered: u64, broker_connected: bool) -> String {
    format!(
        "{online}/{total} devices online, {buffered} buffered, broker {}",
        if broker_connected {
            "connected"
        } else {
            "disconnected"
        }
    )
}

/// How often an idle loop turns just to beat (bus tasks between distant polls).
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Per-task heartbeats that gate `WATCHDOG=1`.
///
/// Each long-lived task that registers (the pipeline, the publisher, the supervisor and
/// every Modbus link and serial bus) holds a [`Heartbeat`] and
/// calls [`Heartbeat::beat`] on every turn of its loop, **including idle turns** (a
/// publisher waiting for the broker is alive; give its `select!` a timer arm shorter than
/// the watchdog interval). A task that is removed drops its handle and stops counting.
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    tasks: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

/// A task's handle on [`Liveness`]; clone it freely, drop it when the task ends.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Records "alive now".
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// Records "alive at `now`" (time injected for tests).
    pub fn beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Liveness {
    pub fn new() -> Self {
        Liveness {
            epoch: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Adds a task, counted as having just beaten.
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let hb = Heartbeat {
            epoch: self.epoch,
            last_ms: Arc::new(AtomicU64::new(0)),
        };
        hb.beat();
        self.lock().push((name.into(), hb.last_ms.clone()));
        hb
    }

    /// True when every registered task beat within `max_age` of now.
    pub fn all_fresh(&self, max_age: Duration) -> bool {
        self.stale_at(Instant::now(), max_age).is_empty()
    }

    /// Names of the tasks that have not beaten within `max_age` of now.
    pub fn stale(&self, max_age: Duration) -> Vec<String> {
        self.stale_at(Instant::now(), max_age)
    }

    /// Like [`Liveness::stale`] at an injected `now`. Forgets tasks whose handles were
    /// all dropped.
    pub fn stale_at(&self, now: Instant, max_age: Duration) -> Vec<String> {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let max_ms = max_age.as_millis() as u64;
        let mut tasks = self.lock();
        tasks.retain(|(_, last)| Arc::strong_count(last) > 1);
        tasks
            .iter()
            .filter(|(_, last)| now_ms.saturating_sub(last.load(Ordering::Relaxed)) > max_ms)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<AtomicU64>)>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        crate::ops::lock::lock(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    //! Watchdog interval parsing, the status line, and heartbeat freshness with injected time.
    use super::*;

    #[test]
    fn a_watchdog_usec_of_a_few_microseconds_is_clamped_to_the_shortest_ping_and_huge_ones_kept() {
        for tiny in ["1", "3", "199999"] {
            assert_eq!(
                watchdog_interval_from(Some(tiny), None, 7),
                Some(MIN_WATCHDOG_PING)
            );
        }
        let huge = watchdog_interval_from(Some(&u64::MAX.to_string()), None, 7).unwrap();
        assert_eq!(huge, Duration::from_micros(u64::MAX / 2));
        // What the supervisor does with it: ping at most every SUPERVISOR_TICK, and a
        // staleness window of twice the interval, neither of which may overflow.
        assert!(huge.checked_mul(2).is_some());
    }

    #[test]
    fn the_watchdog_interval_is_half_of_watchdog_usec_for_our_pid_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
    }

    #[test]
    fn the_status_line_names_devices_buffer_and_broker() {
        assert_eq!(
            status_line(12, 14, 3, true),
            "12/14 devices online, 3 buffered, broker connected"
        );
        assert_eq!(
            status_line(0, 0, 0, false),
            "0/0 devices online, 0 buffered, broker disconnected"
        );
    }

    #[test]
    fn an_absent_socket_makes_every_call_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert!(n.send(&[NotifyState::Ready]).is_ok());
        n.ready();
        n.watchdog();
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        assert_eq!(
            parse_target("@/org/x".as_ref()),
            Some(Target::Abstract(b"/org/x".to_vec()))
        );
        assert_eq!(
            parse_target("/run/x".as_ref()),
            Some(Target::Path("/run/x".into()))
        );
        assert_eq!(parse_target("".as_ref()), None);
    }

    #[test]
    fn a_task_that_stops_beating_makes_the_pipeline_stale_until_it_beats_again() {
        let live = Liveness::new();
        let t0 = Instant::now();
        let publisher = live.register("publisher");
        let pipeline = live.register("pipeline");
        let max = Duration::from_secs(30);
        assert!(live.stale_at(t0, max).is_empty());
        pipeline.beat_at(t0 + Duration::from_secs(40));
        assert_eq!(
            live.stale_at(t0 + Duration::from_secs(40), max),
            vec!["publisher".to_owned()]
        );
        publisher.beat_at(t0 + Duration::from_secs(41));
        assert!(live.stale_at(t0 + Duration::from_secs(41), max).is_empty());
    }

    #[test]
    fn a_dropped_heartbeat_no_longer_counts() {
        let live = Liveness::new();
        let t0 = Instant::now();
        let bus = live.register("bus rs485-1");
        let _keep = live.register("pipeline");
        drop(bus);
        let later = t0 + Duration::from_secs(100);
        assert_eq!(live.stale_at(later, Duration::from_secs(30)).len(), 1);
        assert_eq!(live.lock().len(), 1, "the dropped task was forgotten");
    }
}
