//! Starting the daemon under test: one config writer ([`Setup`]), one in-process start
//! through `app::run_with` ([`Daemon`]) and one start of the real binary in a child
//! process ([`Process`]), each with its way to wait until it is up and to stop it.

use super::{WAIT, plugins_dir};
use polegate::app::{self, Handles};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A gateway configuration in a temporary directory, pointing at the crate's plugins.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Setup {
    /// The tests' gateway: id `cab-test`, broker on `port`, fast reconnects and flushes,
    /// no stats events; `extra` (devices, buses, `[lora]`) is appended.
    pub fn new(port: u16, extra: &str) -> Setup {
        Setup::custom(
            "cab-test",
            &format!(
                "url = \"mqtt://127.0.0.1:{port}\"\nreconnect_min_ms = 50\nreconnect_max_ms = 300\n"
            ),
            &format!("[buffer]\nflush_every_ms = 100\n\n{extra}"),
        )
    }

    /// Any gateway: `mqtt` holds the lines of its `[mqtt]` table (at least `url`), `rest`
    /// the tables after it. State lives in `state/` beside the file; stats are off.
    pub fn custom(gateway: &str, mqtt: &str, rest: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("polegate.toml");
        // Tests run side by side: each listener on its own port unless the test says.
        let http = if rest.contains("[http]") {
            ""
        } else {
            "[http]\nlisten = \"127.0.0.1:0\"\n\n"
        };
        let text = format!(
            "[gateway]\nid = \"{gateway}\"\nstate_dir = \"state\"\nplugins_dirs = [{plugins:?}]\n\n\
             [mqtt]\n{mqtt}\n[stats]\ninterval_s = 0\n\n{http}{rest}",
            plugins = plugins_dir().display().to_string(),
        );
        std::fs::write(&path, text).expect("write config");
        Setup { dir, path }
    }

    /// Adds a file (a profile or its script) in a second plugins directory of this setup.
    pub fn add_profile(&self, file: &str, text: &str) {
        let dir = self.dir.path().join("more-plugins");
        std::fs::create_dir_all(&dir).expect("plugins dir");
        std::fs::write(dir.join(file), text).expect("write profile");
        let cfg = std::fs::read_to_string(&self.path).expect("read config");
        if !cfg.contains("more-plugins") {
            let cfg = cfg.replacen("plugins_dirs = [", "plugins_dirs = [\"more-plugins\", ", 1);
            std::fs::write(&self.path, cfg).expect("write config");
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where [`Process::start_logged`] writes the daemon's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// The daemon's log so far (empty before it starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// The daemon running in-process.
pub struct Daemon {
    pub cancel: CancellationToken,
    pub handles: Handles,
    task: JoinHandle<Result<(), app::RunError>>,
}

impl Daemon {
    /// Starts without reload; returns once its buffer and drivers are up.
    pub async fn start(setup: &Setup) -> Daemon {
        Daemon::launch(setup, None, app::RunOptions::default()).await
    }

    /// Starts with these options (e.g. a hand on the schedule's clock), without reload.
    pub async fn start_with(setup: &Setup, opts: app::RunOptions) -> Daemon {
        Daemon::launch(setup, None, opts).await
    }

    /// Starts with reload enabled: returns the daemon and its reload trigger (SIGHUP).
    pub async fn start_reloadable(setup: &Setup, watch_files: bool) -> (Daemon, mpsc::Sender<()>) {
        let (rtx, rrx) = mpsc::channel(4);
        let opts = app::RunOptions {
            config_path: Some(setup.path.clone()),
            watch_files,
            notifier: None,
            clock: None,
        };
        (Daemon::launch(setup, Some(rrx), opts).await, rtx)
    }

    async fn launch(
        setup: &Setup,
        reload: Option<mpsc::Receiver<()>>,
        opts: app::RunOptions,
    ) -> Daemon {
        let loaded =
            app::load(&setup.path, true).unwrap_or_else(|e| panic!("config invalid: {e:#?}"));
        let cancel = CancellationToken::new();
        let (htx, hrx) = tokio::sync::oneshot::channel();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            app::run_with(
                loaded.config,
                loaded.registry,
                c,
                move |h| {
                    let _ = htx.send(h.clone());
                },
                reload,
                opts,
            )
            .await
        });
        let handles = tokio::time::timeout(WAIT, hrx)
            .await
            .expect("daemon ready in time")
            .expect("daemon started");
        Daemon {
            cancel,
            handles,
            task,
        }
    }

    /// Clean stop (as on SIGTERM); returns how long it took.
    pub async fn stop(self) -> Duration {
        let t0 = tokio::time::Instant::now();
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("daemon stopped in time")
            .expect("daemon task")
            .expect("daemon result");
        t0.elapsed()
    }
}

/// `polegate run --config …` as a child process: the real binary with its signals,
/// logging and exit code. Killed if the test ends without stopping it.
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// Starts the binary on `config` with stdout and stderr discarded; `adjust` sets the
    /// environment or redirects stderr before it starts.
    pub fn start(config: &Path, adjust: impl FnOnce(&mut Command)) -> Process {
        Process::start_exe(Process::own_binary(), config, adjust)
    }

    /// `exe` on `setup` with its log at level info in [`Setup::log_path`] (a new file
    /// each start); `adjust` sets the rest of the environment.
    pub fn start_logged(exe: &Path, setup: &Setup, adjust: impl FnOnce(&mut Command)) -> Process {
        let stderr = std::fs::File::create(setup.log_path()).expect("log file");
        Process::start_exe(exe, &setup.path, |c| {
            c.env("RUST_LOG", "info").stderr(stderr);
            adjust(c);
        })
    }

    /// The binary this test build made.
    pub fn own_binary() -> &'static Path {
        Path::new(env!("CARGO_BIN_EXE_polegate"))
    }

    /// [`Process::start`] with another build of the binary (the benches run the cabinet one).
    pub fn start_exe(exe: &Path, config: &Path, adjust: impl FnOnce(&mut Command)) -> Process {
        let mut cmd = Command::new(exe);
        cmd.args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        adjust(&mut cmd);
        Process {
            child: Some(cmd.spawn().expect("spawn polegate")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (a name as `kill` takes it: HUP, TERM, …).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The exit status if the process has exited by itself, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let status = child.try_wait().expect("poll polegate")?;
        self.child = None;
        Some(status)
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for polegate")
    }

    /// Clean stop: SIGTERM, then waits for the exit.
    pub fn stop(self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// SIGKILL: no shutdown at all, as on a power cut.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait for polegate");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
