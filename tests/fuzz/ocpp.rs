//! OCPP-J frames from a charger: the frame parser, the central system's answer and the
//! telemetry tap, on mutated frames of every charger→CS message polegate handles. A
//! refusal is a typed `Malformed` whose CALLERROR text is a valid OCPP-J error frame
//! (the connection counts it as `ocpp_malformed`, tests/ocpp_hostile.rs).

use super::support;
use polegate::southbound::ocpp::frame::{self, Frame};
use polegate::southbound::ocpp::map::{self, ChargePoint, Tap};
use proptest::prelude::*;
use serde_json::Value as Json;

const SEEDS: [&str; 10] = [
    r#"[2,"1","BootNotification",{"chargePointVendor":"ACME","chargePointModel":"AC22","firmwareVersion":"1.2"}]"#,
    r#"[2,"2","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]"#,
    r#"[2,"3","MeterValues",{"connectorId":1,"transactionId":7,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":"1234.5","measurand":"Energy.Active.Import.Register","unit":"Wh"},{"value":7.2,"measurand":"Power.Active.Import","unit":"kW"},{"value":"16","measurand":"Current.Import","phase":"L1"}]}]}]"#,
    r#"[2,"4","StartTransaction",{"connectorId":1,"idTag":"TAG1","meterStart":1000,"timestamp":"2026-01-01T00:00:00Z"}]"#,
    r#"[2,"5","StopTransaction",{"transactionId":7,"idTag":"TAG1","meterStop":5000,"timestamp":"2026-01-01T01:00:00Z"}]"#,
    r#"[2,"6","Heartbeat",{}]"#,
    r#"[2,"7","Authorize",{"idTag":"TAG1"}]"#,
    r#"[3,"pg1-1",{"status":"Accepted"}]"#,
    r#"[4,"pg1-2","NotSupported","no",{}]"#,
    r#"[2,8,"DataTransfer",{"vendorId":"x"}]"#,
];

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn a_mutated_ocpp_frame_is_answered_tapped_or_refused_with_a_valid_callerror(
        seed in 0..SEEDS.len(),
        ops in support::ops(),
        accept in any::<bool>(),
    ) {
        let text = support::mutate_text(SEEDS[seed], &ops, &SEEDS);
        let mut cp = ChargePoint::default();
        match frame::parse(&text) {
            Err(m) => {
                // The CALLERROR is itself a frame: [4, id, code, description, {}].
                let v: Json = serde_json::from_str(&m.to_text()).expect("CALLERROR is JSON");
                prop_assert_eq!(v[0].as_u64(), Some(4));
                prop_assert!(v[1].as_str().is_some_and(|id| !id.is_empty() && id.len() <= 36));
                prop_assert!(matches!(m.code, "FormationViolation" | "NotImplemented" | "PropertyConstraintViolation" | "TypeConstraintViolation" | "ProtocolError"));
                // Bounded: the description names what was wrong, not the whole frame.
                prop_assert!(m.to_text().len() <= 512, "{} bytes", m.to_text().len());
            }
            Ok(Frame::Call { id, action, payload }) => {
                prop_assert!(!id.is_empty() && id.len() <= 36);
                let mut tx = 41;
                let mut next = || { tx += 1; tx };
                match map::answer(&action, &payload, "2026-01-01T00:00:00Z", 300, &|_| accept, &mut next) {
                    Ok(conf) => {
                        prop_assert!(conf.is_object());
                        let reply: Json = serde_json::from_str(&frame::result(&id, &conf)).expect("CALLRESULT");
                        prop_assert_eq!(reply[0].as_u64(), Some(3));
                        match cp.tap(&action, &payload, &conf) {
                            Ok(taps) => {
                                let points: usize = taps.iter().map(|t| match t {
                                    Tap::Points { points, .. } => points.len(),
                                    Tap::Booted(meta) => meta.len(),
                                }).sum();
                                // Never more points than the frame has bytes.
                                prop_assert!(points <= text.len() / 4, "{points} points from {} bytes", text.len());
                            }
                            Err(m) => prop_assert!(!m.description.is_empty()),
                        }
                        prop_assert!(cp.open.len() <= 1);
                    }
                    Err(m) => {
                        prop_assert!(matches!(m.code, "FormationViolation" | "NotImplemented"));
                        prop_assert!(m.description.len() <= 256 + action.len());
                    }
                }
            }
            Ok(Frame::Result { id, payload }) => {
                prop_assert!(!id.is_empty() && payload.is_object());
            }
            Ok(Frame::Error { id, .. }) => prop_assert!(!id.is_empty()),
        }
        if ops.is_empty() {
            prop_assert!(frame::parse(&text).is_ok(), "every seed is a frame");
        }
    }

    #[test]
    fn random_text_is_never_an_ocpp_frame_by_accident(text in "\\PC{0,80}") {
        if let Err(m) = frame::parse(&text) {
            prop_assert!(m.to_text().starts_with("[4,"));
        }
    }
}
