//! `polegate demo` as a newcomer runs it (the real binary), on a host that booted 30 s ago
//! (a faked `/proc/uptime`: the daemon's boot jitter would apply there): the story's
//! commands (a Modbus lamp dimmed, an OCPP charger capped) come back ok, the story lines
//! come in the order things happen, the uplink cut is replayed with `"historical": true`,
//! and the summary line counts the events with none lost; `--raw` prints the plain stream
//! only. The fake uptime reaches the daemon: `polegate run` on that host does delay its
//! first connect.

use crate::common::{Process, Setup, eventually, free_port};
use polegate::ops::backoff::UPTIME_FILE_ENV;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Far beyond the demo's own duration: a hang fails the test instead of stalling CI.
const BOUND: Duration = Duration::from_secs(90);

/// A `/proc/uptime` of a host that booted 30 s ago (kept alive by the returned guard).
fn just_booted() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("uptime");
    std::fs::write(&path, "30.00 55.12\n").expect("write uptime");
    (dir, path)
}

async fn demo(args: &[&str]) -> (String, String) {
    let (_dir, uptime) = just_booted();
    let out = Command::new(env!("CARGO_BIN_EXE_polegate"))
        .arg("demo")
        .args(args)
        .env(UPTIME_FILE_ENV, &uptime)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BOUND, out)
        .await
        .expect("demo ended within its bound")
        .expect("run polegate demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    (stdout, stderr)
}

#[tokio::test]
async fn the_demo_on_a_host_up_30_s_dims_a_lamp_replays_an_uplink_cut_and_ends_with_a_summary_losing_nothing()
 {
    let (stdout, stderr) = demo(&["--duration", "20"]).await;
    let story: Vec<&str> = stdout.lines().filter(|l| l.starts_with("==> ")).collect();
    let has = |what: &str| story.iter().any(|l| l.contains(what));
    // The story lines in the order things happen.
    let order = [
        "gateway cab-demo online and subscribed",
        "control room dims lamp-017",
        "lamp-017 answered: ok",
        "control room caps charger evc-darcy-1",
        "evc-darcy-1 answered: ok",
        "uplink cut",
        "uplink restored",
        "replaying the buffer",
        "replay done",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|what| {
            story
                .iter()
                .position(|l| l.contains(what))
                .unwrap_or_else(|| panic!("no story line {what:?}: {story:#?}"))
        })
        .collect();
    assert!(at.is_sorted(), "story out of order {at:?}: {story:#?}");
    assert!(
        !stderr.contains("delaying the first MQTT connect"),
        "{stderr}"
    );
    assert!(has("control room dims lamp-017"), "{story:#?}");
    assert!(has("lamp-017 answered: ok"), "{story:#?}");
    assert!(has("control room caps charger evc-darcy-1"), "{story:#?}");
    assert!(has("evc-darcy-1 answered: ok"), "{story:#?}");
    // The simulated charger follows the cap: 10 A at 230 V.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("/evc-darcy-1/telemetry") && l.contains(r#""power":2300.0"#)),
        "the charger's power follows the cap"
    );
    // The hung camera, power-cycled from its PoE switch port over SNMP, answers again.
    assert!(
        has("control room power-cycles the hung camera cam-p2"),
        "{story:#?}"
    );
    assert!(has("cam-p2 answered: ok"), "{story:#?}");
    let cam = |what: &str| {
        stdout
            .lines()
            .position(|l| l.contains("/cam-p2/telemetry") && l.contains(what))
    };
    let off = cam(r#""poe_status":"disabled""#).expect("the port switched off");
    let back = cam(r#""reachable":true"#).expect("the camera answers again");
    assert!(off < back, "off before answering again");
    // The lighting program's step a few seconds after start, written by the gateway.
    assert!(
        has(
            "lighting schedule: the gateway itself set lamp-018 (program evening, step 1): points {\"dim_level\":60}"
        ),
        "{story:#?}"
    );
    assert!(has("uplink cut"), "{story:#?}");
    assert!(has("uplink restored"), "{story:#?}");
    assert!(has("replay done"), "{story:#?}");
    assert!(
        stdout.lines().any(|l| l.contains(r#""historical":true"#)),
        "replayed events are marked"
    );

    let summary = stdout.lines().last().expect("output");
    assert!(summary.starts_with("polegate demo: summary: "), "{summary}");
    assert!(summary.contains(", lost 0,"), "{summary}");
    assert!(summary.ends_with("3 commands answered, 3 ok"), "{summary}");
    let replayed: u64 = summary
        .split("replayed ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("replayed count");
    assert!(replayed > 0, "{summary}");

    assert!(stderr.contains("status page http://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("10 simulated devices"), "{stderr}");
}

#[tokio::test]
async fn the_raw_demo_prints_the_plain_stream_without_story_or_summary() {
    let (stdout, _) = demo(&["--raw", "--duration", "4"]).await;
    assert!(
        stdout.lines().any(|l| l.contains("/lamp-017/telemetry {")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .all(|l| !l.starts_with("==> ") && !l.contains("summary")),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_faked_uptime_of_a_freshly_booted_host_makes_polegate_run_delay_its_first_connect() {
    let (_dir, uptime) = just_booted();
    let setup = Setup::custom(
        "cab-test",
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nconnect_delay_max_ms = 600000\n",
            free_port()
        ),
        "",
    );
    let daemon = Process::start_logged(Process::own_binary(), &setup, |c| {
        c.env(UPTIME_FILE_ENV, &uptime);
    });
    eventually("the boot delay in the log", || {
        setup
            .log()
            .contains("host just booted: delaying the first MQTT connect")
    })
    .await;
    daemon.stop();
}
