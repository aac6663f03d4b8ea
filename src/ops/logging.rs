//! Logging setup: stderr with key/value fields; level from `RUST_LOG` (default info).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests, demo).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
