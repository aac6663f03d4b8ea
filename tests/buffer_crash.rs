//! Proves, with a real SIGKILL and with copies of the state directory taken at random
//! instants (what a power cut leaves), that a crash never makes the queue reuse a seq,
//! never leaves a hole, never loses a flushed event and never makes open panic: a child
//! process (this test binary re-executed) allocates, pushes, acks, drains and flushes in
//! a loop, printing every seq it hands out before using it, and compacts the queue after
//! each full drain (a new generation of its files); the parent freezes it (SIGSTOP, then
//! waits until every thread is stopped) to copy its files, or kills it mid-batch, and
//! reopens what is left.

use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "POLEGATE_BUFFER_CRASH_CHILD_DIR";
/// Where the child also writes its lines (the images test reads it while it is frozen).
const LOG_ENV: &str = "POLEGATE_BUFFER_CRASH_CHILD_LOG";
const CHILD_TEST: &str = "crash_child_entry_point_does_nothing_in_a_normal_test_run";

/// The child's full test name in this binary: its module path without the crate's name.
fn child_test() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    if module.is_empty() {
        CHILD_TEST.to_string()
    } else {
        format!("{module}::{CHILD_TEST}")
    }
}
const BATCH: u64 = 200;
/// Un-acked events the child keeps behind its newest one.
const ACK_LAG: u64 = 300;
/// Every this many batches the child acks everything (a drained backlog).
const DRAIN_EVERY: u64 = 25;
/// No line from the child for this long fails the test instead of hanging it.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// The kv store the child keeps its last flushed seq in (as LoRa keeps sessions).
const KV: &str = "crash";

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
    // Each line goes to stdout (the parent paces itself on it) and, first, to a log file:
    // once the child is frozen, the file holds exactly what it had done.
    let mut log = std::env::var_os(LOG_ENV).map(|p| std::fs::File::create(p).expect("log"));
    let mut say = move |line: String| {
        use std::io::Write;
        if let Some(log) = log.as_mut() {
            log.write_all(format!("{line}\n").as_bytes())
                .expect("log line");
        }
        println!("{line}");
    };
    let q = Queue::open(Path::new(&dir), QueueOptions::default()).expect("child open");
    let kv = q.kv(KV).expect("child kv");
    let mut acked_through: u64 = 0;
    let mut last: u64 = 0;
    // Bounded so an orphaned child cannot run forever.
    for batch in 0..10_000u64 {
        let target = if batch % DRAIN_EVERY == DRAIN_EVERY - 1 {
            last
        } else {
            last.saturating_sub(ACK_LAG)
        };
        if target > acked_through {
            // Announce before acking: the parent must not expect these to survive.
            say(format!("ack_through {target}"));
            for seq in acked_through + 1..=target {
                q.ack(seq).expect("child ack");
            }
            acked_through = target;
        }
        for _ in 0..BATCH {
            let seq = q.next_seq().expect("child next_seq");
            say(format!("alloc {seq}"));
            q.push(seq, &record(seq)).expect("child push");
            last = seq;
        }
        kv.insert(b"last", &last.to_be_bytes()).expect("child kv");
        q.flush().expect("child flush");
        say(format!("flushed {last}"));
        if batch % DRAIN_EVERY == DRAIN_EVERY - 1 {
            // A drained backlog: the daemon would give the disk back now.
            say(format!("compact {batch}"));
            q.compact().expect("child compact");
            say(format!("compacted {batch}"));
        }
    }
}

/// What the child said so far.
#[derive(Default, Debug, Clone)]
struct Seen {
    max_alloc: u64,
    first_alloc: Option<u64>,
    flushed: u64,
    flush_count: u32,
    ack_through: u64,
    allocs_after_flush: u32,
    lines: u64,
    compactions_started: u32,
    last_line: String,
}

impl Seen {
    fn take(&mut self, line: &str) {
        let mut parts = line.split_whitespace();
        let (Some(word), Some(n)) = (parts.next(), parts.next().and_then(|n| n.parse().ok()))
        else {
            return; // libtest chatter
        };
        self.lines += 1;
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
            "compact" => self.compactions_started += 1,
            _ => {}
        }
    }
}

/// The child writer, its stdout read on a thread.
struct Writer {
    child: Child,
    rx: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: Seen,
}

