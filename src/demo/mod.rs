//! `polegate demo`: simulated pole hardware and an embedded broker.

pub mod broker;
pub mod lora;
pub mod ocpp;
pub mod pa;
pub mod poe;
pub mod rtu_slave;
pub mod run;
pub mod schedule;
pub mod sim;
pub mod story;

/// Appends the tables of one simulator (`[lora]`, `[ocpp]`, its devices) to the demo's
/// config (here, below the simulators and `run`, so they need not import each other).
fn append_config(config: &std::path::Path, tables: &str) -> std::io::Result<()> {
    let mut cfg = std::fs::read_to_string(config)?;
    cfg.push_str(tables);
    std::fs::write(config, cfg)
}
