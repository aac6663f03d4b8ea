//! `polegate demo` as a newcomer runs it (the real binary): the story's commands (a Modbus
//! lamp dimmed, an OCPP charger capped) come back ok, the uplink cut is replayed with
//! `"historical": true`, and the summary line counts the events with none lost; `--raw`
//! prints the plain stream only.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Far beyond the demo's own duration: a hang fails the test instead of stalling CI.
const BOUND: Duration = Duration::from_secs(90);

async fn demo(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polegate"))
        .arg("demo")
        .args(args)
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
async fn the_demo_dims_a_lamp_replays_an_uplink_cut_and_ends_with_a_summary_losing_nothing() {
    let (stdout, stderr) = demo(&["--duration", "20"]).await;
    let story: Vec<&str> = stdout.lines().filter(|l| l.starts_with("==> ")).collect();
    let has = |what: &str| story.iter().any(|l| l.contains(what));
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
    assert!(summary.ends_with("2 commands answered, 2 ok"), "{summary}");
    let replayed: u64 = summary
        .split("replayed ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("replayed count");
    assert!(replayed > 0, "{summary}");

    assert!(stderr.contains("status page http://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("7 simulated devices"), "{stderr}");
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
