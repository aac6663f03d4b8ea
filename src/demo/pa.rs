//! A simulated PA-100 amplifier (plugins/generic/generic-pa-serial.toml) on one end of a
//! pseudo-terminal pair: answers `@AA?` with its status, applies `V`/`M`/`P`/`S` writes,
//! and can push an unsolicited alarm, inject noise, or stay silent (tests and demo).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

/// What the amplifier reports; tests change it through [`PaSim::state`].
#[derive(Debug, Clone, PartialEq)]
pub struct PaState {
    pub address: String,
    pub volume: u16,
    pub muted: bool,
    pub playing: bool,
    pub amp_ok: bool,
    pub line_fault: bool,
    pub temperature: f32,
    /// Never answer (a dead device).
    pub silent: bool,
    /// Lines received (requests and writes), for assertions.
    pub received: Vec<String>,
}

impl PaState {
    pub fn new(address: &str) -> PaState {
        PaState {
            address: address.to_string(),
            volume: 40,
            muted: false,
            playing: false,
            amp_ok: true,
            line_fault: false,
            temperature: 31.5,
            silent: false,
            received: Vec::new(),
        }
    }

    fn status(&self) -> String {
        format!(
            "#{} VOL={:03} MUTE={} PLAY={} AMP={} LINE={} TEMP={:.1}\r\n",
            self.address,
            self.volume,
            self.muted as u8,
            self.playing as u8,
            if self.amp_ok { "OK" } else { "FAIL" },
            if self.line_fault { "FAULT" } else { "OK" },
            self.temperature
        )
    }

    /// The reply to one line (without CR LF), or None when it is not for us.
    fn answer(&mut self, line: &str) -> Option<String> {
        let rest = line.strip_prefix('@')?;
        let cmd = rest.strip_prefix(self.address.as_str())?;
        self.received.push(line.to_string());
        let ok = format!("#{} OK\r\n", self.address);
        let err = |n: u8| format!("#{} ERR {n}\r\n", self.address);
        let num = |s: &str| s.parse::<u16>().ok();
        Some(match cmd.split_at_checked(1) {
            Some(("?", "")) => self.status(),
            Some(("V", v)) => match num(v).filter(|v| *v <= 100) {
                Some(v) => {
                    self.volume = v;
                    ok
                }
                None => err(1),
            },
            Some(("M", "0" | "1")) => {
                self.muted = cmd == "M1";
                ok
            }
            Some(("P", v)) if num(v).is_some() => {
                self.playing = true;
                ok
            }
            Some(("S", "")) => {
                self.playing = false;
                ok
            }
            _ => err(3),
        })
    }
}

/// A running simulator; dropping it does not stop it (cancel the token).
pub struct PaSim {
    pub state: Arc<Mutex<PaState>>,
    /// Raw bytes to push onto the line (alarms, noise).
    pub inject: mpsc::Sender<Vec<u8>>,
    /// The path the gateway opens (`port = ...`).
    pub path: PathBuf,
    /// Our handle on the gateway's end, kept open so the line stays up.
    _slave: SerialStream,
}

impl PaSim {
    /// Starts the amplifier on a new pseudo-terminal pair.
    pub fn spawn(address: &str, cancel: CancellationToken) -> std::io::Result<PaSim> {
        let (master, slave) = SerialStream::pair().map_err(std::io::Error::other)?;
        let path = tokio_serial::SerialPort::name(&slave)
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("pseudo-terminal without a name"))?;
        let state = Arc::new(Mutex::new(PaState::new(address)));
        let (inject, rx) = mpsc::channel(16);
        tokio::spawn(run(master, state.clone(), rx, cancel));
        Ok(PaSim {
            state,
            inject,
            path,
            _slave: slave,
        })
    }

    /// Pushes an unsolicited line (`!AA LINE=FAULT`).
    pub async fn push_line(&self, line: &str) {
        let _ = self.inject.send(format!("{line}\r\n").into_bytes()).await;
    }
}

/// Adds the amplifier to a demo configuration: its profile and script into `plugins`,
/// a serial bus on the simulator's pseudo-terminal and a device `pa-001` into `config`.
pub fn add_to_demo(plugins: &Path, config: &Path, sim: &PaSim) -> std::io::Result<()> {
    std::fs::write(
        plugins.join("generic-pa-serial.toml"),
        include_str!("../../plugins/generic/generic-pa-serial.toml"),
    )?;
    std::fs::write(
        plugins.join("generic-pa-serial.rhai"),
        include_str!("../../plugins/generic/generic-pa-serial.rhai"),
    )?;
    let address = sim
        .state
        .lock()
        .map(|s| s.address.clone())
        .unwrap_or_default();
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(config)?;
    writeln!(
        f,
        "\n[[bus]]\nid = \"pa-line\"\nkind = \"serial\"\nport = \"{}\"\nbaud = 9600\nparity = \"none\"\ntimeout_ms = 500\n\n\
         [[device]]\nid = \"pa-001\"\nprofile = \"generic-pa-serial\"\npoll_ms = 2000\nheartbeat_s = 30\n\
         meta = {{ pole = \"P-021\", street = \"Place Darcy\" }}\nserial = {{ bus = \"pa-line\", address = \"{address}\" }}",
        sim.path.display()
    )
}

async fn run(
    mut port: SerialStream,
    state: Arc<Mutex<PaState>>,
    mut inject: mpsc::Receiver<Vec<u8>>,
    cancel: CancellationToken,
) {
    let mut buf = [0u8; 256];
    let mut line = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(bytes) = inject.recv() => {
                if port.write_all(&bytes).await.is_err() { return; }
            }
            r = port.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        // Nobody on the other end yet: wait and retry.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    line.push(b);
                    if line.ends_with(b"\r\n") {
                        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                        line.clear();
                        let reply = {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            if s.silent { None } else { s.answer(&text) }
                        };
                        if let Some(r) = reply
                            && port.write_all(r.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                    if line.len() > 256 {
                        line.clear();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The amplifier's line protocol.
    use super::*;

    #[test]
    fn the_amplifier_answers_polls_and_writes_and_ignores_other_addresses() {
        let mut s = PaState::new("01");
        assert_eq!(
            s.answer("@01?").unwrap(),
            "#01 VOL=040 MUTE=0 PLAY=0 AMP=OK LINE=OK TEMP=31.5\r\n"
        );
        assert_eq!(s.answer("@01V055").unwrap(), "#01 OK\r\n");
        assert_eq!(s.volume, 55);
        assert_eq!(s.answer("@01V155").unwrap(), "#01 ERR 1\r\n");
        assert_eq!(s.answer("@01M1").unwrap(), "#01 OK\r\n");
        assert!(s.muted);
        assert_eq!(s.answer("@02?"), None);
        assert_eq!(s.answer("@01X").unwrap(), "#01 ERR 3\r\n");
    }
}
