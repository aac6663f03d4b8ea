//! A serial port that disappears and comes back (a USB RS-485 adapter unplugged, then
//! plugged in again): the bus reports the device offline after its failed cycles, keeps
//! retrying the port with backoff, and is back online on its own once the port exists
//! again. The "adapter" is a socat pty pair whose device links vanish when socat dies.

use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::SlaveBus;
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::profile::Registry;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link};
use polegate::southbound::modbus::rtu::Mode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// socat joining two ptys, reachable through symlinks `bus` (the gateway's port) and
/// `sim` (the simulated devices' end).
struct Adapter {
    child: Child,
    bus: PathBuf,
    sim: PathBuf,
}

impl Adapter {
    async fn plug(dir: &Path) -> Adapter {
        let (bus, sim) = (dir.join("ttyBUS"), dir.join("ttySIM"));
        let _ = std::fs::remove_file(&bus);
        let _ = std::fs::remove_file(&sim);
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", bus.display()))
            .arg(format!("pty,raw,echo=0,link={}", sim.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat installed (apt-get install socat)");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(bus.exists() && sim.exists()) {
            assert!(tokio::time::Instant::now() < deadline, "socat made no ptys");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Adapter { child, bus, sim }
    }

    fn unplug(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn device() -> Arc<DeviceInfo> {
    let (reg, _) = Registry::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    let profile = reg.get("generic-lamp-modbus").expect("lamp").clone();
    Arc::new(DeviceInfo {
        id: "lamp-1".into(),
        link: Default::default(),
        kind: profile.kind,
        profile,
        meta: Default::default(),
        heartbeat_ms: 0,
    })
}

/// Serves the simulated unit on the adapter's far end until the adapter goes away.
fn serve(sim: &Arc<SlaveBus>, path: &Path, cancel: &CancellationToken) {
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 19200))
        .expect("open the simulator's end");
    tokio::spawn(sim.clone().serve(port, cancel.clone()));
}

async fn next_state(rx: &mut mpsc::Receiver<Input>, online: bool) -> Option<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no state online={online} in time"))
            .expect("link alive");
        if let Input::State {
            online: o, reason, ..
        } = m
            && o == online
        {
            return reason;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_adapter_takes_the_device_offline_and_replugging_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = Adapter::plug(dir.path()).await;
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let sim_cancel = CancellationToken::new();
    serve(&sim, &adapter.sim, &sim_cancel);

    let cfg = BusCfg {
        id: "rs485-1".into(),
        kind: BusKind::ModbusRtu,
        port: adapter.bus.clone(),
        baud: 19200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms: 100,
        retries: 0,
        origin: "test".into(),
    };
    let mut link = Link::bus(&cfg, Mode::Rtu);
    link.devices
        .push(PolledDevice::new(device(), 1, Duration::from_millis(100)));
    let (tx, mut rx) = mpsc::channel(1024);
    let (_inbox, inbox_rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    tokio::spawn(run_link(
        link,
        inbox_rx,
        tx,
        Arc::new(Counters::default()),
        cancel.clone(),
    ));
    next_state(&mut rx, true).await;

    adapter.unplug();
    sim_cancel.cancel();
    let reason = next_state(&mut rx, false).await.unwrap_or_default();
    assert!(!reason.is_empty(), "offline without a reason");

    let adapter = Adapter::plug(dir.path()).await;
    let sim_cancel = CancellationToken::new();
    serve(&sim, &adapter.sim, &sim_cancel);
    next_state(&mut rx, true).await;
    cancel.cancel();
    sim_cancel.cancel();
    adapter.unplug();
}
