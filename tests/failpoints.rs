//! The real binary with a task that panics or stalls (issue 11 item 4), through the
//! fault-injection points of `src/ops/failpoint.rs` armed by `FAILPOINTS`:
//! - a Modbus link that panics is restarted: telemetry flows again, the watchdog keeps
//!   being fed, the panic is one structured error line and the restart another, and the
//!   daemon still stops cleanly;
//! - a Modbus link stuck in a blocking call withholds the watchdog pings (one error line
//!   names the stalled bus) until it turns its loop again (one line says so);
//! - a core task (the publisher) that panics stops the daemon in order with a non-zero
//!   exit code (systemd restarts it), and what it had queued is published by the next run.

use crate::common::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The watchdog as systemd would run it: a notify socket in `dir`, pings expected every
/// `WATCHDOG_USEC / 2` (250 ms here).
struct Watchdog {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Watchdog {
    fn new(dir: &Path) -> Watchdog {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("socket timeout");
        Watchdog { sock, path }
    }

    /// Every datagram received until `done` holds for them, with its arrival time
    /// (bounded: a daemon that never gets there fails the test).
    fn read_until(
        &self,
        seen: &mut Vec<(Instant, String)>,
        what: &str,
        done: impl Fn(&[(Instant, String)]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut buf = [0u8; 4096];
        while !done(seen) {
            assert!(Instant::now() < deadline, "no {what} in {seen:?}");
            if let Ok(n) = self.sock.recv(&mut buf) {
                seen.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    }
}

/// Arrival times of the `WATCHDOG=1` pings among `seen`.
fn pings(seen: &[(Instant, String)]) -> Vec<Instant> {
    seen.iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

/// The binary under test: this build's, or `POLEGATE_FAILPOINTS_BIN` (the shipped
/// `cabinet` profile built with the points: `cargo build --profile cabinet
/// --no-default-features --features failpoints`, to test its panic strategy).
fn binary() -> std::path::PathBuf {
    std::env::var_os("POLEGATE_FAILPOINTS_BIN")
        .map_or_else(|| Process::own_binary().to_path_buf(), Into::into)
}

/// The real binary on `setup` with `FAILPOINTS=failpoints`, its log (info) in
/// [`Setup::log_path`], under the watchdog `wd` when given.
fn start(setup: &Setup, failpoints: &str, wd: Option<&Watchdog>) -> Process {
    Process::start_logged(&binary(), setup, |c| {
        if !failpoints.is_empty() {
            c.env("FAILPOINTS", failpoints);
        }
        c.env_remove("RUST_BACKTRACE").env_remove("WATCHDOG_PID");
        if let Some(wd) = wd {
            c.env("NOTIFY_SOCKET", &wd.path)
                .env("WATCHDOG_USEC", "500000");
        }
    })
}

/// The lines of `log` that contain `what`.
fn lines_with<'a>(log: &'a str, what: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(what)).collect()
}

/// Waits (bounded) for the process to exit by itself.
fn exit_of(mut daemon: Process) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = daemon.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit by itself"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_link_that_panics_is_restarted_and_the_daemon_keeps_publishing() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 50));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let wd = Watchdog::new(setup.dir.path());
    // The link's first poll panics; its later polls (the restarted task's) do not.
    let daemon = start(
        &setup,
        "modbus-poll=1*panic(injected driver panic)",
        Some(&wd),
    );

    rec.wait_until("telemetry from the restarted link", |s| {
        s.iter().filter(|m| m.topic.ends_with("/telemetry")).count() >= 5
    })
    .await;
    let mut seen = Vec::new();
    wd.read_until(&mut seen, "watchdog pings after the restart", |s| {
        pings(s).len() >= 3
    });
    daemon.signal("TERM");
    let status = exit_of(daemon);
    let log = setup.log();
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop after the restart\n{log}"
    );
    let restarts = lines_with(&log, "restarting it");
    assert_eq!(restarts.len(), 1, "one restart line\n{log}");
    assert!(
        restarts[0].contains("panicked: injected driver panic"),
        "the restart line says why\n{log}"
    );
    // The panic itself is one structured line (where it happened), not the default
    // hook's unstructured "thread '…' panicked at" lines.
    let panics = lines_with(&log, "panic_location=");
    assert_eq!(panics.len(), 1, "one panic line\n{log}");
    assert!(
        panics[0].contains("panicked: injected driver panic"),
        "{log}"
    );
    assert!(
        !log.contains("' panicked at"),
        "no default panic output\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_link_stuck_in_a_blocking_call_withholds_the_watchdog_pings_until_it_turns_again()
{
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 50));
    let wd = Watchdog::new(setup.dir.path());
    // One poll blocks its worker thread for 14 s: longer than the 10 s after which a
    // task that has not turned its loop counts as stalled.
    let daemon = start(&setup, "modbus-poll=1*sleep(14000)", Some(&wd));

    let mut seen = Vec::new();
    wd.read_until(&mut seen, "READY=1", |s| {
        s.iter().any(|(_, m)| m.contains("READY=1"))
    });
    wd.read_until(&mut seen, "a reported stall", |_| {
        setup.log().contains("withholding the watchdog ping")
    });
    // Pings already queued were sent before the stall line: not the ones in question.
    wd.sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    while wd.sock.recv(&mut buf).is_ok() {}
    wd.sock.set_nonblocking(false).expect("blocking");
    // From the stall line until the recovery line (written before the ping it announces)
    // no ping may come; after it, they come again.
    let resumed = || setup.log().contains("watchdog pings resumed");
    let (mut during_stall, mut after) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(40);
    while after < 3 {
        assert!(Instant::now() < deadline, "no pings after the stall");
        if let Ok(n) = wd.sock.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
        {
            // Read the log when the ping arrives, not afterwards.
            if resumed() {
                after += 1;
            } else {
                during_stall += 1;
            }
        }
    }
    daemon.signal("TERM");
    let status = exit_of(daemon);
    let log = setup.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(
        during_stall, 0,
        "no ping while the link was stuck (before the recovery line)\n{log}"
    );
    let stall = log
        .lines()
        .find(|l| l.contains("withholding the watchdog ping"))
        .expect("stall line");
    assert!(
        stall.contains(&sim.addr().port().to_string()),
        "the stall line names the stuck link\n{stall}"
    );
    assert_eq!(
        log.matches("withholding the watchdog ping").count(),
        1,
        "one line per stall, not one per tick\n{log}"
    );
    assert_eq!(
        log.matches("watchdog pings resumed").count(),
        1,
        "one line when it ends\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_panics_stops_the_daemon_non_zero_and_the_next_run_publishes_its_queue() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 50));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;

    // The first queued record the publisher takes panics it.
    let daemon = start(
        &setup,
        "publish-record=panic(injected publisher panic)",
        None,
    );
    let status = exit_of(daemon);
    let log = setup.log();
    assert_eq!(
        status.code(),
        Some(polegate::cli::EXIT_RUNTIME),
        "a dead core task exits non-zero\n{log}"
    );
    assert!(
        log.contains("publisher") && log.contains("injected publisher panic"),
        "the log names the task and the panic\n{log}"
    );
    rec.drain();
    assert!(
        !rec.seen.iter().any(|m| m.topic.ends_with("/telemetry")),
        "nothing was published before the panic"
    );

    // The next run (no fault) publishes what the first one had queued, from seq 1.
    let daemon = start(&setup, "", None);
    let first = rec
        .wait_for("the first run's first event", |m| m.json["seq"] == 1)
        .await;
    assert_eq!(
        first.json["historical"], true,
        "queued before this connection"
    );
    assert!(daemon.stop().success());
}
