//! Task supervision (issue 11 item 4): no task of the daemon may end or panic unnoticed
//! while the watchdog keeps pinging.
//!
//! - A **driver** (a Modbus link, a serial bus, the LoRa or OCPP listener) that ends
//!   without being asked to, or panics, is started again with backoff (1 s doubling to
//!   60 s, reset after a minute of running), one error line per restart. Its command inbox
//!   outlives the restarts: the supervisor forwards it to each incarnation, so the routes
//!   the command path holds stay valid; a command the dead incarnation had taken gets the
//!   driver-stopped result through its dropped reply.
//! - A **core task** (pipeline, publisher, commands) that ends or panics before the daemon
//!   is stopping makes the daemon stop in order and exit non-zero, with one error line
//!   naming the task; systemd restarts it (`Restart=on-failure`).
//!
//! Panics reach us as `JoinError`s because the shipped `cabinet` profile unwinds
//! (Cargo.toml says why).

use crate::model::command::{Inbox, InboxSender};
use crate::ops::backoff::Backoff;
use crate::ops::notify::Heartbeat;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First wait before a crashed driver starts again; doubles up to [`RESTART_MAX`].
pub const RESTART_MIN: Duration = Duration::from_secs(1);
pub const RESTART_MAX: Duration = Duration::from_secs(60);
/// An incarnation that ran this long resets the backoff.
const RAN_WELL: Duration = Duration::from_secs(60);

/// A core task that ended before the daemon was stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDeath {
    pub task: &'static str,
    pub why: String,
}

/// How a task ended, for a log line: the panic's message, or that it returned.
pub fn why(res: Result<(), JoinError>) -> String {
    match res {
        Ok(()) => "ended without being asked to".into(),
        Err(e) if e.is_panic() => format!(
            "panicked: {}",
            crate::ops::logging::panic_message(&*e.into_panic())
        ),
        Err(e) => format!("was aborted: {e}"),
    }
}

/// Watches core task `task`: when it ends while `stopping` is not cancelled, sends its
/// death on `died`. The returned handle ends when the task does (await it at shutdown).
pub fn watch_core(
    task: &'static str,
    handle: JoinHandle<()>,
    stopping: CancellationToken,
    died: mpsc::Sender<TaskDeath>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let res = handle.await;
        if !stopping.is_cancelled() {
            let _ = died.try_send(TaskDeath {
                task,
                why: why(res),
            });
        }
    })
}

/// Starts one incarnation of a driver reading commands from the given inbox; None when
/// it cannot start (it logged why).
pub type Start =
    Box<dyn FnMut(Inbox) -> Pin<Box<dyn Future<Output = Option<JoinHandle<()>>> + Send>> + Send>;

/// One supervised driver.
pub struct Driver {
    pub key: String,
    pub start: Start,
    /// Cancelled when the driver is to stop: the end of an incarnation is then expected.
    pub cancel: CancellationToken,
    /// Beaten while waiting to restart, so a restarting driver is not taken for stalled.
    pub heartbeat: Option<Heartbeat>,
    pub backoff: Backoff,
}

impl Driver {
    /// Runs the driver until `cancel`: `first` is the incarnation already started,
    /// reading from `first_inbox`'s receiver; `inbox` is the driver's own inbox.
    pub async fn run(mut self, first: JoinHandle<()>, first_inbox: InboxSender, mut inbox: Inbox) {
        let mut current = Some((first, first_inbox));
        loop {
            if let Some((handle, tx)) = current.take() {
                let started = Instant::now();
                let res = forward(handle, &mut inbox, tx).await;
                if self.cancel.is_cancelled() {
                    return;
                }
                if started.elapsed() >= RAN_WELL {
                    self.backoff.reset();
                }
                let wait = self.backoff.next_wait();
                tracing::error!(
                    driver = %self.key,
                    restart_in_ms = wait.as_millis() as u64,
                    "driver task {}; restarting it",
                    why(res)
                );
                if !pause(&self.cancel, self.heartbeat.clone(), wait).await {
                    return;
                }
            }
            let (tx, rx) = mpsc::channel(crate::southbound::INBOX_CAPACITY);
            match (self.start)(rx).await {
                Some(handle) => current = Some((handle, tx)),
                None => {
                    let wait = self.backoff.next_wait();
                    tracing::error!(driver = %self.key, restart_in_ms = wait.as_millis() as u64, "driver could not start again; retrying");
                    if !pause(&self.cancel, self.heartbeat.clone(), wait).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Sleeps `wait`, beating `hb`; false when cancelled meanwhile. (Owns its captures: the
/// future must not borrow the driver, whose `start` is not `Sync`.)
fn pause(
    cancel: &CancellationToken,
    hb: Option<Heartbeat>,
    wait: Duration,
) -> impl Future<Output = bool> + Send + 'static {
    let cancel = cancel.clone();
    async move {
        let until = Instant::now() + wait;
        loop {
            if let Some(hb) = &hb {
                hb.beat();
            }
            let step = until.min(Instant::now() + crate::ops::notify::BEAT_EVERY);
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(step) => {}
            }
            if Instant::now() >= until {
                return true;
            }
        }
    }
}

/// Hands the inbox's commands to the incarnation until it ends; how it ended.
async fn forward(
    mut handle: JoinHandle<()>,
    inbox: &mut Inbox,
    tx: InboxSender,
) -> Result<(), JoinError> {
    loop {
        tokio::select! {
            res = &mut handle => return res,
            Some(req) = inbox.recv() => {
                tokio::select! {
                    res = &mut handle => return res,
                    // A closed inner inbox drops the request: its reply tells the sender.
                    _ = tx.send(req) => {}
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;
