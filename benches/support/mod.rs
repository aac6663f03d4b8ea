//! What the benches that run the cabinet binary share: building or finding it, starting
//! it as a child process, and reading its CPU, memory and threads from `/proc`.

#![allow(dead_code)] // each bench uses its own subset

pub mod floor;

use super::common::{Process, Setup};
#[cfg(feature = "demo")]
use polegate::demo::sim::{Sim, SimKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (utime + stime) clock ticks and current/peak RSS in kB of a process.
pub fn proc_sample(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks, kb("VmRSS:"), kb("VmHWM:"))
}

pub fn clk_tck() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we target.
    100.0
}

/// The binary cabinets run: `POLEGATE_BENCH_BIN`, else `<target>/cabinet/polegate`, built
/// (incrementally) with `--profile cabinet --no-default-features` into the bench's own
/// target directory.
pub fn cabinet_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("POLEGATE_BENCH_BIN") {
        return PathBuf::from(p);
    }
    let release = Path::new(env!("CARGO_BIN_EXE_polegate"));
    let target = release
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "cabinet",
            "--no-default-features",
            "--bin",
            "polegate",
        ])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --profile cabinet");
    assert!(status.success(), "cabinet build failed");
    target.join("cabinet").join("polegate")
}

/// The cabinet binary in a child process, warnings on the bench's stderr.
pub fn spawn_daemon(exe: &Path, setup: &Setup) -> Process {
    Process::start_exe(exe, &setup.path, |c| {
        // A backtrace captured per error is not what a cabinet runs (systemd sets none).
        c.env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stderr(Stdio::inherit());
        // The environment the shipped unit gives the daemon (its allocator tuning).
        for (k, v) in unit_environment() {
            c.env(k, v);
        }
    })
}

/// The `Environment=KEY=VALUE` lines of `systemd/polegate.service`.
pub fn unit_environment() -> Vec<(String, String)> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/polegate.service");
    let text = std::fs::read_to_string(&unit).expect("systemd/polegate.service");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Threads of a process (`Threads:` in /proc/PID/status).
pub fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// "N cores, <kernel> <arch>": the machine line every bench prints first.
pub fn machine() -> String {
    format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        uname()
    )
}

pub fn uname() -> String {
    Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The benches' runtime: two workers, as on the 2-core cabinet PCs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` simulated lamps on Modbus TCP and their `[[device]]` entries (`lamp-000`, …),
/// polled every `poll_ms`, with the `extra` lines added to each entry.
#[cfg(feature = "demo")]
pub async fn lamp_fleet(
    n: usize,
    poll_ms: u64,
    extra: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> (Vec<Sim>, String) {
    let mut sims = Vec::new();
    let mut devices = String::new();
    for i in 0..n {
        let sim = Sim::spawn(
            SimKind::Lamp,
            "127.0.0.1:0".parse().expect("address"),
            cancel.clone(),
        )
        .await
        .expect("sim");
        devices.push_str(&format!(
            "[[device]]\nid = \"lamp-{i:03}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = {poll_ms}\n{extra}modbus = {{ address = \"{}\", unit = 1 }}\n",
            sim.addr()
        ));
        sims.push(sim);
    }
    (sims, devices)
}

/// The number after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
