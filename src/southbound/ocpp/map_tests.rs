//! The SPEC §9 mapping, message by message, without sockets.

use super::*;

fn points(taps: Vec<Tap>) -> (u32, Vec<(String, Value)>) {
    match taps.into_iter().next() {
        Some(Tap::Points { connector, points }) => (connector, points),
        other => panic!("expected points, got {other:?}"),
    }
}

fn get<'a>(p: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    p.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[test]
fn status_notification_gives_status_fault_code_and_plug_state() {
    let mut cp = ChargePoint::default();
    let req = json!({"connectorId": 2, "errorCode": "NoError", "status": "SuspendedEVSE"});
    let (c, p) = points(cp.tap("StatusNotification", &req, &json!({})).unwrap());
    assert_eq!(c, 2);
    assert_eq!(
        get(&p, "status"),
        Some(&Value::Text("suspended_evse".into()))
    );
    assert_eq!(get(&p, "fault_code"), Some(&Value::Text("NoError".into())));
    assert_eq!(get(&p, "plug_connected"), Some(&Value::Bool(true)));
    let req = json!({"connectorId": 0, "errorCode": "NoError", "status": "Unavailable"});
    let (c, p) = points(cp.tap("StatusNotification", &req, &json!({})).unwrap());
    assert_eq!(c, 0);
    assert_eq!(
        p,
        vec![(
            "x_charge_point_status".into(),
            Value::Text("unavailable".into())
        )]
    );
    let bad = json!({"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"});
    assert!(cp.tap("StatusNotification", &bad, &json!({})).is_err());
}

#[test]
fn meter_values_convert_units_accept_numbers_and_name_phases() {
    let mut cp = ChargePoint::default();
    let req = json!({"connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
        {"value": "12.5"},
        {"value": 7.2, "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "16", "measurand": "Current.Import", "unit": "A"},
        {"value": 15.9, "measurand": "Current.Import", "phase": "L2", "unit": "A"},
        {"value": "231", "measurand": "Voltage", "phase": "L3-N", "unit": "V"},
        {"value": "32", "measurand": "Current.Offered"},
        {"value": "55", "measurand": "SoC", "unit": "Percent"},
        {"value": "31", "measurand": "Temperature", "unit": "Celsius"},
        {"value": "1", "measurand": "Frequency"}
    ]}]});
    let (_, p) = points(cp.tap("MeterValues", &req, &json!({})).unwrap());
    assert_eq!(get(&p, "energy_total"), Some(&Value::Float(12.5)));
    assert_eq!(get(&p, "power"), Some(&Value::Float(7200.0)));
    assert_eq!(get(&p, "current"), Some(&Value::Float(16.0)));
    assert_eq!(get(&p, "x_current_l2"), Some(&Value::Float(15.9)));
    assert_eq!(get(&p, "x_voltage_l3"), Some(&Value::Float(231.0)));
    assert_eq!(get(&p, "max_current"), Some(&Value::Float(32.0)));
    assert_eq!(get(&p, "x_soc"), Some(&Value::Float(55.0)));
    assert_eq!(get(&p, "x_temperature"), Some(&Value::Float(31.0)));
    assert_eq!(p.len(), 8, "Frequency is not mapped: {p:?}");
    assert!(get(&p, "energy_session").is_none());
}

#[test]
fn a_transaction_gives_session_energy_from_start_to_stop() {
    let mut cp = ChargePoint::default();
    let start = json!({"connectorId": 1, "idTag": "CARD1", "meterStart": 1000, "timestamp": "t"});
    let conf = json!({"idTagInfo": {"status": "Accepted"}, "transactionId": 42});
    let (_, p) = points(cp.tap("StartTransaction", &start, &conf).unwrap());
    assert_eq!(get(&p, "x_transaction_id"), Some(&Value::Int(42)));
    assert_eq!(get(&p, "x_id_tag"), Some(&Value::Text("CARD1".into())));
    assert_eq!(get(&p, "energy_session"), Some(&Value::Float(0.0)));
    let mv = json!({"connectorId": 1, "transactionId": 42, "meterValue": [{"timestamp": "t",
        "sampledValue": [{"value": "2.5", "unit": "kWh"}]}]});
    let (_, p) = points(cp.tap("MeterValues", &mv, &json!({})).unwrap());
    assert_eq!(get(&p, "energy_session"), Some(&Value::Float(1500.0)));
    let stop = json!({"transactionId": 42, "meterStop": 3100, "timestamp": "t"});
    let (c, p) = points(cp.tap("StopTransaction", &stop, &json!({})).unwrap());
    assert_eq!(c, 1);
    assert_eq!(get(&p, "energy_session"), Some(&Value::Float(2100.0)));
    assert_eq!(get(&p, "x_stop_reason"), Some(&Value::Text("Local".into())));
    assert_eq!(get(&p, "x_transaction_id"), Some(&Value::Int(0)));
    assert!(cp.open.is_empty());
}

