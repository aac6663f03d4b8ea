//! The `[serial]` section of a serial profile (SPEC §3, §8 "Serial profiles"): exactly one
//! framing, the encoding `decode` receives, the poll requests, reply handling, and the
//! script, compiled here so `check` reports its syntax errors with their file and line.

use super::report::{Report, WRITABLE};
use super::{PointDef, SerialEncoding, SerialFraming, SerialSpec};
use serde::Deserialize;

const SERIAL_KEYS: &[&str] = &[
    "delimiter",
    "length",
    "idle_ms",
    "encoding",
    "poll",
    "script",
    "expect_reply",
    "max_frame",
    "response_timeout_ms",
];
/// Bounds of `max_frame` (and of a fixed `length`): a serial frame, not a file transfer.
const MAX_SERIAL_FRAME: i64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerialSection {
    delimiter: Option<String>,
    length: Option<i64>,
    idle_ms: Option<i64>,
    encoding: Option<String>,
    poll: Option<Vec<String>>,
    script: Option<String>,
    expect_reply: Option<bool>,
    max_frame: Option<i64>,
    response_timeout_ms: Option<i64>,
}

/// Validates `[serial]` and compiles its script (beside the profile file), so `check`
/// reports script syntax errors with their file and line.
pub(super) fn check_serial(
    r: &mut Report,
    mut table: toml::Table,
    points: &[PointDef],
) -> Option<SerialSpec> {
    r.unknown_keys(&mut table, SERIAL_KEYS, "serial.");
    let raw: RawSerialSection = r.raw(table, "serial.")?;
    let in_range = |r: &mut Report, key: &str, v: i64, lo: i64, hi: i64| {
        let ok = (lo..=hi).contains(&v);
        if !ok {
            r.err(
                format!("serial.{key}"),
                format!("must be within {lo}..={hi}, got {v}"),
            );
        }
        ok.then_some(v)
    };
    let max_frame = match raw.max_frame {
        Some(v) => in_range(r, "max_frame", v, 1, MAX_SERIAL_FRAME).map(|v| v as usize),
        None => Some(256),
    };
    let framing = match (&raw.delimiter, raw.length, raw.idle_ms) {
        (Some(d), None, None) if !d.is_empty() && d.len() <= 8 => {
            Some(SerialFraming::Delimiter(d.as_bytes().to_vec()))
        }
        (Some(_), None, None) => {
            r.err("serial.delimiter", "must be 1 to 8 bytes");
            None
        }
        (None, Some(n), None) => {
            in_range(r, "length", n, 1, MAX_SERIAL_FRAME).map(|n| SerialFraming::Length(n as usize))
        }
        (None, None, Some(ms)) => {
            in_range(r, "idle_ms", ms, 1, 10_000).map(|ms| SerialFraming::IdleMs(ms as u64))
        }
        _ => {
            r.err(
                "serial",
                "needs exactly one framing: delimiter = \"\\r\\n\", length = N or idle_ms = N",
            );
            None
        }
    };
    let encoding = match raw.encoding.as_deref() {
        None if raw.delimiter.is_some() => Some(SerialEncoding::Text),
        None => Some(SerialEncoding::Binary),
        Some("text") => Some(SerialEncoding::Text),
        Some("binary") => Some(SerialEncoding::Binary),
        Some(other) => {
            r.err(
                "serial.encoding",
                format!("unknown value '{other}', expected one of: text, binary"),
            );
            None
        }
    };
    if let (Some(SerialFraming::Length(n)), Some(max)) = (&framing, max_frame)
        && *n > max
    {
        r.err(
            "serial.length",
            format!("{n} is larger than max_frame ({max})"),
        );
    }
    let response_timeout_ms = match raw.response_timeout_ms {
        Some(v) => Some(in_range(r, "response_timeout_ms", v, 1, 60_000)? as u64),
        None => None,
    };
    let Some(script_name) = raw.script else {
        r.err(
            "serial.script",
            "missing: the Rhai script that defines fn decode(frame)",
        );
        return None;
    };
    let script = r.script("serial.script", &script_name)?;
    let file = (script_name.as_str(), &script);
    r.require_fn("serial.script", file, "decode", &["frame"], "");
    if points.iter().any(|p| p.writable) {
        let params = ["point", "value", "address"];
        r.require_fn("serial.script", file, "encode", &params, WRITABLE);
    }
    Some(SerialSpec {
        framing: framing?,
        encoding: encoding?,
        poll: raw.poll.unwrap_or_default(),
        script,
        expect_reply: raw.expect_reply.unwrap_or(true),
        max_frame: max_frame?,
        response_timeout_ms,
    })
}
