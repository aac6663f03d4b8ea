//! A simulated PoE switch with two cameras for `polegate demo` (SPEC §11): an SNMP v2c
//! agent in-process (the `async-snmp` agent) answering sysUpTime, the main PSE and RFC
//! 3621 port objects (`pethPsePortAdminEnable` writable), and per camera an "RTSP" TCP
//! port that answers while the camera is powered and not hung. Camera 2 starts hung (its
//! port is powered but it answers nothing); the story power-cycles it from the switch,
//! and once powered again it boots and answers.

use crate::ops::lock::lock;
use async_snmp::Oid;
use async_snmp::agent::Agent;
use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerResult, MibHandler, PreparedSet, RequestContext,
    SetCommitResult, SetTestError, SetTestResult, SetUndoResult,
};
use async_snmp::value::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const SWITCH_ID: &str = "poe-switch";
pub const CAMERAS: [&str; 2] = ["cam-p1", "cam-p2"];
/// The camera the story power-cycles.
pub const HUNG_CAMERA: &str = "cam-p2";
const COMMUNITY: &str = "demo-community";
/// A camera answers this long after its port is powered again.
const BOOT: Duration = Duration::from_secs(1);
const ADMIN: [u32; 12] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 3, 1];
const DETECT: [u32; 12] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 6, 1];
const UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const MAIN_POWER: [u32; 13] = [1, 3, 6, 1, 2, 1, 105, 1, 3, 1, 1, 2, 1];
const MAIN_CONSUMPTION: [u32; 13] = [1, 3, 6, 1, 2, 1, 105, 1, 3, 1, 1, 4, 1];

#[derive(Debug, Clone, Copy)]
struct Port {
    enabled: bool,
    hung: bool,
    /// When its camera was last powered.
    powered_at: Instant,
}

#[derive(Clone)]
struct Switch {
    started: Instant,
    ports: Arc<Mutex<Vec<Port>>>,
}

impl Switch {
    fn ports(&self) -> Vec<Port> {
        lock(&self.ports).clone()
    }

    fn value(&self, oid: &Oid) -> GetResult {
        let arcs = oid.as_ref();
        let port = |prefix: &[u32]| -> Option<usize> {
            let rest = arcs.strip_prefix(prefix)?;
            match rest {
                [n] if (1..=CAMERAS.len() as u32).contains(n) => Some(*n as usize - 1),
                _ => None,
            }
        };
        let ports = self.ports();
        if arcs == UPTIME {
            let ticks = self.started.elapsed().as_millis() / 10;
            return GetResult::Value(Value::TimeTicks(ticks.min(u32::MAX.into()) as u32));
        }
        if arcs == MAIN_POWER {
            return GetResult::Value(Value::Gauge32(120));
        }
        if arcs == MAIN_CONSUMPTION {
            let on = ports.iter().filter(|p| p.enabled).count() as u32;
            return GetResult::Value(Value::Gauge32(7 * on));
        }
        if let Some(i) = port(&ADMIN) {
            return GetResult::Value(Value::Integer(if ports[i].enabled { 1 } else { 2 }));
        }
        if let Some(i) = port(&DETECT) {
            // deliveringPower(3) while enabled, disabled(1) otherwise.
            return GetResult::Value(Value::Integer(if ports[i].enabled { 3 } else { 1 }));
        }
        GetResult::NoSuchInstance
    }
}

struct SetAdmin {
    switch: Switch,
    port: usize,
    enabled: bool,
    previous: Option<Port>,
}

impl PreparedSet for SetAdmin {
    fn commit<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, SetCommitResult> {
        Box::pin(async move {
            {
                let mut ports = lock(&self.switch.ports);
                let p = &mut ports[self.port];
                self.previous = Some(*p);
                if self.enabled && !p.enabled {
                    // Power back: the camera boots, its hang is gone.
                    p.powered_at = Instant::now();
                    p.hung = false;
                }
                p.enabled = self.enabled;
            }
            Ok(())
        })
    }

    fn undo<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, SetUndoResult> {
        Box::pin(async move {
            if let Some(prev) = self.previous.take() {
                lock(&self.switch.ports)[self.port] = prev;
            }
            Ok(())
        })
    }
}

impl MibHandler for Switch {
    fn get<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetResult>> {
        Box::pin(async move { Ok(self.value(oid)) })
    }

