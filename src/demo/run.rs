//! `polegate demo`: an embedded broker on a free loopback port, Modbus TCP simulators of
//! the shipped profiles, the real `run` pipeline against them (configuration written as
//! TOML and loaded like any other, temporary state directory), and a subscriber that
//! prints every message. No root, no hardware, no other setup. Unless `raw`, it also plays
//! the [`story`] (a command, an uplink cut and its replay, a summary line).

use super::broker;
use super::sim::{Sim, SimKind};
use super::story::{self, Seen, Tally, Uplink};
use crate::app;
use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The shipped profiles, embedded so the demo runs from any directory.
const PROFILES: [(&str, &str); 3] = [
    (
        "generic-lamp-modbus.toml",
        include_str!("../../plugins/generic/generic-lamp-modbus.toml"),
    ),
    (
        "generic-ev-modbus.toml",
        include_str!("../../plugins/generic/generic-ev-modbus.toml"),
    ),
    (
        "eastron-sdm630.toml",
        include_str!("../../plugins/eastron/eastron-sdm630.toml"),
    ),
];

struct DemoDevice {
    id: &'static str,
    profile: &'static str,
    kind: SimKind,
    poll_ms: u64,
    meta: &'static str,
}

const DEVICES: [DemoDevice; 4] = [
    DemoDevice {
        id: "lamp-017",
        profile: "generic-lamp-modbus",
        kind: SimKind::Lamp,
        poll_ms: 1000,
        meta: r#"{ pole = "P-017", street = "Rue de la Liberté", lat = 47.3220, lon = 5.0415 }"#,
    },
    DemoDevice {
        id: "lamp-018",
        profile: "generic-lamp-modbus",
        kind: SimKind::Lamp,
        poll_ms: 1000,
        meta: r#"{ pole = "P-018", street = "Rue de la Liberté", lat = 47.3221, lon = 5.0409 }"#,
    },
    DemoDevice {
        id: "evc-003",
        profile: "generic-ev-modbus",
        kind: SimKind::EvCharger,
        poll_ms: 1000,
        meta: r#"{ pole = "P-020", street = "Place Darcy" }"#,
    },
    DemoDevice {
        id: "meter-main",
        profile: "eastron-sdm630",
        kind: SimKind::Sdm630,
        poll_ms: 2000,
        meta: r#"{ cabinet = "cab-dijon-0042", feeder = "A" }"#,
    },
];

