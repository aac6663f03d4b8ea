//! Proves the shipped Eastron SDM120 profile: it loads without problems from
//! `plugins/`, and a simulated SDM120 on an RTU bus (pty, 8N1) is read into the
//! normalized meter points with the documented scaling (kWh published as Wh).

use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::SlaveBus;
use polegate::model::Value;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::profile::Registry;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link};
use polegate::southbound::modbus::rtu::Mode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn registry() -> Registry {
    let (reg, errors) = Registry::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    assert!(errors.is_empty(), "{errors:#?}");
    reg
}

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
    let reg = registry();
    let profile = reg.get("eastron-sdm120").expect("profile").clone();
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    {
        let unit = sim.unit(1);
        let mut input = unit.input.lock().unwrap();
        input[0..2].copy_from_slice(&f32_words(231.5));
        input[72..74].copy_from_slice(&f32_words(12.25));
    }
    let (master, slave) = tokio_serial::SerialStream::pair().expect("pty");
    let port = PathBuf::from(tokio_serial::SerialPort::name(&slave).expect("name"));
    let cancel = CancellationToken::new();
    tokio::spawn(sim.clone().serve(master, cancel.clone()));
    let bus = BusCfg {
        id: "rs485-meter".into(),
        kind: BusKind::ModbusRtu,
        port,
        baud: 2400,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms: 500,
        retries: 1,
        origin: "test".into(),
    };
    let info = Arc::new(DeviceInfo {
        id: "meter-1".into(),
        link: Default::default(),
        kind: profile.kind,
        profile: profile.clone(),
        meta: Default::default(),
        heartbeat_ms: 0,
    });
    let mut link = Link::bus(&bus, Mode::Rtu);
    link.devices
        .push(PolledDevice::new(info, 1, Duration::from_millis(200)));
    let (tx, mut rx) = mpsc::channel(64);
    let (_inbox, inbox_rx) = mpsc::channel(1);
    tokio::spawn(run_link(
        link,
        inbox_rx,
        tx,
        Arc::new(Counters::default()),
        cancel.clone(),
    ));
    let values = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Input::Reading { values, .. }) = rx.recv().await {
                break values;
            }
        }
    })
    .await
    .expect("a reading in time");
    let get = |name: &str| {
        let (i, _) = profile.point(name).expect(name);
        values.iter().find(|(j, _)| *j == i).map(|(_, v)| v.clone())
    };
    assert_eq!(get("voltage"), Some(Value::Float(231.5)));
    assert_eq!(get("energy_import"), Some(Value::Float(12250.0)));
    cancel.cancel();
    drop(slave);
}
