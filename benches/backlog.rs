//! Outage backlog (issue 20; not a test): the real daemon (cabinet build) polls `--devices`
//! (200) simulated lamps every `--poll-ms` (100) while its broker is down, until its
//! queue holds `--backlog` (50,000) events. Then the simulators stop and the broker
//! comes back with nobody subscribed (the daemon's side alone: PUBLISH out, PUBACK in).
//! Figures: the daemon's peak RSS during the outage, the drain (broker restart → queue
//! empty, read from `/metrics`) and its rate, the peak RSS during the drain, CPU ticks.
//!
//!     POLEGATE_BENCH_BIN=<bin> cargo bench --bench backlog [-- --backlog 50000]

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Mosquitto, Setup, free_port, metric};
mod support;
use support::{cabinet_binary, proc_sample, spawn_daemon};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "backlog bench: run with `cargo bench --bench backlog` (skipped under cargo test)"
        );
        return;
    }
    let backlog = support::arg("--backlog", 50_000);
    let devices = support::arg("--devices", 200) as usize;
    let poll_ms = support::arg("--poll-ms", 100);
    let exe = cabinet_binary();
    support::runtime().block_on(async {
        println!("machine: {}", support::machine());
        println!("daemon binary: {}", exe.display());
        let cancel = CancellationToken::new();
        let (_sims, entries) = support::lamp_fleet(devices, poll_ms, "", &cancel).await;
        let (mqtt, http) = (free_port(), free_port());
        let setup = Setup::custom(
            "bench",
            // A short reconnect backoff: the drain is measured, not the backoff's ceiling.
            &format!(
                "url = \"mqtt://127.0.0.1:{mqtt}\"\nreplay_rate = 0\nmax_inflight = 256\n\
                 reconnect_min_ms = 50\nreconnect_max_ms = 300\n"
            ),
            &format!("[http]\nlisten = \"127.0.0.1:{http}\"\n\n{entries}"),
        );
        let child = spawn_daemon(&exe, &setup);
        let pid = child.pid();
        let t0 = Instant::now();
        let mut peak_outage = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak_outage = peak_outage.max(proc_sample(pid).1);
            if metric(http, "polegate_buffer_events").await.unwrap_or(0) >= backlog {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "the backlog never built");
        }
        let fill_s = t0.elapsed().as_secs_f64();
        cancel.cancel();
        tokio::time::sleep(Duration::from_secs(2)).await; // devices go offline
        let held = metric(http, "polegate_buffer_events").await.unwrap_or(0);
        let (ticks0, rss_before, _) = proc_sample(pid);
        let _broker = Mosquitto::start_on(mqtt).await;
        let t1 = Instant::now();
        let mut peak_drain = 0;
        while metric(http, "polegate_buffer_events").await.unwrap_or(u64::MAX) > 0 {
            peak_drain = peak_drain.max(proc_sample(pid).1);
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(t1.elapsed() < Duration::from_secs(300), "the backlog never drained");
        }
        let drain_s = t1.elapsed().as_secs_f64();
        let (ticks1, rss_after, hwm) = proc_sample(pid);
        child.stop();
        let mb = |kb: u64| kb as f64 / 1024.0;
        println!(
            "outage: {held} events queued in {fill_s:.1} s, peak RSS {:.1} MiB, RSS at the broker's return {:.1} MiB",
            mb(peak_outage),
            mb(rss_before)
        );
        println!(
            "drain: {held} events in {drain_s:.2} s = {:.0} events/s (daemon side), peak RSS {:.1} MiB, after {:.1} MiB, VmHWM {:.1} MiB, daemon CPU {} ticks",
            held as f64 / drain_s,
            mb(peak_drain),
            mb(rss_after),
            mb(hwm),
            ticks1 - ticks0
        );
    });
}
