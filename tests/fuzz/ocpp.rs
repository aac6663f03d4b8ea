//! OCPP-J frames from a charger: the frame parser, the central system's answer and the
//! telemetry tap, on mutated frames of every charger→CS message polegate handles, alone
//! and through a charger's WebSocket session (`conn::serve` over an in-memory stream). A
//! refusal is a typed `Malformed` whose CALLERROR text is a valid OCPP-J error frame,
//! and each one the session sends is one `ocpp_malformed`.

use super::support;
use futures_util::{SinkExt, StreamExt};
use polegate::buffer::{Queue, QueueOptions};
use polegate::ops::counters::Counters;
use polegate::pipeline::Input;
use polegate::southbound::ocpp::conn;
use polegate::southbound::ocpp::frame::{self, Frame};
use polegate::southbound::ocpp::hub::Hub;
use polegate::southbound::ocpp::map::{self, ChargePoint, Tap};
use polegate::southbound::ocpp::ws::ws_config;
use proptest::prelude::*;
use serde_json::Value as Json;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

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

/// One queue for the whole binary (the hub keeps transaction ids and open transactions
/// in its database); every case gets a fresh hub on it.
fn queue() -> &'static (tempfile::TempDir, Queue) {
    static Q: OnceLock<(tempfile::TempDir, Queue)> = OnceLock::new();
    Q.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(d.path(), QueueOptions::default()).expect("queue");
        (d, q)
    })
}

fn hub(counters: Arc<Counters>, out: mpsc::Sender<Input>) -> Arc<Hub> {
    let (_, q) = queue();
    Arc::new(crate::ocpp_hub::one_charger_hub(q, out, counters))
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn a_charger_session_of_mutated_frames_gets_an_answer_or_a_counted_callerror_per_call(
        frames in proptest::collection::vec((0..SEEDS.len(), support::ops()), 1..6),
    ) {
        let texts: Vec<String> = frames
            .iter()
            .map(|(i, ops)| support::mutate_text(SEEDS[*i], ops, &SEEDS))
            .collect();
        let counters = Arc::new(Counters::default());
        let rt = support::paused_runtime();
        let answers = rt.block_on(async {
            let (out_tx, mut out_rx) = mpsc::channel(64);
            let drain = tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
            let (a, b) = tokio::io::duplex(1 << 17);
            let server = WebSocketStream::from_raw_socket(a, Role::Server, Some(ws_config())).await;
            let mut charger = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
            let cancel = CancellationToken::new();
            let conn = tokio::spawn(conn::serve(
                hub(counters.clone(), out_tx),
                "CP1".to_string(),
                server,
                None::<WebSocketStream<tokio::io::DuplexStream>>,
                cancel.clone(),
            ));
            let mut answers = Vec::new();
            for t in &texts {
                charger.send(Message::text(t.clone())).await.expect("send");
                // A call is answered; results and errors to nothing pending are not.
                if matches!(frame::parse(t), Ok(Frame::Result { .. } | Frame::Error { .. })) {
                    answers.push(None);
                    continue;
                }
                let a = tokio::time::timeout(Duration::from_secs(5), charger.next()).await;
                answers.push(match a {
                    Ok(Some(Ok(Message::Text(a)))) => Some(a.to_string()),
                    other => Some(format!("no answer: {other:?}")),
                });
            }
            cancel.cancel();
            let _ = conn.await;
            drain.abort();
            answers
        });
        let mut callerrors = 0u64;
        for (t, a) in texts.iter().zip(&answers) {
            let Some(a) = a else { continue };
            let v: Json = serde_json::from_str(a).map_err(|e| TestCaseError::fail(format!("{a}: {e}")))?;
            match v[0].as_u64() {
                Some(3) => {
                    let call = matches!(frame::parse(t), Ok(Frame::Call { .. }));
                    prop_assert!(call, "a CALLRESULT answers a call only");
                }
                Some(4) => callerrors += 1,
                _ => prop_assert!(false, "{} answering {}", a, t),
            }
        }
        // Every CALLERROR polegate sent for a frame is one ocpp_malformed.
        prop_assert_eq!(counters.ocpp_malformed.load(Relaxed), callerrors);
    }
}
