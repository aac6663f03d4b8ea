//! Proves the supervision rules (real time, millisecond backoff): a panicking or returning driver is
//! restarted with backoff and its inbox reaches the new incarnation; a driver that ends
//! because it was cancelled is not restarted; a core task's death is reported unless the
//! daemon is stopping.

use super::*;
use crate::model::command::{Inbox, InboxSender, WriteOutcome, WriteRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::oneshot;

const MIN: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_millis(80);

/// An incarnation that answers every command with `ok` until cancelled.
fn answering(mut rx: Inbox, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(req) = rx.recv() => {
                    let _ = req.reply.send(WriteOutcome { points: vec![], error: None });
                }
            }
        }
    })
}

fn driver(starts: Arc<AtomicU32>, cancel: CancellationToken) -> Driver {
    let c = cancel.clone();
    Driver {
        key: "modbus 10.0.0.17:502".into(),
        start: Box::new(move |rx| {
            starts.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            Box::pin(async move { Some(answering(rx, c)) })
        }),
        cancel,
        heartbeat: None,
        backoff: Backoff::new(MIN, MAX),
    }
}

async fn command(inbox: &InboxSender) -> Result<WriteOutcome, oneshot::error::RecvError> {
    let (reply, rx) = oneshot::channel();
    inbox
        .send(Box::new(WriteRequest {
            device: 0,
            writes: vec![],
            id: Some("c-1".into()),
            expires_ms: None,
            reply,
        }))
        .await
        .expect("supervisor alive");
    rx.await
}

#[tokio::test]
async fn a_panicking_driver_is_restarted_and_its_inbox_reaches_the_new_incarnation() {
    let starts = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let (inbox_tx, inbox_rx) = mpsc::channel(4);
    let (first_tx, mut first_rx) = mpsc::channel::<Box<WriteRequest>>(4);
    let first = tokio::spawn(async move {
        // Takes one command, then panics with it in hand.
        let _req = first_rx.recv().await;
        panic!("bus task bug");
    });
    let sup = tokio::spawn(driver(starts.clone(), cancel.clone()).run(first, first_tx, inbox_rx));

    // Before the command that makes it panic: the backoff starts after the panic, so
    // after this instant whatever the scheduling of the tasks.
    let t0 = Instant::now();
    let lost = command(&inbox_tx).await;
    assert!(
        lost.is_err(),
        "the command the dead incarnation held gets no outcome"
    );
    let done = command(&inbox_tx)
        .await
        .expect("answered by the restarted driver");
    assert_eq!(done.error, None);
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert!(t0.elapsed() >= MIN, "restarted after a backoff");

    cancel.cancel();
    sup.await.expect("supervisor ends");
    assert_eq!(starts.load(Ordering::SeqCst), 1, "no restart after cancel");
}

#[tokio::test]
async fn a_driver_that_returns_by_itself_is_restarted_with_growing_waits() {
    let starts = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let (_inbox_tx, inbox_rx) = mpsc::channel(4);
    let (first_tx, _first_rx) = mpsc::channel(4);
    let mut d = driver(starts.clone(), cancel.clone());
    let s = starts.clone();
    // Every incarnation returns at once.
    d.start = Box::new(move |_rx| {
        s.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Some(tokio::spawn(async {})) })
    });
    let t0 = Instant::now();
    let sup = tokio::spawn(d.run(tokio::spawn(async {}), first_tx, inbox_rx));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let n = starts.load(Ordering::SeqCst);
    let took = t0.elapsed();
    // Waits of [10,10], [10,20], [10,40], then [10,80] ms: at most 40 restarts in 400 ms
    // (never a spin), and at least a few even on a loaded machine.
    assert!(
        n >= 2 && u128::from(n) <= took.as_millis() / 10,
        "{n} restarts in {took:?}"
    );
    cancel.cancel();
    sup.await.expect("supervisor ends");
}

#[tokio::test]
async fn a_cancelled_driver_is_not_restarted() {
    let starts = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let (_inbox_tx, inbox_rx) = mpsc::channel(4);
    let (first_tx, first_rx) = mpsc::channel(4);
    let first = answering(first_rx, cancel.clone());
    let sup = tokio::spawn(driver(starts.clone(), cancel.clone()).run(first, first_tx, inbox_rx));
    cancel.cancel();
    sup.await.expect("supervisor ends");
    assert_eq!(starts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_core_task_that_panics_is_reported_with_its_message_unless_stopping() {
    let (died_tx, mut died) = mpsc::channel(4);
    let stopping = CancellationToken::new();
    let w = watch_core(
        "pipeline",
        tokio::spawn(async { panic!("index out of bounds") }),
        stopping.clone(),
        died_tx.clone(),
    );
    w.await.expect("watcher ends");
    let death = died.recv().await.expect("reported");
    assert_eq!(death.task, "pipeline");
    assert!(
        death.why.contains("panicked") && death.why.contains("index out of bounds"),
        "{}",
        death.why
    );

    let w = watch_core(
        "publisher",
        tokio::spawn(async {}),
        stopping.clone(),
        died_tx.clone(),
    );
    w.await.expect("watcher ends");
    assert_eq!(
        died.recv().await.expect("reported").why,
        "ended without being asked to"
    );

    stopping.cancel();
    let w = watch_core("commands", tokio::spawn(async {}), stopping, died_tx);
    w.await.expect("watcher ends");
    assert!(
        died.try_recv().is_err(),
        "an end while stopping is expected"
    );
}
