//! Equipment profiles (SPEC §3–4): one TOML file per equipment model, found under
//! `gateway.plugins_dirs`. A profile maps native data (registers, frames) to normalized
//! points. Loading collects every problem with its file and key path; codecs are pure.
//!
//! Layout, the loader split by what it checks: `load.rs` (discovery, the registry, the
//! top-level keys), `report.rs` (collecting problems with their key paths), `points.rs`
//! (each `[[point]]`), `registers.rs` (Modbus addressing), `serial.rs` (the `[serial]`
//! section), `lora.rs` (the `[lora]` section), `vocab.rs` (normalized names per kind and
//! the check against them); `convert.rs` (register images <-> values, scale/offset, enums).
//! Serial and LoRa scripts are compiled here, once, and travel in the profile.

pub mod convert;
mod decimal;
pub use decimal::Scaling;
pub mod integer;
pub mod load;
mod lora;
mod points;
mod raw_point;
mod registers;
mod report;
mod serial;
pub mod snmp;
pub mod vocab;

use crate::model::Kind;
use crate::model::limits::{MODBUS_MAX_READ_BITS, MODBUS_MAX_READ_REGISTERS};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use load::{ProfileError, Registry};

/// A word that is none of the spellings a field accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not one of: {}", .expected.join(", "))]
pub struct UnknownKeyword {
    pub given: String,
    /// Every accepted spelling, in declaration order.
    pub expected: Vec<&'static str>,
}

/// The one of `choices` spelled exactly `given` (case matters: profiles are written one way).
pub fn keyword<T: Copy>(
    given: &str,
    choices: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, UnknownKeyword> {
    choices
        .iter()
        .copied()
        .find(|c| name(*c) == given)
        .ok_or_else(|| UnknownKeyword {
            given: given.to_string(),
            expected: choices.iter().map(|c| name(*c)).collect(),
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Modbus,
    Serial,
    Lora,
    /// EV chargers over OCPP 1.6J (SPEC §9): points only, the mapping is built in.
    Ocpp,
    /// IP equipment read over SNMP (SPEC §11): each point names its OID.
    Snmp,
    /// Reachability only (SPEC §11): `reachable` and `rtt`.
    Reach,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Modbus,
        Protocol::Serial,
        Protocol::Lora,
        Protocol::Ocpp,
        Protocol::Snmp,
        Protocol::Reach,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Serial => "serial",
            Protocol::Lora => "lora",
            Protocol::Ocpp => "ocpp",
            Protocol::Snmp => "snmp",
            Protocol::Reach => "reach",
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
    pub const ALL: [Table; 4] = [Table::Coil, Table::Discrete, Table::Input, Table::Holding];

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
    /// The most registers (or bits, for bit tables) one read request may cover.
    pub fn max_per_read(self) -> u16 {
        if self.is_bits() {
            MODBUS_MAX_READ_BITS
        } else {
            MODBUS_MAX_READ_REGISTERS
        }
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
    pub const ALL: [PointType; 10] = [
        PointType::Bool,
        PointType::U16,
        PointType::I16,
        PointType::U32,
        PointType::I32,
        PointType::U64,
        PointType::I64,
        PointType::F32,
        PointType::F64,
        PointType::String,
    ];

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

impl WordOrder {
    pub const ALL: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Dcba,
        WordOrder::Badc,
        WordOrder::Cdab,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Dcba => "DCBA",
            WordOrder::Badc => "BADC",
            WordOrder::Cdab => "CDAB",
        }
    }
}

impl FromStr for Protocol {
    type Err = UnknownKeyword;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        keyword(s, &Protocol::ALL, Protocol::as_str)
    }
}

/// `coil`, `discrete`, `input`, `holding`.
impl FromStr for Table {
    type Err = UnknownKeyword;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        keyword(s, &Table::ALL, Table::as_str)
    }
}

/// `bool`, `u16` ... `f64`, `string`.
impl FromStr for PointType {
    type Err = UnknownKeyword;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        keyword(s, &PointType::ALL, PointType::as_str)
    }
}

