//! The real binary on a read-only state directory (SPEC §5 "Storage faults", issue 11:
//! "a read-only or vanished state_dir … the daemon keeps doing what it still can"): it
//! starts instead of exiting, says `"buffer":"degraded"` with the error in its retained
//! status, keeps polling and publishes directly, with seqs from a time-based floor that
//! no earlier run reached. Once the file system is writable again it opens its queue by
//! itself, says `"buffer":"ok"`, and the seqs go on increasing, across a restart too.
//! A state directory deleted under the running daemon is found, reported and written
//! again the same way; a stop while nothing can be stored says how many held events it
//! loses. Needs root (mount); CI runs as root.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_util::sync::CancellationToken;

/// A read-only tmpfs mounted on `dir`, lazily unmounted on drop (also when the test fails).
struct ReadOnlyMount {
    dir: PathBuf,
}

impl ReadOnlyMount {
    fn mount(dir: &Path) -> ReadOnlyMount {
        std::fs::create_dir_all(dir).expect("mount point");
        mount(&["-t", "tmpfs", "-o", "ro,size=16m", "tmpfs"], dir);
        ReadOnlyMount {
            dir: dir.to_path_buf(),
        }
    }

    fn make_writable(&self) {
        mount(&["-o", "remount,rw"], &self.dir);
    }
}

fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} needs root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn status_says(m: &Msg, buffer: &str) -> bool {
    m.topic == "polegate/cab-test/status" && m.json["buffer"] == buffer
}

fn live_seqs(msgs: &[Msg]) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/telemetry") && m.json.get("historical").is_none())
        .filter_map(|m| m.json["seq"].as_u64())
        .collect()
}

/// Restarts the daemon with `spawn` and checks that its live seqs all lie above every
/// live seq `rec` saw before (no seq reused across the restart).
async fn next_run_continues_above(rec: &mut Recorder, spawn: impl Fn() -> Process) {
    let before_restart = *live_seqs(&rec.seen).iter().max().expect("seqs");
    let n_before = rec.seen.len();
    let daemon = spawn();
    rec.wait_until("telemetry of the next run", |s| {
        live_seqs(&s[n_before..]).len() >= 5
    })
    .await;
    assert!(daemon.stop().success());
    let after = live_seqs(&rec.seen[n_before..]);
    assert!(
        after.iter().all(|&s| s > before_restart),
        "no seq reused after the restart: {after:?} vs {before_restart}"
    );
}

/// Deletes everything inside `dir` (a technician's `rm -rf /var/lib/polegate/*`).
fn remove_everything_in(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_dir_runs_degraded_then_recovers_by_itself_once_writable() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 50));
    let state = setup.state_dir();
    let ro = ReadOnlyMount::mount(&state);
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let spawn = || Process::start_logged(Process::own_binary(), &setup, |_| {});
    let log = || setup.log();

    let daemon = spawn();
    let degraded = rec
        .wait_for("a degraded status", |m| status_says(m, "degraded"))
        .await;
    let why = degraded.json["buffer_error"].as_str().unwrap_or_default();
    assert!(why.contains("Read-only file system"), "{why}");
    rec.wait_until("telemetry published directly", |s| live_seqs(s).len() >= 5)
        .await;
    let floor = polegate::model::now_ms() - 3_600_000;
    let while_degraded = live_seqs(&rec.seen);
    assert!(
        while_degraded.iter().all(|&s| s > floor),
        "seqs from a time-based floor: {while_degraded:?}"
    );
    assert_eq!(
        log().matches("BUFFER CANNOT STORE").count(),
        1,
        "one line when the fault starts\n{}",
        log()
    );

    ro.make_writable();
    rec.wait_for_new("the buffer ok again", |m| status_says(m, "ok"))
        .await;
    let at_recovery = rec.seen.len();
    rec.wait_until("telemetry after the recovery", |s| {
        live_seqs(&s[at_recovery..]).len() >= 5
    })
    .await;
    assert!(
        state.join("buffer").exists(),
        "the queue's files were opened"
    );
    assert!(daemon.stop().success(), "a clean stop\n{}", log());
    // The next run opens the queue normally and goes on above every seq handed out.
    next_run_continues_above(&mut rec, spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_deleted_under_the_daemon_is_found_and_written_again() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 50));
    let state = setup.state_dir();
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let spawn = || Process::start_logged(Process::own_binary(), &setup, |_| {});
    let daemon = spawn();
    rec.wait_until("telemetry", |s| live_seqs(s).len() >= 5)
        .await;
    // A technician's `rm -rf /var/lib/polegate/*` under the running daemon.
    remove_everything_in(&state);
    let gone = rec.seen.len();
    rec.wait_for_new("the degraded status", |m| status_says(m, "degraded"))
        .await;
    let why = rec.seen[gone..]
        .iter()
        .find(|m| status_says(m, "degraded"))
        .and_then(|m| m.json["buffer_error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(why.contains("vanished"), "{why}");
    rec.wait_for_new("the buffer ok again", |m| status_says(m, "ok"))
        .await;
    assert!(
        state.join("buffer").join("conf").is_file(),
        "the queue's files were written again"
    );
    let at_recovery = rec.seen.len();
    rec.wait_until("telemetry after the recovery", |s| {
        live_seqs(&s[at_recovery..]).len() >= 5
    })
    .await;
    assert!(daemon.stop().success());
    // The new files carry the seq floor.
    next_run_continues_above(&mut rec, spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_nothing_can_be_stored_says_how_many_held_events_it_loses() {
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    // No broker (port 1) and a read-only state directory: events can only be held.
    let http = free_port();
    let setup = Setup::new(
        1,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n{}",
            lamp_device("lamp-1", sim.addr(), 50)
        ),
    );
    let _ro = ReadOnlyMount::mount(&setup.state_dir());
    let daemon = Process::start_logged(Process::own_binary(), &setup, |_| {});
    let log = || setup.log();
    eventually("the daemon running degraded", || {
        log().contains("polegate running") && log().contains("BUFFER CANNOT STORE")
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(http, "polegate_buffer_events").await.unwrap_or(0) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing held\n{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(daemon.stop().success(), "{}", log());
    let line = log()
        .lines()
        .find(|l| l.contains("events held only in memory are lost"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no loss line\n{}", log()));
    let lost: u64 = line
        .split("lost=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lost > 0, "{line}");
}
