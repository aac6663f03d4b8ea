//! A serial port that disappears and comes back (a USB RS-485 adapter unplugged, then
//! plugged in again): the bus reports the device offline after its failed cycles, keeps
//! retrying the port with backoff, and is back online on its own once the port exists
//! again. The "adapter" is a socat pty pair whose device links vanish when socat dies.

use crate::common::*;
use polegate::demo::rtu_slave::SlaveBus;
use polegate::southbound::modbus::link::{Link, PolledDevice};
use polegate::southbound::modbus::rtu::Mode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Serves the simulated unit on the adapter's far end until the adapter goes away.
fn serve(sim: &Arc<SlaveBus>, path: &Path, cancel: &CancellationToken) {
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 19200))
        .expect("open the simulator's end");
    tokio::spawn(sim.clone().serve(port, cancel.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_adapter_takes_the_device_offline_and_replugging_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = Adapter::plug(dir.path()).await;
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    let sim_cancel = CancellationToken::new();
    serve(&sim, &adapter.sim, &sim_cancel);

    let mut link = Link::bus(&rtu_bus("rs485-1", adapter.bus.clone()), Mode::Rtu);
    link.devices.push(PolledDevice::new(
        device_info("lamp-1", "generic-lamp-modbus"),
        1,
        Duration::from_millis(100),
    ));
    let mut rig = DriverRig::modbus(link);
    rig.wait_state(true).await;

    adapter.unplug();
    sim_cancel.cancel();
    let reason = rig.wait_state(false).await.unwrap_or_default();
    assert!(!reason.is_empty(), "offline without a reason");

    let adapter = Adapter::plug(dir.path()).await;
    let sim_cancel = CancellationToken::new();
    serve(&sim, &adapter.sim, &sim_cancel);
    rig.wait_state(true).await;
    rig.cancel.cancel();
    sim_cancel.cancel();
    adapter.unplug();
}
