//! The real daemon under a service manager (SPEC §6): with NOTIFY_SOCKET and
//! WATCHDOG_USEC set, `polegate run` sends READY=1 once its buffer and drivers are up
//! (the broker is unreachable: it does not wait for it), a STATUS= line, WATCHDOG=1 pings
//! while its tasks are alive, RELOADING=1 then READY=1 around a SIGHUP reload, and
//! STOPPING=1 on SIGTERM, then exits 0. A `WATCHDOG_USEC` of a few µs is clamped to the
//! shortest ping interval with a warning instead of panicking.

use crate::common::{Process, Setup};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn wait_for(sock: &UnixDatagram, seen: &mut Vec<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(what)) {
        assert!(Instant::now() < deadline, "no {what:?} in {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

/// The real binary under a notify socket in `dir` with `WATCHDOG_USEC=usec`, its stderr
/// in `dir/stderr.log`; the broker (port 1 on loopback) is unreachable.
fn start(dir: &std::path::Path, usec: &str) -> (UnixDatagram, Process, Setup) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let setup = Setup::new(1, "");
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let daemon = Process::start(&setup.path, |c| {
        c.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", usec)
            .env_remove("WATCHDOG_PID")
            .env("RUST_LOG", "warn")
            .stderr(stderr);
    });
    (sock, daemon, setup)
}

#[test]
fn the_daemon_speaks_sd_notify_ready_status_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, daemon, _setup) = start(dir.path(), "200000");
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, "READY=1");
    wait_for(
        &sock,
        &mut seen,
        "STATUS=0/0 devices online, 0 buffered, broker disconnected",
    );
    // Broker down is normal life: the watchdog keeps being fed.
    wait_for(&sock, &mut seen, "WATCHDOG=1");
    // ... and again: pings keep coming, not once.
    let mut later = Vec::new();
    wait_for(&sock, &mut later, "WATCHDOG=1");

    daemon.signal("HUP");
    let mut reload = Vec::new();
    wait_for(&sock, &mut reload, "RELOADING=1");
    wait_for(&sock, &mut reload, "READY=1");

    daemon.signal("TERM");
    let mut stop = Vec::new();
    wait_for(&sock, &mut stop, "STOPPING=1");
    let status = daemon.wait();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_watchdog_usec_of_a_few_microseconds_is_clamped_with_a_warning_and_pinged_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, daemon, _setup) = start(dir.path(), "3");
    let log = dir.path().join("stderr.log");
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, "READY=1");
    wait_for(&sock, &mut seen, "WATCHDOG=1");
    let mut later = Vec::new();
    wait_for(&sock, &mut later, "WATCHDOG=1");
    daemon.signal("TERM");
    let status = daemon.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("WATCHDOG_USEC is too short") && log.contains("watchdog_usec=3"),
        "{log}"
    );
}
