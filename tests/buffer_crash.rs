//! Proves, with a real SIGKILL, that a crash never makes the queue reuse a seq and never
//! leaves a hole: a child process (this test binary re-executed) allocates, pushes, acks and
//! flushes in a loop, printing every seq it hands out before using it; the parent kills it
//! mid-batch, reopens the queue and checks the survivors and the next seq.

use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "POLEGATE_BUFFER_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_entry_point_does_nothing_in_a_normal_test_run";
const BATCH: u64 = 200;
/// Un-acked events the child keeps behind its newest one.
const ACK_LAG: u64 = 300;
/// No line from the child for this long fails the test instead of hanging it.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn record(seq: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{}/telemetry", seq % 17),
        payload: Body::from_open(&[b'p'; 300]),
        retain: false,
        created_ms: seq,
    }
}

#[test]
fn crash_child_entry_point_does_nothing_in_a_normal_test_run() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let q = Queue::open(Path::new(&dir), QueueOptions::default()).expect("child open");
    let mut acked_through: u64 = 0;
    let mut last: u64 = 0;
    // Bounded so an orphaned child cannot run forever.
    for _ in 0..10_000 {
        let target = last.saturating_sub(ACK_LAG);
        if target > acked_through {
            // Announce before acking: the parent must not expect these to survive.
            println!("ack_through {target}");
            for seq in acked_through + 1..=target {
                q.ack(seq).expect("child ack");
            }
            acked_through = target;
        }
        for _ in 0..BATCH {
            let seq = q.next_seq().expect("child next_seq");
            println!("alloc {seq}");
            q.push(seq, &record(seq)).expect("child push");
            last = seq;
        }
        q.flush().expect("child flush");
        println!("flushed {last}");
    }
}

#[derive(Default, Debug)]
struct Seen {
    max_alloc: u64,
    first_alloc: Option<u64>,
    flushed: u64,
    flush_count: u32,
    ack_through: u64,
    allocs_after_flush: u32,
}

impl Seen {
    fn take(&mut self, line: &str) {
        let mut parts = line.split_whitespace();
        let (Some(word), Some(n)) = (parts.next(), parts.next().and_then(|n| n.parse().ok()))
        else {
            return; // libtest chatter
        };
        match word {
            "alloc" => {
                assert!(
                    n > self.max_alloc,
                    "child handed out {n} after {}",
                    self.max_alloc
                );
                self.max_alloc = n;
                self.first_alloc.get_or_insert(n);
                self.allocs_after_flush += 1;
            }
            "flushed" => {
                self.flushed = n;
                self.flush_count += 1;
                self.allocs_after_flush = 0;
            }
            "ack_through" => self.ack_through = n,
            _ => {}
        }
    }
}

fn run_child_and_kill(dir: &Path, flushes_before_kill: u32, allocs_into_batch: u32) -> Seen {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Seen::default();
    while seen.flush_count < flushes_before_kill || seen.allocs_after_flush < allocs_into_batch {
        match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => seen.take(&line),
            Err(e) => {
                let _ = child.kill();
                panic!("child went quiet ({e}) after {seen:?}");
            }
        }
    }
    child.kill().expect("SIGKILL the child"); // Child::kill is SIGKILL on Unix
    let status = child.wait().expect("wait child");
    assert!(
        !status.success(),
        "the child was killed, not finished: {status}"
    );
    // Whatever the child wrote before dying is still in the pipe: read it to EOF.
    loop {
        match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => seen.take(&line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("child stdout did not close: {e}"),
        }
    }
    reader.join().expect("reader thread");
    seen
}

#[test]
fn a_killed_writer_never_gets_a_seq_reused_and_leaves_no_hole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let mut ever_handed_out = 0;
    for (round, (flushes, into_batch)) in [(3, 57), (2, 1), (4, 199)].into_iter().enumerate() {
        let seen = run_child_and_kill(&dir, flushes, into_batch);
        let first = seen.first_alloc.expect("child allocated");
        assert!(
            first > ever_handed_out,
            "round {round}: child started at {first}, but {ever_handed_out} was handed out before"
        );

        let q = Queue::open(&dir, QueueOptions::default()).expect("reopen after kill -9");
        let survivors: Vec<u64> = q
            .read_after(None, usize::MAX)
            .expect("read")
            .into_iter()
            .map(|(s, r)| {
                assert_eq!(r, record(s), "round {round}: record {s} survives intact");
                s
            })
            .collect();
        let next = q.next_seq().expect("next_seq");
        assert!(
            next > seen.max_alloc,
            "round {round}: next_seq {next} reuses a seq the child handed out (max {})",
            seen.max_alloc
        );
        ever_handed_out = next;
        assert!(
            survivors.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: hole in survivors {:?}..{:?}",
            survivors.first(),
            survivors.last()
        );
        let kept: BTreeSet<u64> = survivors.iter().copied().collect();
        for seq in seen.ack_through + 1..=seen.flushed {
            assert!(
                kept.contains(&seq),
                "round {round}: flushed seq {seq} was lost"
            );
        }
        assert!(
            survivors.last().is_none_or(|&l| l <= seen.max_alloc),
            "round {round}: a seq nobody handed out is stored"
        );
        // Start the next round from an empty queue so its survivors are its own.
        q.purge().expect("purge");
    }
}
