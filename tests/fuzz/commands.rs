//! Command JSON through the command task: mutated control-room commands to a device of
//! a shipped profile, answered by a driver that writes whatever it is given. Every
//! payload is either handed to the driver as validated writes or refused and counted
//! (`command_rejected`), and every one gets its `cmd/result`.

use super::support;
use polegate::commands::dedup::Dedup;
use polegate::commands::validate;
use polegate::commands::{Commands, MAX_COMMAND_BYTES, intake};
use polegate::model::command::WriteOutcome;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input, Route};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SEEDS: [&str; 6] = [
    r#"{"id":"c-1","point":"dim_level","value":40}"#,
    r#"{"id":"c-2","points":{"on":true,"dim_level":100}}"#,
    r#"{"id":"c-3","point":"on","value":false,"expires":"2999-01-01T00:00:00Z"}"#,
    r#"{"id":"c-4","points":{"dim_level":0},"expires":null}"#,
    r#"{"id":"c-5","point":"power","value":1}"#,
    r#"{"id":"c-6","point":"dim_level","value":"full"}"#,
];

#[derive(Debug, Clone)]
struct Cmd {
    seed: usize,
    ops: Vec<support::Op>,
    retained: bool,
    /// Sent to a device nobody configured.
    stranger: bool,
    oversized: bool,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    (
        0..SEEDS.len(),
        support::ops(),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(seed, ops, retained, stranger, oversized)| Cmd {
            seed,
            ops,
            retained,
            stranger,
            oversized,
        })
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn a_mutated_command_is_written_as_validated_points_or_refused_and_counted(
        cmds in proptest::collection::vec(cmd(), 1..8),
    ) {
        let profile = support::profile("generic-lamp-modbus");
        let payloads: Vec<(String, Vec<u8>, bool)> = cmds
            .iter()
            .map(|c| {
                let mut p = support::mutate_text(SEEDS[c.seed], &c.ops, &SEEDS).into_bytes();
                if c.oversized {
                    p.resize(MAX_COMMAND_BYTES * 4, b' ');
                }
                let device = if c.stranger { "nobody" } else { "lamp" };
                (device.to_string(), p, c.retained)
            })
            .collect();
        let counters = Arc::new(Counters::default());
        let rt = support::paused_runtime();
        let (writes, results) = rt.block_on(async {
            let info = Arc::new(DeviceInfo::new("lamp", profile.clone(), Default::default(), 0));
            let (inbox_tx, mut inbox) = mpsc::channel(8);
            let routes = HashMap::from([(
                "lamp".to_string(),
                Route { info, inbox: inbox_tx, index: 0 },
            )]);
            let (keep, routes) = tokio::sync::watch::channel(Arc::new(routes));
            let (out_tx, mut out) = mpsc::channel(64);
            let task = Commands::new(routes, Dedup::open(None, 0), counters.clone(), out_tx);
            let (tx, rx) = intake::channel();
            let cancel = CancellationToken::new();
            let run = tokio::spawn(task.run(rx, cancel.clone()));
            let driver = tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(w) = inbox.recv().await {
                    seen.push(w.writes.clone());
                    let _ = w.reply.send(WriteOutcome { points: w.writes, error: None });
                }
                seen
            });
            for (device, p, retained) in &payloads {
                tx.offer(device, p, *retained).expect("room in the intake");
                // One at a time, as from a session; the task answers before the next.
                tokio::task::yield_now().await;
            }
            let mut results = Vec::new();
            // Bounded on the paused clock: a missing result ends the wait, not the run.
            let collect = async {
                while results.len() < payloads.len() {
                    match out.recv().await {
                        Some(Input::CmdResult(r)) => results.push(r),
                        Some(_) => {}
                        None => break,
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), collect).await;
            cancel.cancel();
            let _ = run.await;
            // The routes hold the inbox's sender: the driver ends with them.
            drop((tx, keep));
            (driver.await.unwrap_or_default(), results)
        });
        let rejected = counters.command_rejected.load(Relaxed);
        prop_assert_eq!(writes.len() as u64 + rejected, payloads.len() as u64,
            "{} written, {} refused of {}", writes.len(), rejected, payloads.len());
        // At most a burst of refusals: every payload here gets its result.
        prop_assert_eq!(results.len(), payloads.len());
        prop_assert_eq!(results.iter().filter(|r| !r.ok).count() as u64, rejected);
        for w in &writes {
            prop_assert!(!w.is_empty() && w.len() <= profile.points.len());
            for (i, _) in w {
                prop_assert!(profile.points[*i].writable, "{} written", profile.points[*i].name);
            }
        }
        for r in results.iter().filter(|r| !r.ok) {
            let e = r.error.as_ref().map(ToString::to_string).unwrap_or_default();
            prop_assert!(!e.is_empty() && e.len() < 400, "{e}");
            let code = r.error.as_ref().map(|e| e.code()).unwrap_or_default();
            prop_assert!(polegate::model::command::Refusal::CODES.contains(&code), "{code}");
        }
        let c0 = &cmds[0];
        if c0.ops.is_empty() && c0.seed < 4 && !(c0.retained || c0.stranger || c0.oversized) {
            prop_assert!(!writes.is_empty(), "a valid command reaches the driver");
        }
        for ((_, p, _), c) in payloads.iter().zip(&cmds) {
            if c.oversized {
                prop_assert!(p.len() > MAX_COMMAND_BYTES);
            }
        }
    }

    #[test]
    fn random_bytes_are_never_a_command(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match validate::parse(&bytes) {
            Ok(c) => prop_assert!(!c.id.is_empty() && c.points.len() <= bytes.len()),
            Err(r) => {
                prop_assert!(!r.error.to_string().is_empty());
                prop_assert_eq!(r.error.code(), "malformed");
            }
        }
    }
}
