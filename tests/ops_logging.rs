//! Logging from the real binary: when systemd says stderr is the journal (JOURNAL_STREAM)
//! but the journal socket cannot be used, the daemon says so once and logs to stderr,
//! plain text (no colour codes), with the same `device_id` / `profile` fields.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &Path) -> std::path::PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let path = dir.join("polegate.toml");
    // Port 1 on loopback refuses at once: the device fails and the broker is unreachable.
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"cab-test\"\nstate_dir = \"state\"\nplugins_dirs = [{:?}]\n\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\n\
             [[device]]\nid = \"lamp-017\"\nprofile = \"generic-lamp-modbus\"\n\
             modbus = {{ address = \"127.0.0.1:1\" }}\n",
            plugins.display().to_string()
        ),
    )
    .expect("write config");
    path
}

/// Runs `polegate run` with stderr in a file until `want` appears in it (or 10 s pass).
fn run_until(journal_stream: bool, want: &str) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let log = tmp.path().join("stderr.log");
    let file = std::fs::File::create(&log).expect("log file");
    let meta = file.metadata().expect("stat");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_polegate"));
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(file);
    if journal_stream {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let mut child = cmd.spawn().expect("spawn polegate");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
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
