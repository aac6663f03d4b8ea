//! LoRa profile scripts (SPEC §3): `fn decode_uplink(fport, bytes)` returns a map of
//! point → value (or `()` to ignore the frame); `fn encode_downlink(point, value)`
//! returns `#{ fport: N, bytes: blob }`. Pure apart from the script engine's sandbox.

use crate::model::Value;
use crate::profile::ProfileRef;
use crate::script::{Engine, Script, value_to_dynamic};
use crate::southbound::serial::decode::check_value;

/// A LoRa profile's compiled script (from its [`crate::profile::LoraSpec`]) plus the
/// indexes of the gateway-added points.
#[derive(Debug, Clone)]
pub struct LoraCodec {
    engine: Engine,
    script: Script,
    profile: ProfileRef,
    pub rssi: Option<usize>,
    pub snr: Option<usize>,
}

impl LoraCodec {
    /// The codec of a LoRa profile, running the script its loader compiled; `None` when
    /// `profile` has no `[lora]` section (it is not a LoRa profile).
    pub fn new(engine: &Engine, profile: &ProfileRef) -> Option<LoraCodec> {
        let spec = profile.lora.as_ref()?;
        Some(LoraCodec {
            engine: engine.clone(),
            script: spec.script.clone(),
            rssi: profile.point("rssi").map(|(i, _)| i),
            snr: profile.point("snr").map(|(i, _)| i),
            profile: profile.clone(),
        })
    }

    /// Decodes one application payload into (point index, value); keys that are not
    /// points of the profile are an error naming them.
    pub fn decode(&self, fport: u8, bytes: &[u8]) -> Result<Vec<(usize, Value)>, String> {
        let d = self
            .engine
            .call(
                &self.script,
                "decode_uplink",
                (i64::from(fport), bytes.to_vec()),
            )
            .map_err(|e| e.to_string())?;
        if d.is_unit() {
            return Ok(vec![]);
        }
        let Some(map) = d.try_cast::<rhai::Map>() else {
            return Err("decode_uplink must return a map of point -> value, or ()".into());
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some((i, def)) = self.profile.point(k.as_str()) else {
                return Err(format!(
                    "decode_uplink returned '{k}', not a point of the profile"
                ));
            };
            // The same check as serial scripts' values (SPEC §8 `type`).
            match check_value(def, &v) {
                Ok((v, _)) => out.push((i, v)),
                Err(e) => return Err(format!("decode_uplink returned {k}: {e}")),
            }
        }
        Ok(out)
    }

    /// Encodes one point write as (FPort, FRMPayload).
    pub fn encode(&self, point: &str, value: &Value) -> Result<(u8, Vec<u8>), String> {
        if !self.script.has_fn("encode_downlink", 2) {
            return Err("the profile's script defines no fn encode_downlink(point, value)".into());
        }
        let d = self
            .engine
            .call(
                &self.script,
                "encode_downlink",
                (point.to_string(), value_to_dynamic(value)),
            )
            .map_err(|e| e.to_string())?;
        let bad = || "encode_downlink must return #{ fport: 1..=223, bytes: blob }".to_string();
        let map = d.try_cast::<rhai::Map>().ok_or_else(bad)?;
        let fport = map
            .get("fport")
            .and_then(|p| p.as_int().ok())
            .filter(|p| (1..=223).contains(p))
            .ok_or_else(bad)? as u8;
        let bytes = map
            .get("bytes")
            .and_then(|b| b.clone().try_cast::<rhai::Blob>())
            .ok_or_else(bad)?;
        if bytes.len() > 51 {
            return Err(format!(
                "encode_downlink returned {} bytes; at most 51 fit every EU868 data rate",
                bytes.len()
            ));
        }
        Ok((fport, bytes))
    }
}

#[cfg(test)]
mod tests {
    //! The shipped LoRa lamp profile decodes and encodes through its script.
    use super::*;
    use crate::profile::Registry;
    use std::path::PathBuf;

    fn codec() -> LoraCodec {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let (reg, errors) = Registry::load(&[dir]);
        assert!(errors.is_empty(), "{errors:?}");
        let p = reg.get("generic-lamp-lora").expect("profile").clone();
        LoraCodec::new(&Engine::new(), &p).expect("a LoRa profile")
    }

    #[test]
    fn the_lamp_script_decodes_an_uplink_into_profile_points() {
        let c = codec();
        let v = c
            .decode(2, &[0b011, 80, 0x02, 0x1c, 0, 0, 0x30, 0x39, 0xfb])
            .unwrap();
        let get = |n: &str| {
            let (i, _) = c.profile.point(n).unwrap();
            v.iter().find(|(j, _)| *j == i).map(|(_, v)| v.clone())
        };
        assert_eq!(get("on"), Some(Value::Bool(true)));
        assert_eq!(get("lamp_failure"), Some(Value::Bool(true)));
        assert_eq!(get("dim_level"), Some(Value::Int(80)));
        assert_eq!(get("power"), Some(Value::Float(54.0)));
        assert_eq!(get("energy"), Some(Value::Int(12345)));
        assert_eq!(get("temperature"), Some(Value::Int(-5)));
        assert!(c.decode(3, &[1]).unwrap().is_empty());
        assert!(c.rssi.is_some() && c.snr.is_some());
    }

    #[test]
    fn a_value_of_the_wrong_type_for_its_point_is_refused_like_a_serial_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.rhai"),
            "fn decode_uplink(fport, bytes) { if fport == 1 { #{ dim_level: \"eighty\" } } else { #{ dim_level: 70000 } } }",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t.toml"),
            "name = \"t\"\nkind = \"lamp\"\nprotocol = \"lora\"\n[lora]\nscript = \"t.rhai\"\n\
             [[point]]\nname = \"dim_level\"\nunit = \"%\"\ntype = \"u16\"\n",
        )
        .unwrap();
        let (reg, errors) = Registry::load(&[dir.path().to_path_buf()]);
        assert!(errors.is_empty(), "{errors:?}");
        let c = LoraCodec::new(&Engine::new(), reg.get("t").unwrap()).unwrap();
        let e = c.decode(1, &[]).unwrap_err();
        assert!(e.contains("dim_level") && e.contains("is not a u16"), "{e}");
        let e = c.decode(2, &[]).unwrap_err();
        assert!(e.contains("70000 does not fit a u16"), "{e}");
    }

    #[test]
    fn the_lamp_script_encodes_downlinks() {
        let c = codec();
        assert_eq!(
            c.encode("dim_level", &Value::Int(40)).unwrap(),
            (10, vec![1, 40])
        );
        assert_eq!(
            c.encode("on", &Value::Bool(false)).unwrap(),
            (10, vec![2, 0])
        );
        assert!(c.encode("power", &Value::Int(1)).is_err());
    }
}
