//! Proves SPEC §5 "Stored state is never taken as absent because it cannot be read": a
//! gateway that starts while its state directory cannot be opened (the partition not
//! mounted yet) neither forgets nor lowers what it stored: remembered command ids stay
//! remembered, LoRa devices wait offline with reason `state unavailable` and find their
//! join nonce again, OCPP transaction ids go on above the stored reservation, and what
//! was written meanwhile does not overwrite the stored values.

use crate::common::{one_charger_hub, profile};
use polegate::buffer::{BufferError, Queue, QueueOptions};
use polegate::commands::dedup::Dedup;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::southbound::lora::session;
use polegate::southbound::ocpp::hub::Hub;
use polegate::southbound::{Wiring, stored_state};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn hub(q: &Queue) -> Hub {
    let (out, _) = mpsc::channel(8);
    one_charger_hub(q, out, Arc::new(Counters::default()))
}

/// The state partition goes away: a file where its directory was.
fn unmount(state: &Path) {
    std::fs::rename(state, state.with_extension("away")).expect("move away");
    std::fs::write(state, b"not a directory").expect("blocker");
}

fn mount(state: &Path) {
    std::fs::remove_file(state).expect("blocker gone");
    std::fs::rename(state.with_extension("away"), state).expect("move back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_start_neither_forgets_nor_lowers_stored_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let dir = state.join("buffer");
    let now = polegate::model::now_ms();
    let first_tx = {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        let mut dedup = Dedup::open(Some(q.kv("cmd_ids").expect("kv")), now);
        assert!(!dedup.check_and_record("lamp-1", "c-7", now));
        session::Store::new(q.kv("lora").expect("kv"))
            .save_join_nonce(42)
            .expect("join nonce");
        let tx = hub(&q).next_tx().await.expect("tx id");
        q.flush().expect("flush");
        tx
    };

    unmount(&state);
    let q = Queue::open_or_degraded(&dir, QueueOptions::default()).expect("degraded start");
    assert!(q.health().is_degraded());
    let lora = q.kv("lora").expect("kv");
    assert!(matches!(
        lora.get(b"join_nonce"),
        Err(BufferError::StateUnavailable { .. })
    ));
    assert!(
        lora.insert(b"join_nonce", &0u32.to_be_bytes()).is_err(),
        "nothing is written over state that cannot be read"
    );
    let charger = hub(&q);
    assert!(
        charger.next_tx().await.is_err(),
        "no transaction id without its reservation"
    );
    let mut dedup = Dedup::open(Some(q.kv("cmd_ids").expect("kv")), now);
    assert!(
        !dedup.check_and_record("lamp-1", "c-8", now + 1),
        "a new id"
    );

    // A LoRa source waits with its devices offline for the reason.
    let lamp = Arc::new(DeviceInfo::new(
        "lamp-9",
        profile("ocpp-charger"),
        Default::default(),
        0,
    ));
    let (out, mut states) = mpsc::channel(8);
    let (_inbox_tx, inbox) = mpsc::channel(1);
    let w = Wiring {
        inbox,
        out,
        counters: Arc::new(Counters::default()),
        cancel: CancellationToken::new(),
        hb: None,
    };
    let waiting = {
        let (lora, lamp) = (lora.clone(), lamp.clone());
        tokio::spawn(async move { stored_state::readable(&lora, b"join_nonce", &[lamp], &w).await })
    };
    match tokio::time::timeout(Duration::from_secs(10), states.recv()).await {
        Ok(Some(Input::State {
            online: false,
            reason,
            device,
        })) => {
            assert_eq!(device.id, "lamp-9");
            assert_eq!(reason.as_deref(), Some(stored_state::REASON));
        }
        other => panic!("expected the device offline, got {other:?}"),
    }

    mount(&state);
    assert!(
        q.retry().expect("retry"),
        "the files open once they are back"
    );
    let served = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the source goes on once the state is readable")
        .expect("task");
    assert!(served);
    assert_eq!(
        session::Store::new(lora.clone()).join_nonce(),
        42,
        "the join nonce is the stored one"
    );
    assert!(
        dedup.check_and_record("lamp-1", "c-7", now + 2),
        "an id stored before the fault is still a duplicate"
    );
    let tx = charger.next_tx().await.expect("tx id once readable");
    assert!(
        tx > first_tx,
        "transaction ids go on: {tx} after {first_tx}"
    );
    q.flush().expect("flush");
    drop((q, charger, lora, dedup));

    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    let mut dedup = Dedup::open(Some(q.kv("cmd_ids").expect("kv")), now + 3);
    assert!(dedup.check_and_record("lamp-1", "c-7", now + 3));
    assert!(
        dedup.check_and_record("lamp-1", "c-8", now + 3),
        "the id seen during the fault was stored once it could be"
    );
    assert!(hub(&q).next_tx().await.expect("tx") > tx);
}