/// `ABCD`, `DCBA`, `BADC`, `CDAB` (upper case, as profiles write them).
impl FromStr for WordOrder {
    type Err = UnknownKeyword;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        keyword(s, &WordOrder::ALL, WordOrder::as_str)
    }
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
    /// `scale` and `offset` as decimals, worked out on first use ([`PointDef::scaling`]).
    pub scaling: ScalingCache,
}

/// What [`PointDef::scaling`] worked out. A cache, not part of the point: two points are
/// equal whether or not either has been decoded yet (a reload compares them).
#[derive(Debug, Clone, Default)]
pub struct ScalingCache(std::sync::OnceLock<Scaling>);

impl PartialEq for ScalingCache {
    fn eq(&self, _: &ScalingCache) -> bool {
        true
    }
}

impl PointDef {
    /// A read-only point published as read: no scale or offset, deadband, limits or
    /// labels (the gateway's own points, `probe`'s ad-hoc reads).
    pub fn plain(
        name: String,
        unit: Option<String>,
        ty: PointType,
        reg: Option<RegisterRef>,
    ) -> PointDef {
        PointDef {
            name,
            unit,
            ty,
            reg,
            scale: 1.0,
            offset: 0.0,
            deadband: None,
            writable: false,
            min: None,
            max: None,
            values: None,
            scaling: Default::default(),
        }
    }

    /// `scale` and `offset` as decimals: worked out on first use and kept (a point whose
    /// `scale` or `offset` was changed since gets them worked out again).
    pub fn scaling(&self) -> Scaling {
        let kept = *self
            .scaling
            .0
            .get_or_init(|| Scaling::of(self.scale, self.offset));
        if kept.is_for(self.scale, self.offset) {
            kept
        } else {
            Scaling::of(self.scale, self.offset)
        }
    }
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
    /// The `[lora]` section of a LoRa profile, validated and with its script compiled.
    pub lora: Option<LoraSpec>,
    /// The OIDs and `[snmp]` section of an SNMP profile.
    pub snmp: Option<SnmpSpec>,
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

/// The validated `[lora]` section of a LoRa profile (SPEC §3).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// The compiled script: `decode_uplink(fport, bytes)`, and `encode_downlink(point,
    /// value)` when a point is writable.
    pub script: crate::script::Script,
}

/// The OIDs of an SNMP profile's points and its `[snmp]` section (SPEC §11).
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpSpec {
    /// One per point, by index: the OID template (`{index}` not yet substituted), None
    /// for the gateway's own points (`power_cycle`, `reachable`, `rtt`).
    pub oids: Vec<Option<String>>,
    /// Seconds between the two SETs of a `power_cycle`.
    pub cycle_off_s: u64,
}

impl Profile {
    pub fn point(&self, name: &str) -> Option<(usize, &PointDef)> {
        self.points.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

pub type ProfileRef = Arc<Profile>;

#[cfg(test)]
mod tests {
    //! The keyword enums parse exactly the spelling they print, and a wrong word is
    //! answered with every accepted one (the message `check` shows profile authors).
    use super::*;

    #[test]
    fn every_keyword_parses_back_from_its_own_spelling() {
        for t in Table::ALL {
            assert_eq!(t.as_str().parse(), Ok(t));
        }
        for ty in PointType::ALL {
            assert_eq!(ty.as_str().parse(), Ok(ty));
        }
        for o in WordOrder::ALL {
            assert_eq!(o.as_str().parse(), Ok(o));
        }
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
    }

    #[test]
    fn a_wrong_keyword_names_every_choice_and_case_matters() {
        let e = "flash".parse::<Table>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'flash' is not one of: coil, discrete, input, holding"
        );
        assert!("abcd".parse::<WordOrder>().is_err());
        assert!("U16".parse::<PointType>().is_err());
    }

    #[test]
    fn bit_tables_read_more_per_request_than_register_tables() {
        assert_eq!(Table::Coil.max_per_read(), MODBUS_MAX_READ_BITS);
        assert_eq!(Table::Discrete.max_per_read(), MODBUS_MAX_READ_BITS);
        assert_eq!(Table::Input.max_per_read(), MODBUS_MAX_READ_REGISTERS);
        assert_eq!(Table::Holding.max_per_read(), MODBUS_MAX_READ_REGISTERS);
    }
}
