//! Proves the shipped Eastron SDM120 profile: it loads without problems from
//! `plugins/`, and a simulated SDM120 on an RTU bus (pty, 8N1) is read into the
//! normalized meter points with the documented scaling (kWh published as Wh).

use crate::common::*;
use polegate::config::BusCfg;
use polegate::demo::rtu_slave::SlaveBus;
use polegate::model::Value;
use polegate::southbound::modbus::link::{Link, PolledDevice};
use polegate::southbound::modbus::rtu::Mode;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn the_sdm120_profile_loads_with_its_source_named() {
    let reg = registry();
    let p = reg.get("eastron-sdm120").expect("eastron-sdm120 loaded");
    assert_eq!(p.points.len(), 9);
    assert!(
        p.description
            .as_deref()
            .unwrap_or("")
            .contains("SDM120 Modbus Protocol")
    );
    let (_, import) = p.point("energy_import").expect("energy_import");
    assert_eq!(import.scale, 1000.0);
}

fn f32_words(v: f32) -> [u16; 2] {
    let b = v.to_bits();
    [(b >> 16) as u16, b as u16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_sdm120_on_an_rtu_bus_is_read_as_a_normalized_meter() {
    let profile = profile("eastron-sdm120");
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    {
        let unit = sim.unit(1);
        let mut input = unit.input.lock().unwrap();
        input[0..2].copy_from_slice(&f32_words(231.5));
        input[72..74].copy_from_slice(&f32_words(12.25));
    }
    let line = Line::serve(&sim);
    let bus = BusCfg {
        baud: 2400,
        timeout_ms: 500,
        retries: 1,
        ..rtu_bus("rs485-meter", line.path.clone())
    };
    let mut link = Link::bus(&bus, Mode::Rtu);
    link.devices.push(PolledDevice::new(
        device_info("meter-1", "eastron-sdm120"),
        1,
        Duration::from_millis(200),
    ));
    let mut rig = DriverRig::modbus(link);
    let values = tokio::time::timeout(Duration::from_secs(10), rig.next_reading())
        .await
        .expect("a reading in time");
    let get = |name: &str| {
        let (i, _) = profile.point(name).expect(name);
        values.iter().find(|(j, _)| *j == i).map(|(_, v)| v.clone())
    };
    assert_eq!(get("voltage"), Some(Value::Float(231.5)));
    assert_eq!(get("energy_import"), Some(Value::Float(12250.0)));
}