/// A private temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "polegate-demo-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_config(
    dir: &Path,
    broker_port: u16,
    sims: &[(usize, SocketAddr)],
) -> anyhow::Result<PathBuf> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for (name, text) in PROFILES {
        std::fs::write(plugins.join(name), text)?;
    }
    // No boot jitter (`connect_delay_max_ms = 0`): the demo is one gateway, not a district
    // powering up, and on a freshly booted laptop or CI machine it must tell its story.
    let mut toml = format!(
        "# Written by `polegate demo`.\n[gateway]\nid = \"cab-demo\"\nstate_dir = \"state\"\nplugins_dirs = [\"plugins\"]\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nreconnect_min_ms = 200\nreconnect_max_ms = 2000\nconnect_delay_max_ms = 0\n\n\
         [buffer]\nflush_every_ms = 500\n\n[stats]\ninterval_s = 10\n\n[http]\nlisten = \"127.0.0.1:0\"\n"
    );
    for (i, addr) in sims {
        let d = &DEVICES[*i];
        toml.push_str(&format!(
            "\n[[device]]\nid = \"{}\"\nprofile = \"{}\"\npoll_ms = {}\nheartbeat_s = 30\nmeta = {}\nmodbus = {{ address = \"{addr}\", unit = 1 }}\n",
            d.id, d.profile, d.poll_ms, d.meta
        ));
    }
    toml.push_str(&super::schedule::tables());
    let path = dir.join("polegate.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Prints one narration line of the story, between the messages.
fn say(line: String) {
    let _ = writeln!(std::io::stdout().lock(), "==> {line}");
}

/// Runs the demo until `duration` elapses or `cancel` fires; `raw` prints the messages
/// only (no story, no summary).
pub async fn demo(
    duration: Option<Duration>,
    raw: bool,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tmp = TempDir::new()?;
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let broker = tokio::task::spawn_blocking(move || broker::start(bind))
        .await?
        .context("starting the embedded MQTT broker")?;
    let port = broker.port();
    let sim_cancel = CancellationToken::new();
    let mut sims = Vec::new();
    for (i, d) in DEVICES.iter().enumerate() {
        let sim = Sim::spawn(d.kind, "127.0.0.1:0".parse()?, sim_cancel.clone())
            .await
            .with_context(|| format!("starting the {} simulator", d.id))?;
        sims.push(sim);
        let _ = i;
    }
    let addrs: Vec<(usize, SocketAddr)> = sims
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.addr()))
        .collect();
    let uplink = Uplink::start(port, cancel.child_token())
        .await
        .context("starting the demo's uplink relay")?;
    let path = write_config(&tmp.0, uplink.port(), &addrs)?;
    // A PA amplifier on a pseudo-terminal (serial line protocol, Rhai profile).
    let pa = super::pa::PaSim::spawn("01", sim_cancel.clone())
        .and_then(|pa| super::pa::add_to_demo(&tmp.0.join("plugins"), &path, &pa).map(|_| pa));
    if let Err(e) = &pa {
        eprintln!("polegate demo: no simulated PA amplifier ({e})");
    }
    let lora_port = super::lora::prepare(&path, &tmp.0).context("writing the LoRa demo config")?;
    tokio::spawn(super::lora::forwarder(lora_port, sim_cancel.clone()));
    let ocpp_port = super::ocpp::prepare(&path, &tmp.0).context("writing the OCPP demo config")?;
    tokio::spawn(super::ocpp::charger(ocpp_port, sim_cancel.clone()));
    super::poe::start(&path, &tmp.0, sim_cancel.clone())
        .await
        .context("starting the simulated PoE switch")?;

    // The printing subscriber.
    let mut opts = MqttOptions::new("polegate-demo-printer", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut el) = AsyncClient::new(opts, 16);
    client.subscribe("polegate/#", QoS::AtLeastOnce).await?;
    let printer_cancel = cancel.clone();
    let (offline_tx, offline_rx) = tokio::sync::oneshot::channel::<()>();
    let mut offline_tx = Some(offline_tx);
    let (online_tx, online_rx) = tokio::sync::oneshot::channel::<()>();
    let mut online_tx = Some(online_tx);
    let run_cancel = cancel.child_token();
    // Once the gateway is stopping, an offline status is its last word (the uplink cut
    // makes the broker publish the offline will earlier).
    let stopping = run_cancel.clone();
    let cut_once = uplink.cut_once();
    let printer = tokio::spawn(async move {
        let mut tally = Tally::default();
        let mut replaying = false;
        loop {
            let ev = tokio::select! {
                _ = printer_cancel.cancelled() => return tally,
                ev = el.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let payload = String::from_utf8_lossy(&p.payload);
                    let _ = writeln!(std::io::stdout().lock(), "{} {payload}", p.topic);
                    if p.topic.ends_with("/status") {
                        let sender = if payload.contains("\"online\"") {
                            online_tx.take()
                        } else if stopping.is_cancelled() {
                            offline_tx.take()
                        } else {
                            None
                        };
                        if let Some(t) = sender {
                            let _ = t.send(());
                        }
                    }
                    if raw {
                        continue;
                    }
                    let after_cut = cut_once.load(Relaxed);
                    match tally.record(&p.topic, &p.payload, after_cut) {
                        Seen::CommandResult { device, ok, detail } => say(format!(
                            "{device} answered: {} {detail}",
                            if ok { "ok" } else { "failed" }
                        )),
                        Seen::Scheduled {
                            device,
                            step,
                            detail,
                        } => say(format!(
                            "lighting schedule: the gateway itself set {device} ({step}): {detail}"
                        )),
                        Seen::Event { historical: true } if after_cut && !replaying => {
                            replaying = true;
                            say(
                                "replaying the buffer: these events were queued during the cut"
                                    .into(),
                            );
                        }
                        Seen::Event { historical: false } if replaying => {
                            replaying = false;
                            say(format!(
                                "replay done: {} events replayed, live again",
                                tally.replayed
                            ));
                        }
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("polegate demo: printer: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let loaded = app::load(&path, true)
        .map_err(|e| anyhow::anyhow!("demo config invalid:\n{}", e.join("\n")))?;
    // Counted from the configuration the daemon runs (Modbus, the PA line, LoRa alike).
    eprintln!(
        "polegate demo: broker on 127.0.0.1:{port}, {} simulated devices, config {}",
        loaded.config.devices.len(),
        path.display()
    );
    eprintln!("polegate demo: printing every MQTT message (topic, then payload); Ctrl-C stops");
    if let Some(d) = duration {
        let c = run_cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            c.cancel();
        });
    }
    if !raw {
        let topic = (
            loaded.config.mqtt.topic_prefix.clone(),
            loaded.config.gateway.id.clone(),
        );
        let (client, story_cancel) = (client.clone(), run_cancel.clone());
        tokio::spawn(story::play(
            client,
            uplink,
            online_rx,
            topic,
            story_cancel,
            say,
        ));
    }
    let res = app::run(loaded.config, loaded.registry, run_cancel, |h| {
        if let Some(a) = h.http {
            eprintln!(
                "polegate demo: status page http://{a}/ (also /metrics, /healthz, /api/status)"
            );
        }
    })
    .await;
    // Let the printer show the final offline status (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), offline_rx).await;
    cancel.cancel();
    if let Ok(tally) = printer.await
        && !raw
    {
        let _ = writeln!(std::io::stdout().lock(), "{}", tally.summary());
    }
    sim_cancel.cancel();
    // rumqttd cannot be stopped in-process; it ends with the process.
    let _ = broker;
    res.map_err(Into::into)
}
