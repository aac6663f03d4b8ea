//! The end-to-end rig: a broker, a recorder of everything under `polegate/`, and the
//! daemon on a configuration naming the test's simulators, which the rig keeps running
//! (their cancel token) until it stops.

use super::{Daemon, Mosquitto, Recorder, Setup};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Rig<S = ()> {
    pub broker: Mosquitto,
    pub rec: Recorder,
    pub setup: Setup,
    /// The test's simulators.
    pub sim: S,
    /// When the daemon was (last) started.
    pub started: Instant,
    /// Stops the simulators, on [`Rig::stop`] or drop.
    sims: CancellationToken,
    daemon: Option<Daemon>,
}

impl<S> Rig<S> {
    /// Starts a broker and the daemon on `Setup::new(port, config)` with `profiles`
    /// (file name, text) added beside the shipped ones. `sims` is the token the
    /// simulators in `sim` run under.
    pub async fn start(
        sims: CancellationToken,
        sim: S,
        config: &str,
        profiles: &[(&str, &str)],
    ) -> Rig<S> {
        let broker = Mosquitto::start().await;
        let setup = Setup::new(broker.port, config);
        for (file, text) in profiles {
            setup.add_profile(file, text);
        }
        let rec = Recorder::start(broker.port, "polegate/#").await;
        let started = Instant::now();
        let daemon = Daemon::start(&setup).await;
        Rig {
            broker,
            rec,
            setup,
            sim,
            started,
            sims,
            daemon: Some(daemon),
        }
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon running")
    }

    /// Publishes on `topic` from a control-room client and waits for the broker's PUBACK.
    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        super::publish(self.broker.port, topic, payload, retain).await;
    }

    /// Stops the daemon cleanly; the broker, recorder and simulators stay.
    pub async fn stop_daemon(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop().await;
        }
    }

    /// Starts the daemon again on the same configuration and state.
    pub async fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        self.started = Instant::now();
        self.daemon = Some(Daemon::start(&self.setup).await);
    }

    /// Stops the daemon cleanly, then the simulators.
    pub async fn stop(mut self) {
        self.stop_daemon().await;
        self.sims.cancel();
    }
}

impl<S> Drop for Rig<S> {
    fn drop(&mut self) {
        self.sims.cancel();
    }
}
