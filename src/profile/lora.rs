//! The `[lora]` section of a LoRa profile (SPEC §3): `script = "name.rhai"`, a file beside
//! the profile. The script is compiled here, once, so `check` reports its syntax errors
//! with file and line, and a missing `decode_uplink` (or `encode_downlink` when a point is
//! writable); the LoRa driver runs the compiled script it finds in the [`LoraSpec`].

use super::report::{Report, WRITABLE};
use super::{LoraSpec, PointDef};

pub(super) fn check_lora(
    r: &mut Report<'_>,
    lora: Option<&toml::Table>,
    points: &[PointDef],
) -> Option<LoraSpec> {
    let Some(t) = lora else {
        r.err(
            "lora",
            "is required for a lora profile: [lora] script = \"name.rhai\"",
        );
        return None;
    };
    for k in t.keys().filter(|k| k.as_str() != "script") {
        r.err(format!("lora.{k}"), "unknown key; expected script");
    }
    let script_name = match t.get("script").map(|v| v.as_str()) {
        None => {
            r.err(
                "lora.script",
                "is required: the Rhai file defining decode_uplink",
            );
            return None;
        }
        Some(None) => {
            r.err("lora.script", "must be a string (a file name)");
            return None;
        }
        Some(Some(name)) => name,
    };
    let script = r.script("lora.script", script_name)?;
    let file = (script_name, &script);
    r.require_fn(
        "lora.script",
        file,
        "decode_uplink",
        &["fport", "bytes"],
        "",
    );
    if points.iter().any(|p| p.writable) {
        let params = ["point", "value"];
        r.require_fn("lora.script", file, "encode_downlink", &params, WRITABLE);
    }
    Some(LoraSpec { script })
}
