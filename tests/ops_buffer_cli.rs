//! `polegate buffer ...` refuses, with a message saying what to do and exit code 3, while
//! another process (the daemon) holds the buffer, and works once it is released.

use crate::common::Setup;
use polegate::buffer::{Queue, QueueOptions};
use std::process::Command;

fn polegate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_polegate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run polegate")
}

#[test]
fn buffer_stats_while_the_daemon_holds_the_buffer_says_stop_it_first_and_exits_3() {
    let setup = Setup::new(1883, "");
    let cfg = setup.path.to_str().expect("utf-8 path");
    let buffer_dir = setup.state_dir().join("buffer");
    let held = Queue::open(&buffer_dir, QueueOptions::default()).expect("open as the daemon");

    for action in [&["stats"][..], &["dump"], &["purge"]] {
        let mut args = vec!["buffer"];
        args.extend_from_slice(action);
        args.extend_from_slice(&["--config", cfg]);
        let out = polegate(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{action:?}: {stderr}");
        assert!(
            stderr.contains("in use by a running polegate"),
            "{action:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("pid {}", std::process::id())),
            "names the holder: {stderr}"
        );
        assert!(
            stderr.contains("systemctl stop polegate"),
            "says what to do: {stderr}"
        );
    }
    assert!(buffer_dir.exists(), "a held buffer is never moved aside");

    drop(held);
    let out = polegate(&["buffer", "stats", "--config", cfg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("events:      0"));
}
