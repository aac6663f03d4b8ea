//! OCPP-J framing (OCPP 1.6J §4): `[2, id, action, payload]` calls, `[3, id, payload]`
//! results, `[4, id, code, description, details]` errors. Pure: text in, typed frames out.
//!
//! Lenient where chargers are sloppy: a numeric message id is taken as its text. Anything
//! else that is not a frame is a [`Malformed`] carrying what the CALLERROR needs (the id
//! when one could be read, the OCPP error code, a description).

use serde_json::{Value, json};

/// Largest text frame accepted from a charger (bytes); longer frames are refused by the
/// WebSocket layer. MeterValues of a busy three-phase charger stay well below 16 KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call {
        id: String,
        action: String,
        payload: Value,
    },
    Result {
        id: String,
        payload: Value,
    },
    Error {
        id: String,
        code: String,
        description: String,
    },
}

/// A frame that cannot be handled, with what the CALLERROR answer needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct Malformed {
    /// The message id when one could be read ("-1" otherwise, as OCPP-J suggests).
    pub id: String,
    /// `FormationViolation`, `NotImplemented`, `PropertyConstraintViolation`…
    pub code: &'static str,
    pub description: String,
}

impl Malformed {
    pub fn new(id: &str, code: &'static str, description: impl Into<String>) -> Malformed {
        Malformed {
            id: id.to_string(),
            code,
            description: description.into(),
        }
    }

    /// The CALLERROR text answering this frame.
    pub fn to_text(&self) -> String {
        error(&self.id, self.code, &self.description)
    }
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= 36 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Frame, Malformed> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Malformed::new("-1", "FormationViolation", format!("not JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(Malformed::new(
            "-1",
            "FormationViolation",
            "an OCPP-J frame is a JSON array",
        ));
    };
    let id = items.get(1).and_then(id_of);
    let bad = |what: &str| {
        Malformed::new(
            id.as_deref().unwrap_or("-1"),
            "FormationViolation",
            what.to_string(),
        )
    };
    let Some(id) = id.clone() else {
        return Err(bad("missing or invalid message id"));
    };
    match items.first().and_then(Value::as_u64) {
        Some(2) => match (items.len(), items.get(2), items.get(3)) {
            (4, Some(Value::String(action)), Some(p @ Value::Object(_))) => Ok(Frame::Call {
                id,
                action: action.clone(),
                payload: p.clone(),
            }),
            _ => Err(bad("a CALL is [2, id, action, {payload}]")),
        },
        Some(3) => match (items.len(), items.get(2)) {
            (3, Some(p @ Value::Object(_))) => Ok(Frame::Result {
                id,
                payload: p.clone(),
            }),
            _ => Err(bad("a CALLRESULT is [3, id, {payload}]")),
        },
        Some(4) => match (items.get(2), items.get(3)) {
            (Some(Value::String(code)), description) if items.len() >= 4 => Ok(Frame::Error {
                id,
                code: code.clone(),
                description: description
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => Err(bad("a CALLERROR is [4, id, code, description, {details}]")),
        },
        _ => Err(bad("unknown message type (2, 3 or 4 expected)")),
    }
}

pub fn call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

pub fn result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

pub fn error(id: &str, code: &str, description: &str) -> String {
    json!([4, id, code, description, {}]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_parses_with_its_action_and_payload() {
        let f = parse(r#"[2,"19223201","BootNotification",{"chargePointVendor":"X"}]"#);
        assert_eq!(
            f,
            Ok(Frame::Call {
                id: "19223201".into(),
                action: "BootNotification".into(),
                payload: json!({"chargePointVendor":"X"}),
            })
        );
    }

    #[test]
    fn a_numeric_message_id_is_taken_as_text() {
        assert!(matches!(parse(r#"[3,42,{}]"#), Ok(Frame::Result { id, .. }) if id == "42"));
    }

    #[test]
    fn garbage_gives_a_formation_violation_that_keeps_the_id_when_readable() {
        let e = parse("hello").unwrap_err();
        assert_eq!((e.id.as_str(), e.code), ("-1", "FormationViolation"));
        let e = parse(r#"[2,"7","Heartbeat"]"#).unwrap_err();
        assert_eq!((e.id.as_str(), e.code), ("7", "FormationViolation"));
        let e = parse(r#"[9,"8",{}]"#).unwrap_err();
        assert_eq!(e.id, "8");
        assert!(parse("{}").is_err() && parse("[]").is_err() && parse("[2]").is_err());
    }

    #[test]
    fn errors_parse_and_encode_as_ocpp_j() {
        let f = parse(r#"[4,"1","NotImplemented","nope",{}]"#).unwrap();
        assert_eq!(
            f,
            Frame::Error {
                id: "1".into(),
                code: "NotImplemented".into(),
                description: "nope".into()
            }
        );
        assert_eq!(
            error("1", "NotImplemented", "nope"),
            r#"[4,"1","NotImplemented","nope",{}]"#
        );
        assert_eq!(result("1", &json!({})), r#"[3,"1",{}]"#);
    }
}