    fn get_next<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        Box::pin(async move { Ok(GetNextResult::EndOfMibView) })
    }

    fn test_set<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        oid: &'a Oid,
        value: &'a Value,
    ) -> BoxFuture<'a, SetTestResult> {
        Box::pin(async move {
            let Some(port) = oid
                .as_ref()
                .strip_prefix(ADMIN.as_slice())
                .and_then(|r| match r {
                    [n] if (1..=CAMERAS.len() as u32).contains(n) => Some(*n as usize - 1),
                    _ => None,
                })
            else {
                return Err(SetTestError::NotWritable);
            };
            let enabled = match value {
                Value::Integer(1) => true,
                Value::Integer(2) => false,
                Value::Integer(_) => return Err(SetTestError::WrongValue),
                _ => return Err(SetTestError::WrongType),
            };
            Ok(Box::new(SetAdmin {
                switch: self.clone(),
                port,
                enabled,
                previous: None,
            }) as Box<dyn PreparedSet>)
        })
    }
}

/// Serves each camera's "RTSP" port while it is powered, booted and not hung.
async fn camera(switch: Switch, port: usize, addr: SocketAddr, cancel: CancellationToken) {
    let mut listener: Option<tokio::net::TcpListener> = None;
    loop {
        let p = switch.ports()[port];
        let answers = p.enabled && !p.hung && p.powered_at.elapsed() >= BOOT;
        match (answers, &listener) {
            (true, None) => listener = tokio::net::TcpListener::bind(addr).await.ok(),
            (false, Some(_)) => listener = None,
            _ => {}
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick => {}
            Ok(_) = async { match &listener { Some(l) => l.accept().await, None => std::future::pending().await } } => {}
        }
    }
}

/// Starts the switch's agent and the cameras; writes the profiles and the `[[bus]]` and
/// devices into the demo's config.
pub async fn start(config: &Path, dir: &Path, cancel: CancellationToken) -> anyhow::Result<()> {
    let plugins = dir.join("plugins");
    std::fs::write(
        plugins.join("snmp-poe-switch.toml"),
        include_str!("../../plugins/snmp/poe-switch.toml"),
    )?;
    std::fs::write(
        plugins.join("snmp-poe-port-camera.toml"),
        include_str!("../../plugins/snmp/poe-port-camera.toml"),
    )?;
    std::fs::write(dir.join("snmp.community"), COMMUNITY)?;
    let now = Instant::now();
    let switch = Switch {
        started: now,
        ports: Arc::new(Mutex::new(
            CAMERAS
                .iter()
                .map(|id| Port {
                    enabled: true,
                    hung: *id == HUNG_CAMERA,
                    powered_at: now - BOOT,
                })
                .collect(),
        )),
    };
    let agent = Agent::builder()
        .bind("127.0.0.1:0")
        .community(COMMUNITY.as_bytes())
        .handler(async_snmp::oid!(1, 3, 6, 1, 2, 1), Arc::new(switch.clone()))
        .allow_all_access()
        .build()
        .await?;
    let agent_addr = agent.local_addr();
    let agent_cancel = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = agent_cancel.cancelled() => {}
            r = agent.run() => if let Err(e) = r { eprintln!("polegate demo: PoE switch agent: {e}") },
        }
    });
    let mut text = format!(
        "\n[[bus]]\nid = \"poe-sw\"\nkind = \"snmp\"\naddress = \"{agent_addr}\"\nversion = \"2c\"\ncommunity_file = \"snmp.community\"\n\n\
         [[device]]\nid = \"{SWITCH_ID}\"\nprofile = \"snmp-poe-switch\"\npoll_ms = 2000\nheartbeat_s = 30\n\
         meta = {{ cabinet = \"cab-dijon-0042\" }}\nsnmp = {{ bus = \"poe-sw\" }}\n"
    );
    for (i, id) in CAMERAS.iter().enumerate() {
        let rtsp = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        tokio::spawn(camera(switch.clone(), i, rtsp, cancel.clone()));
        text.push_str(&format!(
            "\n[[device]]\nid = \"{id}\"\nprofile = \"snmp-poe-port-camera\"\npoll_ms = 1000\nheartbeat_s = 30\n\
             meta = {{ pole = \"P-01{}\" }}\nsnmp = {{ bus = \"poe-sw\", index = {} }}\nreach = {{ tcp = \"{rtsp}\" }}\n",
            i + 7,
            i + 1
        ));
    }
    super::append_config(config, &text)?;
    Ok(())
}
