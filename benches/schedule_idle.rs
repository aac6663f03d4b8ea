//! CPU and wake-ups of an idle gateway running lighting schedules (issue 23 item 6), not a
//! test. Run with `cargo bench --bench schedule_idle` (`POLEGATE_BENCH_BIN` picks the
//! binary; default: the cabinet build); results go to BENCHMARKS.md.
//!
//! The cabinet binary with 200 simulated Modbus TCP lamps (static registers, polled every
//! `--poll-s`, default 60 s) and no reachable broker, in three runs of `--seconds` each
//! after a settle: (a) no schedule, (b) 3 programs over the 200 lamps with the production
//! `reassert_s = 900`, (c) the same with `reassert_s = 1` (scaled: one reassert pass of
//! 200 lamps a second). Measured: CPU ticks (utime + stime, `/proc/PID/stat`), voluntary
//! context switches summed over every thread (`/proc/PID/task/*/status`: the whole
//! daemon's sleeps, mostly its 1 s supervisor tick and the polls), and the scheduler's own
//! loop turns (`schedule.wakes` of `/api/status`). (b) − (a) is what the schedule adds at
//! rest (it sleeps between step instants and reasserts); (c) − (a) divided by the passes
//! is the cost of one reassert pass, which scales the per-hour figure.

use polegate::demo::sim::{Sim, SimKind};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Setup, lamp_registers};
mod support;
use support::{arg, cabinet_binary, clk_tck, machine, proc_sample, runtime, spawn_daemon};

const LAMPS: usize = 200;

/// Voluntary context switches of every thread of `pid`.
fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The scheduler's loop turns so far, from `/api/status` on `port` (0 when unreadable).
fn scheduler_wakes(port: u16) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["schedule"]["wakes"].as_u64())
        .unwrap_or(0)
}

/// Three programs over the lamps, the residential one of SPEC §10 on each (sun steps
/// in Dijon), `reassert_s` as given.
fn programs(reassert_s: u64) -> String {
    let mut out = format!(
        "[schedule]\nlatitude = 47.3220\nlongitude = 5.0415\ntimezone = \"Europe/Paris\"\n\
         clock = \"rtc\"\nreassert_s = {reassert_s}\n"
    );
    for (id, pattern) in [
        ("east", "east-*"),
        ("west", "west-*"),
        ("centre", "centre-*"),
    ] {
        out.push_str(&format!(
            "\n[[program]]\nid = \"{id}\"\ndevices = [\"{pattern}\"]\nsteps = [\n\
             {{ at = \"sunset-10m\", set = {{ on = true, dim_level = 100 }} }},\n\
             {{ at = \"22:30\", set = {{ dim_level = 70 }} }},\n\
             {{ at = \"00:00\", set = {{ dim_level = 40 }} }},\n\
             {{ at = \"05:30\", set = {{ dim_level = 70 }} }},\n\
             {{ at = \"sunrise+15m\", set = {{ on = false }} }},\n]\n"
        ));
    }
    out
}

/// (CPU s, voluntary switches, scheduler wakes) of the daemon over `seconds` after `settle`.
fn measure(devices: &str, schedule: &str, settle: u64, seconds: u64) -> (f64, u64, u64) {
    let port = common::free_port();
    let setup = Setup::custom(
        "cab-bench",
        "url = \"mqtt://127.0.0.1:9\"\nreconnect_min_ms = 60000\nreconnect_max_ms = 60000\n",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n{devices}\n{schedule}"),
    );
    let daemon = spawn_daemon(&cabinet_binary(), &setup);
    let pid = daemon.pid();
    std::thread::sleep(Duration::from_secs(settle));
    let (t0, s0, w0) = (
        proc_sample(pid).0,
        voluntary_switches(pid),
        scheduler_wakes(port),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (t1, s1, w1) = (
        proc_sample(pid).0,
        voluntary_switches(pid),
        scheduler_wakes(port),
    );
    daemon.stop();
    ((t1 - t0) as f64 / clk_tck(), s1 - s0, w1.saturating_sub(w0))
}

fn main() {
    let seconds = arg("--seconds", 60);
    let poll_s = arg("--poll-s", 60);
    let settle = arg("--settle", 15);
    println!("machine: {}", machine());
    println!("daemon binary: {}", cabinet_binary().display());
    let rt = runtime();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (_sims, devices) = rt.block_on(async {
        let mut sims: Vec<Sim> = Vec::new();
        let mut devices = String::new();
        for i in 0..LAMPS {
            let sim = Sim::spawn(
                SimKind::Static,
                "127.0.0.1:0".parse().unwrap(),
                cancel.clone(),
            )
            .await
            .expect("sim");
            lamp_registers(&mut sim.registers().lock().expect("registers"));
            devices.push_str(&format!(
                "[[device]]\nid = \"{}-{i:03}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = {}\n\
                 modbus = {{ address = \"{}\", unit = 1 }}\n",
                ["east", "west", "centre"][i % 3],
                poll_s * 1000,
                sim.addr()
            ));
            sims.push(sim);
        }
        (sims, devices)
    });
    // The simulators answer on this runtime's workers while the daemon runs.
    let _guard = rt.enter();
    let runs = [
        ("(a) no schedule", String::new()),
        ("(b) 3 programs, reassert_s = 900", programs(900)),
        ("(c) 3 programs, reassert_s = 1 (scaled)", programs(1)),
    ];
    let mut results = Vec::new();
    for (name, schedule) in &runs {
        let (cpu, switches, wakes) = measure(&devices, schedule, settle, seconds);
        println!(
            "{name}: {cpu:.2} s CPU, {switches} voluntary switches (whole daemon), {wakes} \
             scheduler wakes in {seconds} s ({:.1} s CPU per hour)",
            cpu * 3600.0 / seconds as f64,
        );
        results.push((cpu, wakes));
    }
    let (base_cpu, _) = results[0];
    let (rest_cpu, rest_wakes) = results[1];
    let (fast_cpu, fast_wakes) = results[2];
    let per_pass_cpu = (fast_cpu - base_cpu) / fast_wakes.max(1) as f64;
    println!(
        "one reassert pass over {LAMPS} lamps: {:.2} ms CPU",
        per_pass_cpu * 1000.0
    );
    println!(
        "schedule at rest (b - a): {:+.3} s CPU, {rest_wakes} scheduler wakes in {seconds} s",
        rest_cpu - base_cpu,
    );
    // Per hour at reassert_s = 900: 4 reasserts plus the step instants (5 steps a day in
    // each of 3 programs: 0.6 an hour), each a pass at most.
    let passes = 3600.0 / 900.0 + 15.0 / 24.0;
    println!(
        "per hour at reassert_s = 900: {passes:.1} scheduler wakes, {:.3} s CPU",
        passes * per_pass_cpu,
    );
    cancel.cancel();
}
