//! Equipment profiles (SPEC §3–4): one TOML file per equipment model, found under
//! `gateway.plugins_dirs`. A profile maps native data (registers, frames) to normalized
//! points. Loading collects every problem with its file and key path; codecs are pure.
//!
//! Layout: `load.rs` (discovery, parsing, validation), `vocab.rs` (normalized names per
//! kind), `codec.rs` (register images <-> values, scale/offset, enums).

pub mod codec;
pub mod load;
pub mod vocab;

use crate::model::Kind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use load::{ProfileError, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Modbus,
    Serial,
    Lora,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Serial => "serial",
            Protocol::Lora => "lora",
        }
    }
}

/// Modbus data tables. Coils and holding registers are writable by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Coil,
    Discrete,
    Input,
    Holding,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Input => "input",
            Table::Holding => "holding",
        }
    }
    /// Bit tables (coil, discrete) vs 16-bit register tables.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

impl PointType {
    pub fn as_str(self) -> &'static str {
        match self {
            PointType::Bool => "bool",
            PointType::U16 => "u16",
            PointType::I16 => "i16",
            PointType::U32 => "u32",
            PointType::I32 => "i32",
            PointType::U64 => "u64",
            PointType::I64 => "i64",
            PointType::F32 => "f32",
            PointType::F64 => "f64",
            PointType::String => "string",
        }
    }
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            PointType::U16
                | PointType::I16
                | PointType::U32
                | PointType::I32
                | PointType::U64
                | PointType::I64
        )
    }
}

/// Word/byte order of multi-register values (SPEC §3, §8).
/// ABCD = big-endian bytes and registers; DCBA = fully reversed; BADC = bytes swapped
/// inside each register; CDAB = registers reversed, bytes inside each big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    #[default]
    Abcd,
    Dcba,
    Badc,
    Cdab,
}

/// Where a Modbus point lives.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRef {
    pub table: Table,
    /// 0-based protocol address.
    pub address: u16,
    pub order: WordOrder,
    /// One bit of a register (type bool on input/holding).
    pub bit: Option<u8>,
    /// Registers, for type string.
    pub length: Option<u16>,
}

/// One normalized point of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct PointDef {
    pub name: String,
    pub unit: Option<String>,
    pub ty: PointType,
    /// Present for Modbus profiles only.
    pub reg: Option<RegisterRef>,
    pub scale: f64,
    pub offset: f64,
    pub deadband: Option<f64>,
    pub writable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Enum: raw value -> label (published as the label).
    pub values: Option<BTreeMap<i64, String>>,
}

/// A loaded, validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub kind: Kind,
    pub protocol: Protocol,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub description: Option<String>,
    pub poll_ms: Option<u64>,
    pub points: Vec<PointDef>,
    /// LoRa profiles: expected time between uplinks (drives `offline_after_s`, SPEC §8).
    pub uplink_interval_s: Option<u64>,
    /// The `[serial]` section of a serial profile (framing, poll, script), validated and
    /// with its script compiled.
    pub serial: Option<SerialSpec>,
    /// The raw `[lora]` table of a LoRa profile (script), validated by the LoRa driver.
    pub lora: Option<toml::Table>,
    /// The file it was loaded from.
    pub source: PathBuf,
}

/// How a serial line is cut into frames (SPEC §3: exactly one of these).
#[derive(Debug, Clone, PartialEq)]
pub enum SerialFraming {
    /// Frames end with these bytes (not passed to `decode`).
    Delimiter(Vec<u8>),
    /// Every frame has exactly this many bytes.
    Length(usize),
    /// A frame ends when the line stays silent this long (ms).
    IdleMs(u64),
}

/// What `decode(frame)` receives: a string (text) or a blob (binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialEncoding {
    Text,
    Binary,
}

/// The validated `[serial]` section of a serial profile (SPEC §3, §8 "Serial profiles").
#[derive(Debug, Clone, PartialEq)]
pub struct SerialSpec {
    pub framing: SerialFraming,
    pub encoding: SerialEncoding,
    /// Requests sent each poll cycle, `{address}` substituted; empty when the script's
    /// `fn poll(address)` builds them, or when the device only pushes frames.
    pub poll: Vec<String>,
    /// The compiled script (`decode`, `encode`, optional `ack` and `poll`).
    pub script: crate::script::Script,
    /// false: a write is ok once sent.
    pub expect_reply: bool,
    /// Longer frames are discarded (and the framer resynchronizes).
    pub max_frame: usize,
    /// Reply timeout; `None` takes the bus's `timeout_ms`.
    pub response_timeout_ms: Option<u64>,
}

impl Profile {
    pub fn point(&self, name: &str) -> Option<(usize, &PointDef)> {
        self.points.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

pub type ProfileRef = Arc<Profile>;
