//! SPEC §10 live, on simulated Modbus lamps through the daemon's own entry point: a
//! program writes its current step at start and the next one at its instant (steps at
//! fixed UTC times computed from now, so no test waits for dusk), each result on
//! `cmd/result` with `"source":"schedule"`; a lamp outside every program is never
//! written; a lamp that resets is put back by the reassert; a control-room command
//! overrides until the next step, or until `hold_until`, and `resume_schedule` ends it at
//! once; the retained `P/G/schedule` says which step runs and who is overridden; an
//! unsynchronized clock gets the fail-safe, and the program runs once it is trusted.

use crate::common::*;
use polegate::demo::sim::Sim;
use polegate::schedule::clock::ClockSource;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RESULT: &str = "polegate/cab-test/lamp-a/cmd/result";
const CMD: &str = "polegate/cab-test/lamp-a/cmd";

/// `HH:MM:SS` in UTC, `offset_s` from now.
fn utc(offset_s: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_s);
    jiff::tz::TimeZone::UTC
        .to_datetime(t)
        .strftime("%H:%M:%S")
        .to_string()
}

/// `[schedule]` (UTC, `clock`) and program `main` over `lamp-a*`: 40 % since an hour
/// ago, 70 % at `next`.
fn program(clock: &str, reassert_s: u64, next: &str) -> String {
    format!(
        "[schedule]\ntimezone = \"UTC\"\nclock = \"{clock}\"\nreassert_s = {reassert_s}\n\n\
         [[program]]\nid = \"main\"\ndevices = [\"lamp-a*\"]\nsteps = [\n\
         {{ at = \"{}\", set = {{ on = true, dim_level = 40 }} }},\n\
         {{ at = \"{next}\", set = {{ dim_level = 70 }} }},\n]\n",
        utc(-3600)
    )
}

fn dim(sim: &Sim) -> u16 {
    sim.registers().lock().unwrap().holding[0]
}

async fn schedule_result(rec: &mut Recorder, id: &str) -> Value {
    let m = rec
        .wait_for_new(id, |m| m.topic == RESULT && m.json["id"] == id)
        .await;
    assert_eq!(m.json["source"], "schedule", "{}", m.json);
    assert_eq!(m.json["ok"], true, "{}", m.json);
    m.json
}

async fn command(r: &Rig<(Sim, Sim)>, id: &str, body: Value) {
    let mut body = body;
    body["id"] = json!(id);
    r.publish(CMD, &body.to_string(), false).await;
}

