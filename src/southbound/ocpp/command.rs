//! MQTT commands on a connector device → OCPP 1.6 CS→charger calls, and the charger's
//! answers → ok or the named refusal (SPEC §9 "Commands"). Pure.

use crate::model::Value;
use crate::model::command::Refusal;
use serde_json::{Value as Json, json};

/// The charging profile id polegate uses for connector N's current cap: stable, so a new
/// cap replaces the previous one instead of stacking (`PROFILE_ID_BASE + N`).
pub const PROFILE_ID_BASE: i64 = 7100;

/// Builds the call for one point write. `open_tx` is the connector's running transaction.
pub fn build(
    point: &str,
    value: &Value,
    connector: u32,
    open_tx: Option<i64>,
) -> Result<(&'static str, Json), Refusal> {
    let truthy = || matches!(value, Value::Bool(true) | Value::Int(1));
    match point {
        "enabled" => {
            let on = match value {
                Value::Bool(b) => *b,
                Value::Int(i) => *i != 0,
                _ => return Err(Refusal::WrongType("enabled takes true or false".into())),
            };
            let kind = if on { "Operative" } else { "Inoperative" };
            Ok((
                "ChangeAvailability",
                json!({"connectorId": connector, "type": kind}),
            ))
        }
        "max_current" => {
            let Some(limit) = value.as_f64().filter(|v| v.is_finite() && *v >= 0.0) else {
                let e = "max_current takes a number of amperes >= 0";
                return Err(Refusal::OutOfRange(e.into()));
            };
            Ok((
                "SetChargingProfile",
                json!({
                    "connectorId": connector,
                    "csChargingProfiles": {
                        "chargingProfileId": PROFILE_ID_BASE + i64::from(connector),
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": {
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]
                        }
                    }
                }),
            ))
        }
        "x_remote_start" => match value {
            Value::Text(tag) if !tag.is_empty() && tag.len() <= 20 => Ok((
                "RemoteStartTransaction",
                json!({"connectorId": connector, "idTag": tag}),
            )),
            _ => Err(Refusal::WrongType(
                "x_remote_start takes the idTag to start with (1-20 characters)".into(),
            )),
        },
        "x_remote_stop" if truthy() => match open_tx {
            Some(tx) => Ok(("RemoteStopTransaction", json!({"transactionId": tx}))),
            None => Err(Refusal::WrongState("no transaction running".into())),
        },
        "x_unlock" if truthy() => Ok(("UnlockConnector", json!({"connectorId": connector}))),
        "x_remote_stop" | "x_unlock" => Err(Refusal::WrongType(format!("{point} takes true"))),
        "x_reset" => match value {
            Value::Text(t) if t == "soft" => Ok(("Reset", json!({"type": "Soft"}))),
            Value::Text(t) if t == "hard" => Ok(("Reset", json!({"type": "Hard"}))),
            _ => Err(Refusal::WrongType(
                "x_reset takes \"soft\" or \"hard\"".into(),
            )),
        },
        other => Err(Refusal::Unsupported(format!(
            "point '{other}' cannot be written over OCPP"
        ))),
    }
}

/// The charger's CALLRESULT to `action` → Ok, or an error naming its answer.
pub fn outcome(action: &str, conf: &Json) -> Result<(), Refusal> {
    let status = conf.get("status").and_then(Json::as_str).unwrap_or("");
    let ok = match action {
        "ChangeAvailability" => matches!(status, "Accepted" | "Scheduled"),
        "UnlockConnector" => status == "Unlocked",
        _ => status == "Accepted",
    };
    if ok {
        Ok(())
    } else if status.is_empty() {
        let e = format!("charger answered {action} without a status");
        Err(Refusal::DeviceError(e))
    } else {
        let e = format!("charger answered {action} with {status}");
        Err(Refusal::DeviceError(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_cap_is_an_absolute_default_profile_with_one_period_in_amperes() {
        let (action, p) = build("max_current", &Value::Float(16.0), 2, None).unwrap();
        assert_eq!(action, "SetChargingProfile");
        let cp = &p["csChargingProfiles"];
        assert_eq!(p["connectorId"], 2);
        assert_eq!(cp["chargingProfileId"], PROFILE_ID_BASE + 2);
        assert_eq!(cp["chargingProfilePurpose"], "TxDefaultProfile");
        assert_eq!(cp["chargingProfileKind"], "Absolute");
        assert_eq!(cp["stackLevel"], 0);
        assert_eq!(cp["chargingSchedule"]["chargingRateUnit"], "A");
        assert_eq!(
            cp["chargingSchedule"]["chargingSchedulePeriod"],
            json!([{"startPeriod": 0, "limit": 16.0}])
        );
    }

    #[test]
    fn each_command_names_its_ocpp_call() {
        let b = |p: &str, v: Value| build(p, &v, 1, Some(5)).map(|(a, j)| (a, j.to_string()));
        assert_eq!(
            b("enabled", Value::Bool(false)).unwrap().1,
            r#"{"connectorId":1,"type":"Inoperative"}"#
        );
        assert_eq!(
            b("x_remote_start", Value::Text("TAG1".into())).unwrap().0,
            "RemoteStartTransaction"
        );
        assert_eq!(
            b("x_remote_stop", Value::Bool(true)).unwrap().1,
            r#"{"transactionId":5}"#
        );
        assert_eq!(
            b("x_reset", Value::Text("hard".into())).unwrap().1,
            r#"{"type":"Hard"}"#
        );
        assert_eq!(
            b("x_unlock", Value::Bool(true)).unwrap().0,
            "UnlockConnector"
        );
        assert!(b("x_reset", Value::Text("warm".into())).is_err());
        assert_eq!(
            build("x_remote_stop", &Value::Bool(true), 1, None),
            Err(Refusal::WrongState("no transaction running".into()))
        );
    }

    #[test]
    fn refusals_are_named_and_scheduled_availability_is_ok() {
        assert_eq!(
            outcome("ChangeAvailability", &json!({"status":"Scheduled"})),
            Ok(())
        );
        assert_eq!(
            outcome("UnlockConnector", &json!({"status":"Unlocked"})),
            Ok(())
        );
        assert_eq!(
            outcome("SetChargingProfile", &json!({"status":"NotSupported"})),
            Err(Refusal::DeviceError(
                "charger answered SetChargingProfile with NotSupported".into()
            ))
        );
        assert_eq!(
            outcome("Reset", &json!({"status":"Rejected"})),
            Err(Refusal::DeviceError(
                "charger answered Reset with Rejected".into()
            ))
        );
    }
}
