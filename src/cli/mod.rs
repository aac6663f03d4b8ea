//! The command line (SPEC §1). Exit codes: 0 ok, 1 invalid configuration or profile,
//! 2 usage error, 3 fatal runtime error.

use crate::app;
use crate::config::DEFAULT_CONFIG_PATH;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

mod buffer;
mod exit;
pub mod probe;
pub mod probe_snmp;
mod schedule;
mod status;

pub use exit::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "polegate",
    version,
    about = "Street-cabinet gateway: pole equipment to normalized MQTT events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (systemd starts this).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration and every profile it uses; print a summary.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Simulated pole hardware and an embedded broker; prints every MQTT message and plays
    /// a story: a lamp dimmed at ~5 s, the uplink cut at ~10 s and its backlog replayed.
    Demo {
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Only the plain message stream: no command, no uplink cut, no summary.
        #[arg(long)]
        raw: bool,
    },
    /// List the profiles found and their points.
    Profiles {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Read registers or OIDs from a device at the cabinet, raw and decoded.
    Probe {
        #[command(subcommand)]
        protocol: ProbeProtocol,
    },
    /// The running daemon's view, through its [http] listener.
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// The lighting programs on a date: sun times and every step (SPEC §10).
    Schedule {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// YYYY-MM-DD (default: today in the schedule's time zone).
        #[arg(long)]
        date: Option<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or purge the on-disk buffer (with the daemon stopped).
    Buffer {
        #[command(subcommand)]
        action: BufferAction,
        #[arg(long, default_value = DEFAULT_CONFIG_PATH, global = true)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProbeProtocol {
    /// Modbus TCP, RTU over TCP, or RTU/ASCII on a serial port.
    Modbus(probe::ModbusProbe),
    /// An SNMP agent (v2c, or v3 authPriv): GET of the OIDs given.
    Snmp(probe_snmp::SnmpProbe),
}

#[derive(Debug, Subcommand)]
pub enum BufferAction {
    /// Events, bytes and disk use.
    Stats {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print queued events (oldest first).
    Dump {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete every queued event.
    Purge,
}

/// Parses the process arguments and runs; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    crate::ops::logging::init();
    #[cfg(feature = "failpoints")]
    let _armed = crate::ops::failpoint::arm();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
        Command::Profiles { config } => profiles(&config),
        Command::Status { config, json } => status::status(&config, json),
        Command::Buffer { action, config } => buffer::buffer(&config, action),
        Command::Schedule { config, date, json } => {
            schedule::schedule(&config, date.as_deref(), json)
        }
        Command::Demo { duration, raw } => demo(duration, raw),
        Command::Probe {
            protocol: ProbeProtocol::Modbus(args),
        } => probe::modbus(&args),
        Command::Probe {
            protocol: ProbeProtocol::Snmp(args),
        } => probe_snmp::snmp(&args),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    crate::ops::memory::limit_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("polegate: cannot start the async runtime: {e}");
            None
        }
    }
}

fn print_errors(what: &str, errors: &[String]) {
    eprintln!("polegate: {what}: {} error(s)", errors.len());
    for e in errors {
        eprintln!("  {e}");
    }
}

fn check(path: &std::path::Path) -> i32 {
    match app::load(path, true) {
        Ok(l) => {
            print!("{}", crate::config::check::summary(&l.config, &l.registry));
            for e in crate::config::secrets::exposed(&l.config.secret_files) {
                println!("warning: {e}");
            }
            if let Some(w) = l.config.ocpp.as_ref().and_then(|o| o.warning()) {
                println!("warning: {w}");
            }
            for w in crate::config::schedule::warnings(&l.config) {
                println!("warning: {w}");
            }
            println!("configuration OK");
            EXIT_OK
        }
        Err(errors) => {
            print_errors("invalid configuration", &errors);
            EXIT_CONFIG
        }
    }
}

fn profiles(path: &std::path::Path) -> i32 {
    let cfg = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            print_errors(
                "invalid configuration",
                &e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            );
            return EXIT_CONFIG;
        }
    };
    let (reg, errors) = crate::profile::Registry::load(&cfg.gateway.plugins_dirs);
    for p in reg.iter() {
        println!(
            "{} ({} {}, {} {}) {}",
            p.name,
            p.kind,
            p.protocol.as_str(),
            p.vendor.as_deref().unwrap_or("-"),
            p.model.as_deref().unwrap_or("-"),
            p.source.display()
        );
        for pt in &p.points {
            let place = pt
                .reg
                .as_ref()
                .map(|r| format!("{} {}", r.table.as_str(), r.address))
                .unwrap_or_default();
            println!(
                "  {:<20} {:<7} {:<6} {:<14}{}",
                pt.name,
                pt.ty.as_str(),
                pt.unit.as_deref().unwrap_or(""),
                place,
                if pt.writable { " writable" } else { "" }
            );
        }
    }
    if errors.is_empty() {
        EXIT_OK
    } else {
        print_errors(
            "invalid profiles",
            &errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        );
        EXIT_CONFIG
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
pub async fn cancel_on_signals(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    token.cancel();
}

/// Sends a reload trigger on every SIGHUP.
pub async fn reload_on_sighup(tx: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload by file change only");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        if tx.send(()).await.is_err() {
            return;
        }
    }
}

fn run(path: &std::path::Path) -> i32 {
    let loaded = match app::load(path, false) {
        Ok(l) => l,
        Err(errors) => {
            print_errors("invalid configuration", &errors);
            return EXIT_CONFIG;
        }
    };
    crate::ops::logging::set_level(loaded.config.gateway.log_level.as_deref());
    for e in crate::config::secrets::exposed(&loaded.config.secret_files) {
        tracing::warn!(file = %e.path.display(), mode = %format!("{:04o}", e.mode), keys = %e.keys.join(","), "secret file readable by every user: run chmod o-r on it");
    }
    for w in &loaded.profile_warnings {
        tracing::warn!(problem = %w, "profile ignored");
    }
    if let Some(w) = loaded.config.ocpp.as_ref().and_then(|o| o.warning()) {
        tracing::warn!(problem = %w, "OCPP without TLS");
    }
    for w in crate::config::schedule::warnings(&loaded.config) {
        tracing::warn!(problem = %w, "schedule");
    }
    let Some(rt) = runtime() else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(cancel_on_signals(cancel.clone()));
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(reload_on_sighup(reload_tx));
        let opts = app::RunOptions {
            config_path: Some(path.to_path_buf()),
            watch_files: true,
            notifier: Some(std::sync::Arc::new(crate::ops::notify::Notifier::from_env())),
            clock: None,
        };
        match app::run_with(
            loaded.config,
            loaded.registry,
            cancel,
            |_| {},
            Some(reload_rx),
            opts,
        )
        .await
        {
            Ok(()) => EXIT_OK,
            Err(e) => {
                tracing::error!(error = %e, "fatal");
                eprintln!("polegate: {e}");
                EXIT_RUNTIME
            }
        }
    })
}

#[cfg(feature = "demo")]
fn demo(duration: Option<u64>, raw: bool) -> i32 {
    let Some(rt) = runtime() else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(cancel_on_signals(cancel.clone()));
        match crate::demo::run::demo(duration.map(std::time::Duration::from_secs), raw, cancel)
            .await
        {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("polegate demo: {e:#}");
                EXIT_RUNTIME
            }
        }
    })
}

#[cfg(not(feature = "demo"))]
fn demo(_duration: Option<u64>, _raw: bool) -> i32 {
    eprintln!("polegate: this build has no demo (built without the `demo` feature)");
    EXIT_USAGE
}
