//! A `[[point]]` table as a profile file writes it, before any check: a leaf that the
//! point checks (`points.rs`), the register checks (`registers.rs`) and the vocabulary
//! checks (`vocab.rs`) all read.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A `[[point]]` table as written; every field optional so each absence is reported.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoint {
    pub name: Option<String>,
    pub unit: Option<String>,
    pub table: Option<String>,
    pub address: Option<i64>,
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub order: Option<String>,
    pub bit: Option<i64>,
    pub length: Option<i64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub deadband: Option<f64>,
    pub writable: Option<bool>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub values: Option<BTreeMap<String, String>>,
}
