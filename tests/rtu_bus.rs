//! Proves the RS-485 drivers over real pseudo-terminal pairs (8N1: this kernel refuses
//! even/odd parity on a pty): one bus task serves several units through the shared
//! scheduler; a dead unit goes offline and costs the live units no poll rate; a unit
//! with corrupted CRCs and a line chattering stray frames are survived without reopening
//! the port; exceptions are data; commands write and read back over RTU; ASCII framing
//! works end to end; a port refusing a setting is a bus error naming the setting while
//! other buses keep polling.

use crate::common::*;
use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::{Behaviour, SlaveBus};
use polegate::model::Value;
use polegate::model::command::WriteRequest;
use polegate::southbound::modbus::link::{Link, PolledDevice};
use polegate::southbound::modbus::rtu::Mode;
use polegate::southbound::serial_port;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_modbus::ExceptionCode;

const POLL: Duration = Duration::from_millis(100);

fn device(id: &str) -> Arc<polegate::pipeline::DeviceInfo> {
    device_info(id, "generic-lamp-modbus")
}

fn bus(id: &str, port: PathBuf, mode: BusKind, parity: Parity) -> BusCfg {
    BusCfg {
        kind: mode,
        parity,
        ..rtu_bus(id, port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_units_keep_their_poll_rate_while_a_dead_unit_is_offline_and_bad_frames_are_survived()
{
    let mut sim = SlaveBus::new(Mode::Rtu, &[1, 2, 3, 4, 5]);
    sim.chatter = true;
    let sim = Arc::new(sim);
    sim.unit(1).set_holding(0, &[40]);
    sim.unit(2).set_behaviour(Behaviour::Dead);
    sim.unit(3).set_behaviour(Behaviour::BadChecksum);
    sim.unit(4)
        .set_behaviour(Behaviour::Exception(ExceptionCode::ServerDeviceBusy));
    let l = Line::serve(&sim);
    let mut link = Link::bus(
        &bus("rs485-1", l.path.clone(), BusKind::ModbusRtu, Parity::None),
        Mode::Rtu,
    );
    for (id, unit) in [
        ("live-1", 1),
        ("dead-2", 2),
        ("crc-3", 3),
        ("busy-4", 4),
        ("live-5", 5),
    ] {
        link.devices.push(PolledDevice::new(device(id), unit, POLL));
    }
    let mut run = DriverRig::modbus(link);
    let window = Duration::from_secs(4);
    let seen = run.collect(window).await;

    let expected = (window.as_millis() / POLL.as_millis()) as usize;
    for live in ["live-1", "live-5"] {
        let n = seen.readings.get(live).map_or(0, Vec::len);
        assert!(
            n * 100 >= expected * 80,
            "{live}: {n} readings in {window:?}, expected about {expected}"
        );
        assert_eq!(seen.states[live], [(true, None)], "{live} online once");
    }
    for dead in ["dead-2", "crc-3"] {
        let states = &seen.states[dead];
        assert_eq!(states.len(), 1, "{dead}: {states:?}");
        assert!(!states[0].0, "{dead} offline");
        assert!(!seen.readings.contains_key(dead));
    }
    let reason = seen.states["dead-2"][0].1.clone().unwrap_or_default();
    assert!(
        reason.contains("timed out") && reason.contains("rs485-1"),
        "{reason}"
    );
    let reason = seen.states["crc-3"][0].1.clone().unwrap_or_default();
    assert!(reason.contains("CRC"), "{reason}");
    // Exceptions are data: the unit answered, so it is online, without values.
    assert_eq!(seen.states["busy-4"], [(true, None)]);
    // The dead unit was probed at a backed-off rate: far fewer requests than live ones.
    assert!(sim.unit(2).requests() * 5 < sim.unit(1).requests());
    let c = &run.counters;
    assert!(c.modbus_crc_error.load(Relaxed) >= 3);
    assert!(c.modbus_exception.load(Relaxed) >= 3);
    assert!(c.modbus_stray_frame.load(Relaxed) >= 10);
    // The port was opened once: strays, CRC errors and timeouts never reopened it.
    assert_eq!(c.connect_failed.load(Relaxed), 0);
    assert_eq!(c.modbus_transport.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_writes_over_rtu_and_answers_with_the_read_back_value() {
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[7]));
    let l = Line::serve(&sim);
    let mut link = Link::bus(
        &bus("rs485-1", l.path.clone(), BusKind::ModbusRtu, Parity::None),
        Mode::Rtu,
    );
    let info = device("lamp-7");
    let dim = info
        .profile
        .points
        .iter()
        .position(|p| p.name == "dim_level")
        .expect("dim_level");
    link.devices.push(PolledDevice::new(info, 7, POLL));
    let run = DriverRig::modbus(link);
    let (reply, answer) = oneshot::channel();
    run.inbox
        .send(Box::new(WriteRequest {
            device: 0,
            writes: vec![(dim, Value::Int(42))],
            id: None,
            expires_ms: None,
            reply,
        }))
        .await
        .expect("inbox");
    let outcome = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered in time")
        .expect("answer");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.points, [(dim, Value::Int(42))]);
    assert_eq!(sim.unit(7).holding(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ascii_bus_polls_its_units_with_lrc_framing() {
    let sim = Arc::new(SlaveBus::new(Mode::Ascii, &[1, 2]));
    sim.unit(2).set_behaviour(Behaviour::BadChecksum);
    let l = Line::serve(&sim);
    let mut link = Link::bus(
        &bus(
            "old-line",
            l.path.clone(),
            BusKind::ModbusAscii,
            Parity::None,
        ),
        Mode::Ascii,
    );
    link.devices
        .push(PolledDevice::new(device("ascii-1"), 1, POLL));
    link.devices
        .push(PolledDevice::new(device("ascii-2"), 2, POLL));
    let mut run = DriverRig::modbus(link);
    let seen = run.collect(Duration::from_secs(4)).await;
    assert!(seen.readings.get("ascii-1").map_or(0, Vec::len) >= 30);
    assert_eq!(seen.states["ascii-1"], [(true, None)]);
    let reason = seen.states["ascii-2"][0].1.clone().unwrap_or_default();
    assert!(reason.contains("LRC"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_refusing_even_parity_is_a_bus_error_naming_it_and_other_buses_keep_polling() {
    let sim_a = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let sim_b = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let (la, lb) = (Line::serve(&sim_a), Line::serve(&sim_b));
    let even = bus(
        "rs485-even",
        la.path.clone(),
        BusKind::ModbusRtu,
        Parity::Even,
    );
    let err = serial_port::open(&even)
        .expect_err("ptys refuse even parity")
        .to_string();
    assert!(
        err.contains("rs485-even") && err.contains("parity = \"even\""),
        "{err}"
    );

    let mut a = Link::bus(&even, Mode::Rtu);
    a.devices
        .push(PolledDevice::new(device("on-even"), 1, POLL));
    let mut b = Link::bus(
        &bus(
            "rs485-ok",
            lb.path.clone(),
            BusKind::ModbusRtu,
            Parity::None,
        ),
        Mode::Rtu,
    );
    b.devices.push(PolledDevice::new(device("on-ok"), 1, POLL));
    let mut ra = DriverRig::modbus(a);
    let mut rb = DriverRig::modbus(b);
    let (sa, sb) = tokio::join!(
        ra.collect(Duration::from_millis(1500)),
        rb.collect(Duration::from_millis(1500))
    );
    let (online, reason) = sa.states["on-even"][0].clone();
    assert!(!online);
    assert!(reason.unwrap_or_default().contains("parity = \"even\""));
    assert!(sb.readings.get("on-ok").map_or(0, Vec::len) >= 10);
    assert!(ra.counters.connect_failed.load(Relaxed) >= 1);
}