async fn lamps(config: impl FnOnce(&Sim, &Sim) -> String) -> Rig<(Sim, Sim)> {
    let cancel = CancellationToken::new();
    let a = static_lamp(&cancel).await;
    let x = static_lamp(&cancel).await;
    let cfg = format!(
        "{}{}{}",
        lamp_device("lamp-a", a.addr(), 200),
        lamp_device("other-x", x.addr(), 200),
        config(&a, &x)
    );
    Rig::start(cancel, (a, x), &cfg, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_writes_its_step_at_start_and_the_next_at_its_instant_and_overrides_last_until_then()
 {
    let next = utc(8);
    let mut r = lamps(|_, _| program("rtc", 3600, &next)).await;
    let res = schedule_result(&mut r.rec, "schedule:main:0").await;
    assert_eq!(res["points"]["dim_level"], 40, "{res}");
    assert_eq!(dim(&r.sim.0), 40);
    let state = r
        .rec
        .wait_for("P/G/schedule", |m| {
            m.topic == "polegate/cab-test/schedule" && m.json["programs"]["main"]["step"] == 0
        })
        .await;
    // Retained: a client that subscribes later gets it from the broker.
    let mut late = Recorder::start(r.broker.port, "polegate/cab-test/schedule").await;
    let kept = late.wait_for("retained schedule", |m| m.retain).await;
    assert_eq!(kept.json["programs"]["main"]["step"], 0);
    assert_eq!(state.json["clock"], "rtc");
    assert_eq!(state.json["gateway"], "cab-test");
    assert_eq!(state.json["programs"]["main"]["devices"], 1);
    assert!(
        state.json["programs"]["main"]["next"]
            .as_str()
            .unwrap()
            .contains(&format!("T{next}+00:00")),
        "{}",
        state.json
    );

    // The control room dims the lamp: that point is its own until the next step.
    command(&r, "c-1", json!({"point": "dim_level", "value": 90})).await;
    r.rec
        .wait_for("override in P/G/schedule", |m| {
            m.topic == "polegate/cab-test/schedule"
                && m.json["programs"]["main"]["overridden"] == json!(["lamp-a"])
        })
        .await;
    assert_eq!(dim(&r.sim.0), 90);

    // At the step instant the program writes again, over the override.
    let res = schedule_result(&mut r.rec, "schedule:main:1").await;
    assert_eq!(res["points"]["dim_level"], 70, "{res}");
    assert_eq!(dim(&r.sim.0), 70);
    let state = r
        .rec
        .wait_for("step 1", |m| {
            m.topic == "polegate/cab-test/schedule" && m.json["programs"]["main"]["step"] == 1
        })
        .await;
    assert_eq!(state.json["programs"]["main"]["overridden"], json!([]));
    assert_eq!(state.json["programs"]["main"]["at"], next);

    // The lamp outside every program was never written.
    assert_eq!(r.sim.1.writes(), 0, "other-x is in no program");
    let metrics = http_get(&r, "/metrics").await;
    assert!(
        metrics.contains("polegate_schedule_clock_trusted 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("polegate_schedule_writes_total{program=\"main\",result=\"ok\"}"),
        "{metrics}"
    );
    let status: Value = serde_json::from_str(&http_get(&r, "/api/status").await).unwrap();
    assert_eq!(
        status["schedule"]["programs"]["main"]["step"], 1,
        "{status}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_lamp_is_put_back_and_hold_until_and_resume_schedule_end_overrides() {
    let mut r = lamps(|_, _| program("rtc", 1, &utc(7200))).await;
    schedule_result(&mut r.rec, "schedule:main:0").await;
    assert_eq!(dim(&r.sim.0), 40);

    // The controller reboots into its default: the reassert writes the step again.
    r.sim.0.registers().lock().unwrap().holding[0] = 100;
    // (A result of the writes at start may still come first: wait for the register.)
    r.rec
        .wait_for_new("the reassert", |m| {
            m.topic == RESULT && m.json["id"] == "schedule:main:0"
        })
        .await;
    eventually("the reassert puts 40 back", || dim(&r.sim.0) == 40).await;

    // An override without hold_until lasts until the next step (two hours away): the
    // reassert leaves it alone; resume_schedule ends it at once.
    command(&r, "c-1", json!({"point": "dim_level", "value": 90})).await;
    r.rec
        .wait_for_new("c-1", |m| m.topic == RESULT && m.json["id"] == "c-1")
        .await;
    let written = r.sim.0.writes();
    tokio::time::sleep(Duration::from_millis(2500)).await; // two reasserts, nothing due
    assert_eq!(dim(&r.sim.0), 90);
    assert_eq!(
        r.sim.0.writes(),
        written,
        "the reassert leaves an override alone"
    );
    command(&r, "r-1", json!({"resume_schedule": true})).await;
    let ok = r
        .rec
        .wait_for_new("r-1", |m| m.topic == RESULT && m.json["id"] == "r-1")
        .await;
    assert_eq!(ok.json["ok"], true, "{}", ok.json);
    assert!(ok.json.get("source").is_none());
    schedule_result(&mut r.rec, "schedule:main:0").await;
    assert_eq!(dim(&r.sim.0), 40);

    // hold_until: the override ends then, and the step applies again.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    command(
        &r,
        "c-2",
        json!({"point": "dim_level", "value": 55, "hold_until": until.to_string()}),
    )
    .await;
    r.rec
        .wait_for_new("c-2", |m| m.topic == RESULT && m.json["id"] == "c-2")
        .await;
    assert_eq!(dim(&r.sim.0), 55);
    schedule_result(&mut r.rec, "schedule:main:0").await;
    assert!(jiff::Timestamp::now() >= until, "not before hold_until");
    assert_eq!(dim(&r.sim.0), 40);
    r.stop().await;
}

/// The kernel's answer, by the test's hand.
struct Hand(AtomicBool);
impl ClockSource for Hand {
    fn synchronized(&self) -> bool {
        self.0.load(Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynchronized_clock_gets_the_fail_safe_and_the_program_runs_once_it_is_trusted() {
    let cancel = CancellationToken::new();
    let a = static_lamp(&cancel).await;
    a.registers().lock().unwrap().coils[0] = false;
    let broker = Mosquitto::start().await;
    let setup = Setup::new(
        broker.port,
        &format!(
            "{}{}",
            lamp_device("lamp-a", a.addr(), 200),
            program("ntp", 3600, &utc(7200))
        ),
    );
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let hand = Arc::new(Hand(AtomicBool::new(false)));
    let opts = polegate::app::RunOptions {
        clock: Some(hand.clone()),
        ..Default::default()
    };
    let daemon = Daemon::start_with(&setup, opts).await;
    let res = schedule_result(&mut rec, "schedule:main:fail_safe").await;
    assert_eq!(
        res["points"],
        json!({"on": true, "dim_level": 100}),
        "{res}"
    );
    let state = rec
        .wait_for("clock state", |m| m.topic == "polegate/cab-test/schedule")
        .await;
    assert_eq!(state.json["clock"], "unsynchronized");
    assert_eq!(state.json["programs"]["main"]["step"], Value::Null);

    hand.0.store(true, Relaxed);
    let res = schedule_result(&mut rec, "schedule:main:0").await;
    assert_eq!(res["points"], json!({"dim_level": 40}), "{res}");
    rec.wait_for("synchronized", |m| {
        m.topic == "polegate/cab-test/schedule" && m.json["clock"] == "synchronized"
    })
    .await;
    daemon.stop().await;
    cancel.cancel();
}

async fn http_get(r: &Rig<(Sim, Sim)>, path: &str) -> String {
    let addr = r.daemon().handles.http.expect("http listener");
    let (code, _, body) = crate::http::get(addr, path, None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}
