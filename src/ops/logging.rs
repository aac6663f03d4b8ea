//! Logging setup: the systemd journal when our stderr is connected to it, stderr otherwise.
//!
//! Invariants:
//! - Logging starts before the configuration is read ([`init`] from `cli.rs`); the level
//!   from the config is applied later with [`init_for`] / [`set_level`].
//! - `RUST_LOG`, when set, wins over the config level; the default is `info`, and the
//!   embedded demo broker (`rumqttd`) is always silenced unless `RUST_LOG` names it.
//! - Under systemd, tracing fields become journal fields without a prefix, upper-cased:
//!   `device_id` → `DEVICE_ID`, `bus_id` → `BUS_ID`, `profile` → `PROFILE`, so
//!   `journalctl -u polegate DEVICE_ID=lamp-017` works. (tracing-journald prefixes fields
//!   with `F_` by default; we turn that off.) Should the journal socket be unusable,
//!   tracing-journald's init fails and we fall back to stderr, which systemd also captures.
//! - A panic is one error line "panicked: …" (fields `PANIC_LOCATION`, `THREAD`,
//!   `SUPPRESSED`), at most one a second, not the default hook's unstructured lines.

use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Directives appended to every level so the demo broker stays quiet, and so does the
/// SNMP client, which logs every failed request (the SNMP driver logs state changes).
const ALWAYS: &str = "rumqttd=off,async_snmp=off";
const DEFAULT_LEVEL: &str = "info";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber once at the default level; later calls are no-ops.
pub fn init() {
    init_for(None);
}

/// Installs the global subscriber (first call) or applies `config_level` (later calls).
/// `config_level` is an `EnvFilter` directive string such as `"debug"` or
/// `"info,polegate::southbound=debug"`; `RUST_LOG` overrides it.
/// Returns the sink in use, or `None` when another subscriber was installed first (tests).
pub fn init_for(config_level: Option<&str>) -> Option<Sink> {
    if FILTER.get().is_some() {
        set_level(config_level);
        return Some(current_sink());
    }
    let (filter, handle) = reload::Layer::new(build_filter(config_level));
    let stderr_layer = || {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    };
    let journal = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_field_prefix(None)),
            Err(e) => {
                eprintln!(
                    "polegate: the journal socket is unusable ({e}); logging to stderr instead"
                );
                None
            }
        }
    } else {
        None
    };
    let sink = if journal.is_some() {
        Sink::Journal
    } else {
        Sink::Stderr
    };
    let installed = match journal {
        Some(j) => Registry::default().with(filter).with(j).try_init(),
        None => Registry::default()
            .with(filter)
            .with(stderr_layer())
            .try_init(),
    };
    if installed.is_err() {
        return None;
    }
    log_panics();
    let _ = FILTER.set(handle);
    let _ = SINK.set(sink);
    Some(sink)
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// The message a panic carried (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A panic becomes one error line with its location and thread as fields, instead of the
/// default hook's lines on stderr (which reach the journal without fields); the backtrace,
/// when `RUST_BACKTRACE` asks for one, is a field of that line. At most one such line a
/// second: a flood (radio input panicking a parser under `catch_unwind`, say) is counted
/// in the next line's `suppressed`. What happens next is the supervisor's business
/// (`app/supervise.rs`): a driver is restarted, a core task stops the daemon.
fn log_panics() {
    static GATE: PanicGate = PanicGate::new();
    std::panic::set_hook(Box::new(|info| {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Some(suppressed) = GATE.admit(now_s) else {
            return;
        };
        let msg = panic_message(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(panic_location = %location, thread, suppressed, backtrace = %trace, "panicked: {msg}");
        } else {
            tracing::error!(panic_location = %location, thread, suppressed, "panicked: {msg}");
        }
    }));
}

/// One panic line a second (the hook runs on any thread, so lock-free).
struct PanicGate {
    logged_at_s: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl PanicGate {
    const fn new() -> PanicGate {
        PanicGate {
            logged_at_s: std::sync::atomic::AtomicU64::new(u64::MAX),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this panic, `n` were suppressed since the last line; `None`: one
    /// was already logged in second `now_s`.
    fn admit(&self, now_s: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.logged_at_s.swap(now_s, Relaxed) == now_s {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

fn current_sink() -> Sink {
    SINK.get().copied().unwrap_or(Sink::Stderr)
}

/// Applies the config's level (e.g. after a reload). Ignored while `RUST_LOG` is set.
pub fn set_level(config_level: Option<&str>) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(handle) = FILTER.get() {
        let _ = handle.reload(build_filter(config_level));
    }
}

fn build_filter(config_level: Option<&str>) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let level = config_level.unwrap_or(DEFAULT_LEVEL);
    EnvFilter::try_new(filter_directives(level))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(DEFAULT_LEVEL)))
}

/// `level` plus the always-on directives.
fn filter_directives(level: &str) -> String {
    format!("{level},{ALWAYS}")
}

/// systemd sets `JOURNAL_STREAM=<dev>:<ino>` for a service whose stderr/stdout is the
/// journal; it only counts when it still matches our stderr (a child with redirected
/// stderr inherits the variable).
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(ids) = parse_journal_stream(&var.to_string_lossy()) else {
        return false;
    };
    stderr_dev_ino() == Some(ids)
}

fn parse_journal_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    //! Journal detection, level directives and the panic-line gate.
    use super::*;

    #[test]
    fn panic_lines_are_one_a_second_and_say_how_many_were_suppressed() {
        let gate = PanicGate::new();
        assert_eq!(gate.admit(100), Some(0), "the first one is logged");
        assert_eq!(gate.admit(100), None);
        assert_eq!(gate.admit(100), None);
        assert_eq!(
            gate.admit(101),
            Some(2),
            "the next second's line counts them"
        );
        assert_eq!(gate.admit(101), None);
        assert_eq!(gate.admit(250), Some(1));
        assert_eq!(gate.admit(251), Some(0));
    }

    #[test]
    fn journal_stream_is_two_decimal_numbers() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:x"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn every_level_keeps_the_demo_broker_quiet() {
        assert_eq!(
            filter_directives("debug"),
            "debug,rumqttd=off,async_snmp=off"
        );
        assert!(EnvFilter::try_new(filter_directives("info,polegate=trace")).is_ok());
    }
}
