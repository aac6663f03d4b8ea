//! Proves the RS-485 drivers over real pseudo-terminal pairs (8N1: this kernel refuses
//! even/odd parity on a pty): one bus task serves several units through the shared
//! scheduler; a dead unit goes offline and costs the live units no poll rate; a unit
//! with corrupted CRCs and a line chattering stray frames are survived without reopening
//! the port; exceptions are data; commands write and read back over RTU; ASCII framing
//! works end to end; a port refusing a setting is a bus error naming the setting while
//! other buses keep polling.

use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::{Behaviour, SlaveBus};
use polegate::model::Value;
use polegate::model::command::WriteRequest;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::profile::Registry;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link};
use polegate::southbound::modbus::rtu::Mode;
use polegate::southbound::serial_port;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_modbus::ExceptionCode;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);

fn device(id: &str) -> Arc<DeviceInfo> {
    let (reg, _) = Registry::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    let profile = reg
        .get("generic-lamp-modbus")
        .expect("lamp profile")
        .clone();
    Arc::new(DeviceInfo {
        id: id.into(),
        link: Default::default(),
        kind: profile.kind,
        profile,
        meta: Default::default(),
        heartbeat_ms: 0,
    })
}

fn bus(id: &str, port: PathBuf, mode: BusKind, parity: Parity) -> BusCfg {
    BusCfg {
        id: id.into(),
        kind: mode,
        port,
        baud: 19200,
        parity,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms: 100,
        retries: 0,
        origin: "test".into(),
    }
}

/// A pty pair with a simulated slave bus on the master side. The slave end stays open
/// (held here) so the master never reads EIO between the driver's opens.
struct Line {
    path: PathBuf,
    _slave_end: SerialStream,
    cancel: CancellationToken,
}

fn line(sim: Arc<SlaveBus>) -> Line {
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let path = PathBuf::from(tokio_serial::SerialPort::name(&slave).expect("pty name"));
    let cancel = CancellationToken::new();
    tokio::spawn(sim.serve(master, cancel.clone()));
    Line {
        path,
        _slave_end: slave,
        cancel,
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Running {
    rx: mpsc::Receiver<Input>,
    inbox: mpsc::Sender<WriteRequest>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

fn start(link: Link) -> Running {
    let (tx, rx) = mpsc::channel(1024);
    let (inbox, inbox_rx) = mpsc::channel(4);
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    tokio::spawn(run_link(
        link,
        inbox_rx,
        tx,
        counters.clone(),
        cancel.clone(),
    ));
    Running {
        rx,
        inbox,
        counters,
        cancel,
    }
}

#[derive(Default, Debug)]
struct Seen {
    readings: HashMap<String, Vec<Instant>>,
    states: HashMap<String, Vec<(bool, Option<String>)>>,
}

impl Running {
    /// Collects everything the link sends for `window`.
    async fn collect(&mut self, window: Duration) -> Seen {
        let mut seen = Seen::default();
        let end = Instant::now() + window;
        while let Ok(Some(m)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            match m {
                Input::Reading { device, .. } => seen
                    .readings
                    .entry(device.id.clone())
                    .or_default()
                    .push(Instant::now()),
                Input::State {
                    device,
                    online,
                    reason,
                } => seen
                    .states
                    .entry(device.id.clone())
                    .or_default()
                    .push((online, reason)),
                _ => {}
            }
        }
        seen
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
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
    let l = line(sim.clone());
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
    let mut run = start(link);
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
    let l = line(sim.clone());
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
    let run = start(link);
    let (reply, answer) = oneshot::channel();
    run.inbox
        .send(WriteRequest {
            device: 0,
            writes: vec![(dim, Value::Int(42))],
            id: None,
            expires_ms: None,
            reply,
        })
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
    let l = line(sim.clone());
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
    let mut run = start(link);
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
    let (la, lb) = (line(sim_a), line(sim_b));
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
    let mut ra = start(a);
    let mut rb = start(b);
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