#[test]
fn boot_extends_meta_with_the_charger_identity() {
    let mut cp = ChargePoint::default();
    let req = json!({"chargePointVendor": "ACME", "chargePointModel": "W22",
        "chargeBoxSerialNumber": "SN1", "firmwareVersion": "1.2", "extra": 1});
    let Ok(taps) = cp.tap("BootNotification", &req, &json!({})) else {
        panic!("boot refused")
    };
    let Some(Tap::Booted(meta)) = taps.first() else {
        panic!("no boot tap")
    };
    assert_eq!(meta["ocpp_vendor"], "ACME");
    assert_eq!(meta["ocpp_model"], "W22");
    assert_eq!(meta["ocpp_serial"], "SN1");
    assert_eq!(meta["ocpp_firmware"], "1.2");
}

#[test]
fn the_central_system_answers_every_charger_message_by_its_policy() {
    let allow = |t: &str| t == "GOOD";
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let a = |action: &str, req: Json, next: &mut dyn FnMut() -> i64| {
        answer(action, &req, "2026-01-01T00:00:00.000Z", 60, &allow, next)
    };
    let boot = a(
        "BootNotification",
        json!({"chargePointVendor": "A", "chargePointModel": "B"}),
        &mut next,
    )
    .unwrap();
    assert_eq!(boot["status"], "Accepted");
    assert_eq!(boot["interval"], 60);
    assert_eq!(
        a("Authorize", json!({"idTag": "BAD"}), &mut next).unwrap()["idTagInfo"]["status"],
        "Invalid"
    );
    let st = a(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "GOOD", "meterStart": 0, "timestamp": "t"}),
        &mut next,
    )
    .unwrap();
    assert_eq!(st["idTagInfo"]["status"], "Accepted");
    assert_eq!(st["transactionId"], 1);
    assert_eq!(
        a("DataTransfer", json!({"vendorId": "x"}), &mut next).unwrap()["status"],
        "UnknownVendorId"
    );
    assert_eq!(
        a(
            "FirmwareStatusNotification",
            json!({"status": "Idle"}),
            &mut next
        )
        .unwrap(),
        json!({})
    );
    assert!(a("Heartbeat", json!({}), &mut next).unwrap()["currentTime"].is_string());
    assert_eq!(
        a("GetConfiguration", json!({}), &mut next)
            .unwrap_err()
            .code,
        "NotImplemented"
    );
    assert_eq!(
        a("BootNotification", json!({}), &mut next)
            .unwrap_err()
            .code,
        "FormationViolation"
    );
}

#[test]
fn boot_notification_strings_are_cut_to_the_ocpp_schema_bounds() {
    let mut cp = ChargePoint::default();
    let long = "é".repeat(70_000);
    let req = json!({"chargePointVendor": long, "chargePointModel": long,
        "chargePointSerialNumber": long, "firmwareVersion": long});
    let taps = cp.tap("BootNotification", &req, &json!({})).unwrap();
    let Tap::Booted(meta) = &taps[0] else {
        panic!("{taps:?}")
    };
    let len = |k: &str| meta[k].as_str().unwrap().chars().count();
    assert_eq!(
        (
            len("ocpp_vendor"),
            len("ocpp_model"),
            len("ocpp_serial"),
            len("ocpp_firmware")
        ),
        (20, 20, 25, 50)
    );
}
