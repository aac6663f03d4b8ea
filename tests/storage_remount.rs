//! The real binary on an ext4 state file system that the kernel remounts read-only under
//! it (Debian's `errors=remount-ro`, triggered through ext4's `trigger_fs_error`), with the
//! broker up (SPEC §5 "Storage faults"): the fault is one log line and a degraded status,
//! telemetry keeps flowing with seqs that are never reused and never jump, and after the
//! file system is repaired the next run continues above every seq published. Needs root
//! (loop mount); CI runs as root.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_util::sync::CancellationToken;

/// An ext4 image loop-mounted with `errors=remount-ro` on `dir`; unmounted on drop.
struct Ext4Mount {
    image: PathBuf,
    dir: PathBuf,
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

impl Ext4Mount {
    fn new(image: &Path, dir: &Path) -> Ext4Mount {
        let f = std::fs::File::create(image).expect("image");
        f.set_len(64 << 20).expect("size");
        drop(f);
        let out = run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()]);
        assert!(
            out.status.success(),
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = Ext4Mount {
            image: image.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        m.mount();
        m
    }

    fn mount(&self) {
        std::fs::create_dir_all(&self.dir).expect("mount point");
        let out = run(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                &self.image.to_string_lossy(),
                &self.dir.to_string_lossy(),
            ],
        );
        assert!(
            out.status.success(),
            "loop mount needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The loop device's name (`loop3`), as /proc/mounts says.
    fn device(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
        mounts
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?, f.next()?))
            })
            .filter(|(_, at)| Path::new(at) == self.dir)
            .filter_map(|(dev, _)| dev.strip_prefix("/dev/").map(str::to_owned))
            .next_back()
            .expect("the loop device")
    }

    /// What the kernel does on an ext4 error with `errors=remount-ro`.
    fn fail(&self) {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        std::fs::write(&trigger, "polegate test: simulated I/O error\n").expect("trigger");
    }

    /// A technician's repair: unmount, fsck, mount again.
    fn repair(&self) {
        assert!(
            run("umount", &[&self.dir.to_string_lossy()])
                .status
                .success()
        );
        // 0: clean, 1: errors corrected.
        let out = run("e2fsck", &["-fy", &self.image.to_string_lossy()]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "e2fsck: {out:?}");
        self.mount();
    }
}

impl Drop for Ext4Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn live_seqs(msgs: &[Msg]) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/telemetry") && m.json.get("historical").is_none())
        .filter_map(|m| m.json["seq"].as_u64())
        .collect()
}

fn degraded(m: &Msg) -> bool {
    m.topic == "polegate/cab-test/status" && m.json["buffer"] == "degraded"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_system_remounted_read_only_keeps_telemetry_flowing_and_seqs_unique() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 20));
    let fs = Ext4Mount::new(&setup.state_dir().with_extension("img"), &setup.state_dir());
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let spawn = || Process::start_logged(Process::own_binary(), &setup, |_| {});
    let daemon = spawn();
    rec.wait_until("telemetry", |s| live_seqs(s).len() >= 5)
        .await;

    fs.fail();
    let why = rec.wait_for_new("the degraded status", degraded).await;
    let why = why.json["buffer_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("Read-only file system"), "{why}");
    let at_fault = rec.seen.len();
    // Well past half a reservation block: the seqs must go on without a durable one.
    rec.wait_until("telemetry during the fault", |s| {
        live_seqs(&s[at_fault..]).len() >= 600
    })
    .await;
    let seqs = live_seqs(&rec.seen);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "unique and increasing in publish order"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] - w[0] < 1_000),
        "no jump to a time-based floor"
    );
    assert!(daemon.stop().success(), "a clean stop\n{}", setup.log());
    let log = setup.log();
    assert_eq!(
        log.matches("BUFFER CANNOT STORE").count(),
        1,
        "one line for the fault\n{log}"
    );

    fs.repair();
    let before = *seqs.last().expect("seqs");
    let n = rec.seen.len();
    let daemon = spawn();
    rec.wait_until("telemetry of the next run", |s| {
        live_seqs(&s[n..]).len() >= 5
    })
    .await;
    assert!(daemon.stop().success());
    let after = live_seqs(&rec.seen[n..]);
    assert!(
        after.iter().all(|&s| s > before),
        "the next run continues above: {after:?} after {before}"
    );
}
