//! Logging from the real binary: when systemd says stderr is the journal (JOURNAL_STREAM)
//! but the journal socket cannot be used, the daemon says so once and logs to stderr,
//! plain text (no colour codes), with the same `device_id` / `profile` fields.

use crate::common::{Process, Setup};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `polegate run` with stderr in a file until `want` appears in it (or 10 s pass).
fn run_until(journal_stream: bool, want: &str) -> String {
    // Port 1 on loopback refuses at once: the device fails and the broker is unreachable.
    let setup = Setup::new(
        1,
        "[[device]]\nid = \"lamp-017\"\nprofile = \"generic-lamp-modbus\"\n\
         modbus = { address = \"127.0.0.1:1\" }\n",
    );
    let log = setup.dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).expect("log file");
    let meta = file.metadata().expect("stat");
    let daemon = Process::start(&setup.path, |c| {
        c.env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stderr(file);
        if journal_stream {
            c.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.kill();
    text
}

#[test]
fn without_a_journal_socket_the_daemon_falls_back_to_plain_stderr_with_device_fields() {
    if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("skipped: a real journal is running here; the fallback cannot be observed");
        return;
    }
    let text = run_until(true, "device_id=lamp-017");
    assert!(
        text.contains("journal socket is unusable"),
        "says why it is not using the journal: {text}"
    );
    assert!(text.contains("device_id=lamp-017"), "{text}");
    assert!(text.contains("profile=generic-lamp-modbus"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file: {text}"
    );
}

#[test]
fn outside_systemd_the_daemon_logs_to_stderr_without_mentioning_the_journal() {
    let text = run_until(false, "device_id=lamp-017");
    assert!(text.contains("device_id=lamp-017"), "{text}");
    assert!(!text.contains("journal"), "{text}");
}