impl Writer {
    fn spawn(dir: &Path, log: Option<&Path>) -> Writer {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        if let Some(log) = log {
            cmd.env(LOG_ENV, log);
        }
        let mut child = cmd
            .args([&child_test(), "--exact", "--nocapture", "--test-threads=1"])
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
        Writer {
            child,
            rx,
            reader: Some(reader),
            seen: Seen::default(),
        }
    }

    /// Reads lines until `done` holds for what was seen.
    fn read_until(&mut self, done: impl Fn(&Seen) -> bool) {
        while !done(&self.seen) {
            match self.rx.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => self.seen.take(&line),
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("child went quiet ({e}) after {:?}", self.seen);
                }
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig}");
    }

    /// SIGSTOP, then waits until every thread of the child is stopped: `kill` returns
    /// once the signal is queued, and a thread inside a system call (a sled write or
    /// fsync) stops only when the call returns, so copying right away could read a file
    /// while it changes. Returns how many looks it took (1 = stopped at the first).
    fn freeze(&self) -> u32 {
        self.signal("STOP");
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = std::time::Instant::now() + LINE_TIMEOUT;
        for look in 1.. {
            if all_stopped(Path::new(&tasks)) {
                return look;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child did not stop within {LINE_TIMEOUT:?}"
            );
            std::thread::yield_now();
        }
        unreachable!("the loop only ends by returning or failing")
    }

    /// SIGKILL, then everything the child wrote before dying (still in the pipe).
    fn kill(mut self) -> Seen {
        self.child.kill().expect("SIGKILL the child"); // Child::kill is SIGKILL on Unix
        let status = self.child.wait().expect("wait child");
        assert!(
            !status.success(),
            "the child was killed, not finished: {status}"
        );
        loop {
            match self.rx.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => self.seen.take(&line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("child stdout did not close: {e}"),
            }
        }
        if let Some(r) = self.reader.take() {
            r.join().expect("reader thread");
        }
        self.seen
    }
}

/// Whether every thread under `/proc/PID/task` is in the stopped state (`T`); the state
/// is the field after the command name, which ends at the last `)`.
fn all_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T")
        })
    })
}

/// Copies `from` into `to` recursively (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("image dir");
    for e in std::fs::read_dir(from).expect("read state dir").flatten() {
        let target = to.join(e.file_name());
        let ty = e.file_type().expect("file type");
        if ty.is_dir() {
            copy_tree(&e.path(), &target);
        } else if ty.is_file() {
            // A file may vanish between the listing and the copy only while the writer
            // runs; it is frozen here, so every error is real.
            std::fs::copy(e.path(), &target).expect("copy file");
        }
    }
}

/// Checks one reopened queue against what the writer had done before the crash (`seen`)
/// and the largest seq it handed out in the whole run (`ever`): no seq reused, no hole, nothing flushed and unacked lost,
/// records intact, the kv store kept.
fn check_reopened(what: &str, q: &Queue, seen: &Seen, ever: u64, expect_flushed: bool) {
    let survivors: Vec<u64> = q
        .read_after(None, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(s, r)| {
            assert_eq!(r, record(s), "{what}: record {s} survives intact");
            s
        })
        .collect();
    assert!(
        survivors.windows(2).all(|w| w[1] == w[0] + 1),
        "{what}: hole in survivors {:?}..{:?}",
        survivors.first(),
        survivors.last()
    );
    assert!(
        survivors.last().is_none_or(|&l| l <= ever),
        "{what}: a seq nobody handed out is stored"
    );
    let next = q.next_seq().expect("next_seq");
    assert!(
        next > seen.max_alloc,
        "{what}: next_seq {next} reuses a seq the child handed out (max {})",
        seen.max_alloc
    );
    if expect_flushed {
        let kept: BTreeSet<u64> = survivors.iter().copied().collect();
        for seq in seen.ack_through + 1..=seen.flushed {
            assert!(kept.contains(&seq), "{what}: flushed seq {seq} was lost");
        }
        let last = q
            .kv(KV)
            .expect("kv")
            .get(b"last")
            .expect("kv get")
            .map(|v| u64::from_be_bytes(v.try_into().expect("8 bytes")));
        if seen.flushed > 0 {
            assert!(
                last.is_some_and(|l| l >= seen.flushed),
                "{what}: the kv store lost its flushed value ({last:?} < {})",
                seen.flushed
            );
        }
    }
}

