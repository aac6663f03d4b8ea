//! One driver under test without the rest of the daemon: devices built from the shipped
//! profiles the way the daemon builds them, a Modbus link task wired with the daemon's
//! channel capacities ([`DriverRig`]), and the simulated lines it polls (a pty or a
//! serial device server in front of a [`SlaveBus`]).

use super::{WAIT, plugins_dir, profile};
use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::SlaveBus;
use polegate::model::Value;
use polegate::model::command::{InboxSender, WriteRequest};
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, INPUT_CAPACITY, Input};
use polegate::southbound::INBOX_CAPACITY;
use polegate::southbound::modbus::link::{Link, run_link};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

/// A device of a shipped profile, as its driver receives it: no meta, no heartbeat.
pub fn device_info(id: &str, profile_name: &str) -> Arc<DeviceInfo> {
    Arc::new(DeviceInfo::new(
        id,
        profile(profile_name),
        Default::default(),
        0,
    ))
}

/// An RS-485 Modbus RTU bus on `port`: 19200 8N1, 100 ms timeout, no retries. Tests
/// change what they need with `BusCfg { baud: 2400, ..rtu_bus(..) }`.
pub fn rtu_bus(id: &str, port: PathBuf) -> BusCfg {
    BusCfg {
        id: id.into(),
        kind: BusKind::ModbusRtu,
        port,
        baud: 19200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms: 100,
        retries: 0,
        origin: "test".into(),
    }
}

/// A pty pair with a simulated slave bus on the master side. The slave end stays open
/// (held here) so the master never reads EIO between the driver's opens.
pub struct Line {
    pub path: PathBuf,
    _slave_end: SerialStream,
    cancel: CancellationToken,
}

impl Line {
    pub fn serve(sim: &Arc<SlaveBus>) -> Line {
        let (master, slave) = SerialStream::pair().expect("pty pair");
        let path = PathBuf::from(tokio_serial::SerialPort::name(&slave).expect("pty name"));
        let cancel = CancellationToken::new();
        tokio::spawn(sim.clone().serve(master, cancel.clone()));
        Line {
            path,
            _slave_end: slave,
            cancel,
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A serial device server (RTU over TCP) in front of `sim` on 127.0.0.1:0, until
/// `cancel`; returns its address.
pub async fn device_server(sim: &Arc<SlaveBus>, cancel: &CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(sim.clone().serve_tcp(listener, cancel.clone()));
    addr
}

/// A driver task and the daemon-side ends of its channels: what it sends to the pipeline
/// (`input`), its command inbox, its counters. Dropping the rig stops the task.
pub struct DriverRig {
    pub input: mpsc::Receiver<Input>,
    pub inbox: InboxSender,
    pub counters: Arc<Counters>,
    pub cancel: CancellationToken,
}

/// What a driver sent during [`DriverRig::collect`], by device id.
#[derive(Default, Debug)]
pub struct Seen {
    pub readings: HashMap<String, Vec<Instant>>,
    pub states: HashMap<String, Vec<(bool, Option<String>)>>,
}

impl DriverRig {
    /// Runs `link` in its own task, as the daemon does.
    pub fn modbus(link: Link) -> DriverRig {
        let (tx, input) = mpsc::channel(INPUT_CAPACITY);
        let (inbox, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        tokio::spawn(run_link(
            link,
            inbox_rx,
            tx,
            counters.clone(),
            cancel.clone(),
        ));
        DriverRig {
            input,
            inbox,
            counters,
            cancel,
        }
    }

    /// Collects everything the driver sends for `window`.
    pub async fn collect(&mut self, window: Duration) -> Seen {
        let mut seen = Seen::default();
        let end = Instant::now() + window;
        while let Ok(Some(m)) = tokio::time::timeout_at(end, self.input.recv()).await {
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

    /// The next device transition: (device id, online, reason).
    pub async fn next_state(&mut self) -> (String, bool, Option<String>) {
        self.next_state_before(Instant::now() + WAIT).await
    }

    /// Skips transitions until one to `online`; returns its reason.
    pub async fn wait_state(&mut self, online: bool) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, o, reason) = self.next_state_before(deadline).await;
            if o == online {
                return reason;
            }
        }
    }

    async fn next_state_before(&mut self, deadline: Instant) -> (String, bool, Option<String>) {
        loop {
            let m = tokio::time::timeout_at(deadline, self.input.recv())
                .await
                .expect("a state change in time")
                .expect("driver alive");
            if let Input::State {
                device,
                online,
                reason,
            } = m
            {
                return (device.id.clone(), online, reason);
            }
        }
    }

    /// The values of the next poll cycle.
    pub async fn next_reading(&mut self) -> Vec<(usize, Value)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.input.recv())
                .await
                .expect("a reading in time")
                .expect("driver alive");
            if let Input::Reading { values, .. } = m {
                return values;
            }
        }
    }
}

impl Drop for DriverRig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
