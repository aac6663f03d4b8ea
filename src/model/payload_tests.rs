//! Proves the payloads are valid JSON with the exact fields of SPEC §5, and that a queued
//! body closes into the same bytes whether delivered live or as historical backlog.
use super::*;
use serde_json::json;

fn parse(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).expect("valid JSON")
}

fn live(b: Body) -> Vec<u8> {
    b.publish(Delivery::Live)
}

#[test]
fn telemetry_has_the_contract_fields_and_numbers_keep_their_json_type() {
    let v80 = Value::Int(80);
    let p = Value::Float(54.5);
    let f = Value::Bool(false);
    let b = live(telemetry(
        7,
        1_795_886_665_123,
        "cab-1",
        "lamp-017",
        Kind::Lamp,
        &[("dim_level", &v80), ("power", &p), ("lamp_failure", &f)],
    ));
    assert_eq!(
        parse(&b),
        json!({"seq":7,"ts":"2026-11-28T17:24:25.123Z","gateway":"cab-1","device":"lamp-017",
               "kind":"lamp","points":{"dim_level":80,"power":54.5,"lamp_failure":false}})
    );
    assert!(String::from_utf8_lossy(&b).contains("\"dim_level\":80,"));
}

#[test]
fn state_is_a_birth_certificate_with_units_writability_ranges_and_meta() {
    let mut meta = serde_json::Map::new();
    meta.insert("pole".into(), json!("P-017"));
    let points = [BirthPoint {
        name: "dim_level",
        unit: Some("%"),
        writable: true,
        min: Some(0.0),
        max: Some(100.0),
    }];
    let b = live(state(
        1,
        0,
        "g",
        &Birth {
            device: "lamp-017",
            kind: Kind::Lamp,
            profile: "generic-lamp-modbus",
            online: false,
            reason: Some("timeout"),
            meta: &meta,
            points: &points,
        },
    ));
    assert_eq!(
        parse(&b),
        json!({"seq":1,"ts":"1970-01-01T00:00:00.000Z","gateway":"g","device":"lamp-017",
               "kind":"lamp","profile":"generic-lamp-modbus","state":"offline","reason":"timeout",
               "meta":{"pole":"P-017"},
               "points":{"dim_level":{"unit":"%","writable":true,"min":0,"max":100}}})
    );
}

#[test]
fn a_body_is_published_live_as_the_object_and_historical_with_the_flag_last() {
    let v = Value::Int(1);
    let b = telemetry(1, 0, "g", "d", Kind::Meter, &[("a", &v)]);
    let object = r#"{"seq":1,"ts":"1970-01-01T00:00:00.000Z","gateway":"g","device":"d","kind":"meter","points":{"a":1}"#;
    assert_eq!(b.as_open(), object.as_bytes());
    assert_eq!(
        b.clone().publish(Delivery::Live),
        format!("{object}}}").into_bytes()
    );
    let historical = b.publish(Delivery::Historical);
    assert_eq!(
        historical,
        format!("{object},\"historical\":true}}").into_bytes()
    );
    assert_eq!(parse(&historical)["historical"], true);
    assert_eq!(parse(&historical)["points"], json!({"a": 1}));
}

#[test]
fn a_complete_object_from_an_older_queue_reads_back_as_the_same_body() {
    let b = telemetry(3, 0, "g", "d", Kind::Lamp, &[]);
    let closed = b.clone().publish(Delivery::Live);
    assert_eq!(Body::from_closed(&closed), Some(b.clone()));
    assert_eq!(Body::from_open(b.as_open()), b);
    assert_eq!(Body::from_closed(b"not an object"), None);
}

#[test]
fn stats_and_status_are_valid_json_with_errors_per_link_and_per_device() {
    let links = vec![(
        "10.0.0.17:502".to_string(),
        vec![("modbus_timeout", 4), ("modbus_exception", 1)],
    )];
    let device_errors = vec![(
        "lamp-\"017\"".to_string(),
        vec![("modbus_timeout", 3), ("modbus_exception", 1)],
    )];
    let s = live(stats(
        3,
        0,
        "g",
        &StatsBody {
            uptime_s: 5,
            buffer_events: 1,
            buffer_bytes: 2,
            buffer_dropped: 0,
            published: 9,
            online: 2,
            offline: 1,
            errors: &[("modbus_timeout", 4)],
            links: &links,
            device_errors: &device_errors,
        },
    ));
    assert_eq!(parse(&s)["errors"], json!({"modbus_timeout": 4}));
    assert_eq!(
        parse(&s)["links"],
        json!({"10.0.0.17:502": {"modbus_timeout": 4, "modbus_exception": 1}})
    );
    assert_eq!(
        parse(&s)["device_errors"],
        json!({"lamp-\"017\"": {"modbus_timeout": 3, "modbus_exception": 1}})
    );
    assert_eq!(parse(&s)["devices"]["offline"], 1);
    assert_eq!(parse(&status(true, 0, 3, None))["devices"], 3);
    assert_eq!(parse(&status(true, 0, 3, None))["buffer"], "ok");
    let degraded = parse(&status(true, 0, 3, Some("No space left on device \"x\"")));
    assert_eq!(degraded["buffer"], "degraded");
    assert_eq!(degraded["buffer_error"], "No space left on device \"x\"");
}

#[test]
fn a_command_result_carries_its_id_read_back_points_and_error_with_its_code() {
    let ok = crate::model::command::CmdResult {
        device: "lamp-1".into(),
        id: Some("c-1".into()),
        ok: true,
        points: vec![("dim_level".into(), Value::Int(40))],
        error: None,
        status: Some("queued".into()),
        source: None,
    };
    assert_eq!(
        parse(&live(cmd_result(2, 0, "g", &ok))),
        json!({"seq":2,"ts":"1970-01-01T00:00:00.000Z","gateway":"g","device":"lamp-1",
               "id":"c-1","ok":true,"points":{"dim_level":40},"status":"queued"})
    );
    let refused = crate::model::command::CmdResult {
        id: None,
        ok: false,
        points: vec![],
        error: Some(crate::model::command::Refusal::UnknownDevice),
        status: None,
        source: None,
        ..ok
    };
    assert_eq!(
        parse(&live(cmd_result(3, 0, "g", &refused))),
        json!({"seq":3,"ts":"1970-01-01T00:00:00.000Z","gateway":"g","device":"lamp-1",
               "id":null,"ok":false,"error":"unknown device","code":"unknown_device"})
    );
}