#[test]
fn a_killed_writer_never_gets_a_seq_reused_and_leaves_no_hole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let mut ever_handed_out = 0;
    // (flushes, seqs into the next batch, compactions begun) before the kill.
    let rounds = [(3, 57, 0), (2, 1, 0), (4, 199, 0), (0, 0, 1), (0, 0, 2)];
    for (round, (flushes, into_batch, compactions)) in rounds.into_iter().enumerate() {
        let mut w = Writer::spawn(&dir, None);
        w.read_until(|s| {
            s.flush_count >= flushes
                && s.allocs_after_flush >= into_batch
                && s.compactions_started >= compactions
        });
        let seen = w.kill();
        let first = seen.first_alloc.expect("child allocated");
        assert!(
            first > ever_handed_out,
            "round {round}: child started at {first}, but {ever_handed_out} was handed out before"
        );
        let q = Queue::open(&dir, QueueOptions::default()).expect("reopen after kill -9");
        check_reopened(&format!("round {round}"), &q, &seen, seen.max_alloc, true);
        ever_handed_out = q.last_pushed().max(seen.max_alloc);
        // Start the next round from an empty queue so its survivors are its own.
        q.purge().expect("purge");
    }
}

/// Panics anywhere in this process (sled's own, caught by the open guard, included): the
/// cabinet build aborts on panic, so a caught one would still be a crash loop there.
static PANICS: AtomicU64 = AtomicU64::new(0);

#[test]
fn every_power_cut_image_of_the_state_directory_opens_without_reusing_a_seq() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        hook(info);
    }));
    let seed = std::env::var("POLEGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let images: u32 = std::env::var("POLEGATE_CRASH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("crash images: seed {seed} (POLEGATE_CRASH_SEED), {images} images");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut guard = Some(tempfile::tempdir().expect("tempdir"));
    let base = guard.as_ref().expect("tempdir").path().to_path_buf();
    if std::env::var_os("POLEGATE_CRASH_KEEP").is_some() {
        eprintln!("keeping {}", base.display());
        guard.take().map(tempfile::TempDir::keep);
    }
    let state = base.as_path().join("state");
    let log_path = base.as_path().join("writer.log");
    let mut w = Writer::spawn(&state.join("buffer"), Some(&log_path));
    let mut taken = Vec::new();
    let mut not_stopped_at_once = 0u32;
    for i in 0..images {
        // A random instant: a random number of lines further, at most two drain cycles.
        let at = w.seen.lines + rng.u64(1..(2 * DRAIN_EVERY * (BATCH + 2)));
        w.read_until(|s| s.lines >= at);
        let looks = w.freeze();
        if looks > 1 {
            not_stopped_at_once += 1;
        }
        // What the frozen child had done, exactly (the pipe may lag behind it).
        let mut seen = Seen::default();
        let log = std::fs::read_to_string(&log_path).expect("child log");
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete.lines().for_each(|l| seen.take(l));
        seen.last_line = complete.lines().last().unwrap_or("").to_owned();
        let image = base.as_path().join(format!("image-{i}"));
        copy_tree(&state, &image);
        // The image and `seen` are one instant only if the writer did not move meanwhile.
        let after = std::fs::metadata(&log_path).expect("child log").len();
        assert_eq!(
            after,
            log.len() as u64,
            "image {i}: the writer logged while frozen (seed {seed})"
        );
        w.signal("CONT");
        taken.push((image, seen));
    }
    let ever = w.kill().max_alloc;
    eprintln!(
        "crash images: {not_stopped_at_once} of {images} needed more than one look to see the writer stopped"
    );
    for (image, seen) in &taken {
        let names: Vec<String> = std::fs::read_dir(image)
            .expect("image")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let what = format!(
            "{} (seed {seed}; frozen after {:?}; files {names:?})",
            image.display(),
            seen.last_line
        );
        let q = Queue::open(&image.join("buffer"), QueueOptions::default())
            .unwrap_or_else(|e| panic!("{what}: does not open: {e}"));
        let moved_aside = q.stats().corrupt_recoveries > 0;
        if moved_aside {
            let aside = std::fs::read_dir(image)
                .expect("image")
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
            assert!(
                aside,
                "{what}: a recovery is counted but nothing was moved aside"
            );
        }
        // Frozen images hold everything the child had flushed (the page cache at one
        // instant); one moved aside has lost its events, counted, but keeps its seq floor.
        check_reopened(&what, &q, seen, ever, !moved_aside);
        assert!(
            !moved_aside,
            "{what}: an image of a frozen writer was damaged (moved aside)"
        );
    }
    assert_eq!(
        PANICS.load(Ordering::Relaxed),
        0,
        "a panic while opening images (seed {seed})"
    );
}
