//! Configuration (SPEC §2): the main TOML file, `conf.d/*.toml` beside it, and
//! `POLEGATE__SECTION__KEY` environment overrides. Loading collects *every* problem,
//! each naming the file, the key path (`device[3].modbus.unit`) and what is wrong.
//!
//! The types in this file are the validated form the rest of the daemon uses; the raw
//! serde shapes and the checks live in `load.rs` (files, conf.d, environment),
//! `validate.rs` (sections) and `entries.rs` (`[[bus]]`, `[[device]]`), all writing to
//! the leaf context of `ctx.rs`. Periods, bounded numbers, sizes and listen addresses
//! are range-checked as they deserialize (`values.rs`); one `BrokerConn` (`broker.rs`)
//! serves `[mqtt]` and `[lora.chirpstack]`; `check.rs` writes the summary of
//! `polegate check`. Imports between these files point one way (load → validate →
//! sections → values → ctx), never in a cycle.

mod broker;
pub mod check;
mod ctx;
mod entries;
pub mod http;
pub mod load;
pub mod lora;
mod lora_device;
mod mqtt;
pub mod ocpp;
mod parse;
mod refs;
pub mod schedule;
pub mod schedule_parse;
pub mod secrets;
pub mod snmp;
#[cfg(test)]
mod tests;
mod transports;
mod validate;
mod values;

use std::path::PathBuf;

pub use broker::BrokerConn;
pub use load::{
    ConfigError, ConfigErrors, ENV_PREFIX, load, load_with_env, references, references_with_env,
};
pub use parse::split_host_port;
pub use refs::{References, cross_check};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/polegate/polegate.toml";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The main file, as given.
    pub path: PathBuf,
    pub gateway: GatewayCfg,
    pub mqtt: MqttCfg,
    pub buffer: BufferCfg,
    pub stats: StatsCfg,
    pub commands: CommandsCfg,
    /// `[http]`: status page, `/metrics`, `/healthz`.
    pub http: http::HttpCfg,
    /// `[lora]`: the LoRaWAN source; None opens no LoRa socket.
    pub lora: Option<lora::LoraCfg>,
    /// `[ocpp]`: the listener EV chargers connect to; None opens none.
    pub ocpp: Option<ocpp::OcppCfg>,
    pub buses: Vec<BusCfg>,
    pub devices: Vec<DeviceCfg>,
    /// The agent of every `[[bus]] kind = "snmp"`, by bus id.
    pub snmp_agents: std::collections::BTreeMap<String, snmp::SnmpAgentCfg>,
    /// `[schedule]` and `[[program]]` (SPEC §10); None when neither is present.
    pub schedule: Option<schedule::ScheduleCfg>,
    /// Every file a secret is read from, for the permission warnings of `check` and `run`.
    pub secret_files: Vec<secrets::SecretFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCfg {
    pub id: String,
    pub state_dir: PathBuf,
    pub plugins_dirs: Vec<PathBuf>,
    /// `gateway.log_level`: a level or an `EnvFilter` directive; `RUST_LOG` wins.
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttCfg {
    /// `url`, credentials and TLS files.
    pub broker: BrokerConn,
    pub client_id: String,
    pub topic_prefix: String,
    pub keep_alive_s: u64,
    pub max_inflight: u16,
    /// Messages per second while draining a backlog; 0 = no limit.
    pub replay_rate: u32,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// The first connect after the host booted waits uniform in [0, this] (fleet spread).
    pub connect_delay_max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    DropOldest,
    DropNewest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferCfg {
    pub max_bytes: u64,
    /// Held in memory while the buffer cannot store (disk full, I/O errors).
    pub memory_max_bytes: u64,
    pub flush_every_ms: u64,
    pub on_full: OnFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsCfg {
    /// 0 disables.
    pub interval_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandsCfg {
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    ModbusRtu,
    ModbusAscii,
    Serial,
    /// An SNMP agent shared by several devices (SPEC §11); its address and credentials
    /// are in [`Config::snmp_agents`].
    Snmp,
}

/// Every declared bus id with its kind when that parsed, valid entry or not, so a
/// device referencing a broken bus is not also told the bus does not exist.
type BusIndex = std::collections::BTreeMap<String, Option<BusKind>>;

/// The kind a `[[bus]]` names in `kind = "…"`.
fn bus_kind(s: &str) -> Option<BusKind> {
    match s {
        "modbus_rtu" => Some(BusKind::ModbusRtu),
        "modbus_ascii" => Some(BusKind::ModbusAscii),
        "serial" => Some(BusKind::Serial),
        "snmp" => Some(BusKind::Snmp),
        _ => None,
    }
}

/// `kind` as written in a `[[bus]]`.
pub fn bus_kind_label(k: BusKind) -> &'static str {
    match k {
        BusKind::ModbusRtu => "modbus_rtu",
        BusKind::ModbusAscii => "modbus_ascii",
        BusKind::Serial => "serial",
        BusKind::Snmp => "snmp",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusCfg {
    pub id: String,
    pub kind: BusKind,
    pub port: PathBuf,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    pub timeout_ms: u64,
    pub retries: u32,
    /// Where it was declared, e.g. `/etc/polegate/polegate.toml: bus[0]`.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Modbus TCP (MBAP header).
    Tcp,
    /// RTU frames over a TCP stream (serial device servers).
    Rtu,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP or RTU-over-TCP to `address` (`host:port`).
    ModbusTcp {
        address: String,
        unit: u8,
        framing: Framing,
    },
    /// Modbus RTU/ASCII on a `[[bus]]`.
    ModbusBus {
        bus: String,
        unit: u8,
    },
    Serial {
        bus: String,
        address: String,
    },
    /// LoRaWAN identity and keys (SPEC §2 `lora = {…}`).
    Lora(lora::LoraDeviceCfg),
    /// An EV charger's connector over OCPP 1.6J (SPEC §2 `ocpp = {…}`, §9).
    Ocpp(ocpp::OcppDeviceCfg),
    /// IP equipment over SNMP (SPEC §11 `snmp = {…}`).
    Snmp(snmp::SnmpDeviceCfg),
    /// No transport but `reach` (a `protocol = "reach"` profile, SPEC §11).
    Reach,
}

impl Transport {
    pub fn label(&self) -> &'static str {
        match self {
            Transport::ModbusTcp {
                framing: Framing::Tcp,
                ..
            } => "modbus_tcp",
            Transport::ModbusTcp {
                framing: Framing::Rtu,
                ..
            } => "modbus_rtu_over_tcp",
            Transport::ModbusBus { .. } => "modbus_bus",
            Transport::Serial { .. } => "serial",
            Transport::Lora(_) => "lora",
            Transport::Ocpp(_) => "ocpp",
            Transport::Snmp(_) => "snmp",
            Transport::Reach => "reach",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCfg {
    pub id: String,
    pub profile: String,
    pub enabled: bool,
    /// Explicit `poll_ms`; the effective one falls back to the profile's, then 10000.
    pub poll_ms: Option<u64>,
    pub heartbeat_s: u64,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub transport: Transport,
    /// `reach = {…}`: adds `reachable`/`rtt` (SPEC §11).
    pub reach: Option<snmp::ReachCfg>,
    /// Where it was declared, e.g. `/etc/polegate/conf.d/10-east.toml: device[3]`.
    pub origin: String,
}

impl DeviceCfg {
    pub fn effective_poll_ms(&self, profile_poll_ms: Option<u64>) -> u64 {
        self.poll_ms.or(profile_poll_ms).unwrap_or(10_000)
    }
}
