//! `polegate buffer stats|dump|purge`, for a technician with the daemon stopped.
//!
//! The daemon holds the buffer's lock while it runs; opening it then fails after a short
//! wait with [`BufferError::Locked`], which we turn into a message that says what to do and
//! exit code 3 (runtime), without touching the buffer.

use super::BufferAction;
use super::exit::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::buffer::{BufferError, Queue};
use crate::model::payload::Delivery;
use std::path::Path;

pub fn buffer(config: &Path, action: BufferAction) -> i32 {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("polegate: invalid configuration:\n{e}");
            return EXIT_CONFIG;
        }
    };
    let dir = cfg.gateway.state_dir.join("buffer");
    let queue = match Queue::open(&dir, crate::app::queue_options(&cfg.buffer)) {
        Ok(q) => q,
        Err(BufferError::Locked { path, holder, .. }) => {
            eprintln!("{}", daemon_running_message(&path, &holder));
            return EXIT_RUNTIME;
        }
        Err(e) => {
            eprintln!("polegate: cannot open the buffer: {e}");
            return EXIT_RUNTIME;
        }
    };
    match action {
        BufferAction::Stats { json } => {
            let s = queue.stats();
            let oldest = queue
                .read_after(None, 1)
                .ok()
                .and_then(|v| v.first().map(|(s, _)| *s));
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "path": dir.display().to_string(),
                        "events": s.events, "bytes": s.bytes, "disk_bytes": s.disk_bytes,
                        "max_bytes": cfg.buffer.max_bytes, "oldest_seq": oldest,
                    })
                );
            } else {
                println!("buffer:      {}", dir.display());
                println!("events:      {}", s.events);
                println!("bytes:       {} of {} max", s.bytes, cfg.buffer.max_bytes);
                println!("disk bytes:  {}", s.disk_bytes);
                match oldest {
                    Some(o) => println!("oldest seq:  {o}"),
                    None => println!("oldest seq:  - (empty)"),
                }
            }
            EXIT_OK
        }
        BufferAction::Dump { limit } => match queue.read_after(None, limit) {
            Ok(items) => {
                for (seq, rec) in items {
                    println!(
                        "{seq} {} {}{}",
                        rec.topic,
                        String::from_utf8_lossy(&rec.payload.publish(Delivery::Live)),
                        if rec.retain { " (retained)" } else { "" }
                    );
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("polegate: cannot read the buffer: {e}");
                EXIT_RUNTIME
            }
        },
        BufferAction::Purge => match queue.purge().and_then(|n| queue.flush().map(|_| n)) {
            Ok(n) => {
                println!("purged {n} events");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("polegate: cannot purge the buffer: {e}");
                EXIT_RUNTIME
            }
        },
    }
}

/// What a technician reads when the daemon (or another `polegate buffer`) holds the buffer.
fn daemon_running_message(path: &Path, holder: &str) -> String {
    format!(
        "polegate: the buffer at {} is in use by a running polegate ({holder}).\n\
         Stop the daemon first (`systemctl stop polegate`), run this command again, then \
         `systemctl start polegate`.",
        path.display()
    )
}
