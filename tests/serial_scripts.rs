//! The shipped serial scripts through the same decode/encode/poll glue the bus task uses:
//! the ENV-2 binary sensor (CRC-16/Modbus, fixed frames) and the PA-100 writes and acks.

use polegate::model::Value;
use polegate::profile::Registry;
use polegate::script::{Engine, crc16_modbus};
use polegate::southbound::serial::decode;
use std::path::PathBuf;

fn registry() -> Registry {
    let (r, errors) = Registry::load(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    assert!(errors.is_empty(), "{errors:?}");
    r
}

#[test]
fn the_binary_sensor_checks_its_crc_and_decodes_signed_and_unsigned_fields() {
    let r = registry();
    let p = r.get("generic-sensor-binary").unwrap();
    let spec = p.serial.as_ref().unwrap();
    let e = Engine::new();
    let req = decode::poll_requests(&e, spec, "3").unwrap();
    let mut want = vec![0xA5, 3, 0x01, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&crc16_modbus(&want).to_le_bytes());
    assert_eq!(req, vec![want]);

    // -1.5 °C, 59.0 %, 45.1 dB
    let mut frame = vec![0xA5, 3, 0x81, 0xFF, 0xF1, 0x02, 0x4E, 0x01, 0xC3];
    frame.extend_from_slice(&crc16_modbus(&frame).to_le_bytes());
    let d = decode::decode(&e, p, spec, &frame).unwrap().unwrap();
    assert_eq!(d.address.as_deref(), Some("3"));
    assert_eq!(
        d.values,
        vec![
            (0, Value::Float(-1.5)),
            (1, Value::Float(59.0)),
            (2, Value::Float(45.1))
        ]
    );
    frame[4] ^= 0x01;
    let err = decode::decode(&e, p, spec, &frame).unwrap_err();
    assert!(
        err.to_string().contains("generic-sensor-binary.rhai:"),
        "{err}"
    );
    assert!(err.message.contains("CRC mismatch"), "{err}");
}

#[test]
fn the_pa_script_encodes_writes_and_maps_error_replies() {
    let r = registry();
    let p = r.get("generic-pa-serial").unwrap();
    let spec = p.serial.as_ref().unwrap();
    let e = Engine::new();
    let b = decode::encode(&e, spec, "volume", &Value::Int(5), "01").unwrap();
    assert_eq!(b, b"@01V005\r\n");
    let b = decode::encode(&e, spec, "stop", &Value::Bool(true), "01").unwrap();
    assert_eq!(b, b"@01S\r\n");
    assert!(decode::encode(&e, spec, "temperature", &Value::Int(1), "01").is_err());
    assert_eq!(decode::ack(&e, spec, b"#01 OK"), Ok(()));
    assert_eq!(
        decode::ack(&e, spec, b"#01 ERR 2").map_err(|e| e.to_string()),
        Err("the device refused the write: ERR 2: amplifier busy".into())
    );
    // Unsolicited alarm, and lines the script ignores.
    let d = decode::decode(&e, p, spec, b"!01 LINE=FAULT")
        .unwrap()
        .unwrap();
    assert_eq!(d.values, vec![(4, Value::Bool(true))]);
    assert_eq!(decode::decode(&e, p, spec, b"garbage").unwrap(), None);
}
