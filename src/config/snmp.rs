//! SNMP agents and reachability (SPEC §2, §11): a device's `snmp = {…}` (its own agent,
//! or `bus` + `index` on a shared one), a `[[bus]] kind = "snmp"` (an agent shared by
//! several devices) and a device's `reach = {…}`.
//!
//! Credentials are read from their files at load time (trailing newline trimmed); `Debug`
//! never prints them. v3 is authPriv only: a cabinet's SNMP must not travel in clear.

use super::ctx::Ctx;
use super::ocpp::{Secret, read_secret};
use super::parse::split_host_port;
use super::values::{Checked, Int, Millis, Period};
use super::{BusCfg, BusIndex, BusKind, Parity};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The SNMP port when an address names none.
pub const SNMP_PORT: u16 = 161;
/// OIDs per GET request when `max_oids` is not set (SPEC §11).
pub const DEFAULT_MAX_OIDS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProto {
    Sha1,
    Sha256,
}

/// How polegate authenticates to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpCreds {
    V2c {
        community: Secret,
    },
    /// USM authPriv with AES-128 privacy; the files hold the passphrases (RFC 3414
    /// password-to-key, localized to the agent's engine id after discovery).
    V3 {
        user: String,
        /// The v3 context name (default empty; per-VLAN contexts, simulators).
        context: String,
        auth: AuthProto,
        auth_key: Secret,
        priv_key: Secret,
    },
}

/// One SNMP agent: a device's own, or a `[[bus]] kind = "snmp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpAgentCfg {
    /// `host:port` (port 161 when the config names none).
    pub address: String,
    pub creds: SnmpCreds,
    /// Per exchange; `retries` more attempts after a timeout.
    pub timeout_ms: u64,
    pub retries: u32,
    /// OIDs per GET request.
    pub max_oids: usize,
}

/// A device's `snmp = {…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpDeviceCfg {
    Agent {
        agent: SnmpAgentCfg,
        index: Option<u32>,
    },
    Bus {
        bus: String,
        index: Option<u32>,
    },
}

impl SnmpDeviceCfg {
    pub fn index(&self) -> Option<u32> {
        match self {
            SnmpDeviceCfg::Agent { index, .. } | SnmpDeviceCfg::Bus { index, .. } => *index,
        }
    }
}

/// A device's `reach = {…}`: ICMP echo or TCP connect (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachCfg {
    Icmp(String),
    /// `host:port`.
    Tcp(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    // [[bus]] only
    id: Option<String>,
    kind: Option<String>,
    // a device only
    bus: Option<String>,
    index: Option<Checked<Int<0, { u32::MAX as i64 }>>>,
    address: Option<String>,
    version: Option<String>,
    community_file: Option<String>,
    user: Option<String>,
    context: Option<String>,
    auth: Option<String>,
    auth_key_file: Option<String>,
    privacy: Option<String>,
    priv_key_file: Option<String>,
    timeout_ms: Option<Checked<Millis<1>>>,
    retries: Option<Checked<Int<0, 10>>>,
    max_oids: Option<Checked<Int<1, 500>>>,
}

impl RawAgent {
    fn has_agent_keys(&self) -> bool {
        self.address.is_some()
            || self.version.is_some()
            || self.community_file.is_some()
            || self.user.is_some()
            || self.context.is_some()
            || self.auth.is_some()
            || self.auth_key_file.is_some()
            || self.privacy.is_some()
            || self.priv_key_file.is_some()
            || self.timeout_ms.is_some()
            || self.retries.is_some()
            || self.max_oids.is_some()
    }
}

/// A `[[bus]] kind = "snmp"` entry at `key`.
pub(super) fn bus(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    id: String,
    v: &toml::Value,
) -> Option<(BusCfg, SnmpAgentCfg)> {
    let raw = cx.de::<RawAgent>(Some(file), v.clone(), key)?;
    if raw.bus.is_some() || raw.index.is_some() {
        cx.at(
            file,
            key,
            "bus and index belong on the devices (snmp = { bus = \"<this id>\", index = N })",
        );
    }
    let agent = agent(cx, file, key, raw)?;
    let cfg = BusCfg {
        id,
        kind: BusKind::Snmp,
        port: PathBuf::new(),
        baud: 0,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms: agent.timeout_ms,
        retries: agent.retries,
        origin: format!("{}: {key}", file.display()),
    };
    Some((cfg, agent))
}

/// A device's `snmp = {…}` at `key`.
pub(super) fn device(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    t: toml::Table,
    buses: &BusIndex,
) -> Option<SnmpDeviceCfg> {
    let raw = cx.de::<RawAgent>(Some(file), toml::Value::Table(t), key)?;
    for (k, present) in [("id", raw.id.is_some()), ("kind", raw.kind.is_some())] {
        if present {
            cx.at(file, &format!("{key}.{k}"), "belongs on a [[bus]]");
        }
    }
    let index = raw.index.clone().map(|i| {
        cx.valid(Some(file), &format!("{key}.index"), Some(i))
            .map_or(0, |i| i.get() as u32)
    });
    match raw.bus.clone() {
        Some(bus) => {
            if raw.has_agent_keys() {
                let msg = "a device on a shared agent takes only bus and index; address, version and credentials go on the [[bus]]";
                cx.at(file, key, msg);
            }
            match buses.get(&bus) {
                None => cx.at(
                    file,
                    &format!("{key}.bus"),
                    format!("bus '{bus}' is not declared by any [[bus]]"),
                ),
                Some(Some(k)) if *k != BusKind::Snmp => {
                    let msg = format!(
                        "bus '{bus}' is a {} bus; snmp needs a [[bus]] of kind snmp",
                        super::bus_kind_label(*k)
                    );
                    cx.at(file, &format!("{key}.bus"), msg);
                }
                Some(_) => {}
            }
            Some(SnmpDeviceCfg::Bus { bus, index })
        }
        None => agent(cx, file, key, raw).map(|agent| SnmpDeviceCfg::Agent { agent, index }),
    }
}

/// Address, version, credentials and limits of one agent.
fn agent(cx: &mut Ctx<'_>, file: &Path, key: &str, raw: RawAgent) -> Option<SnmpAgentCfg> {
    let k = |s: &str| format!("{key}.{s}");
    let mut ok = true;
    let address = match raw.address {
        None => {
            cx.at(
                file,
                &k("address"),
                "is required: the agent, e.g. address = \"10.0.0.31:161\"",
            );
            ok = false;
            String::new()
        }
        Some(a) => match split_host_port(&a, Some(SNMP_PORT)) {
            Some((host, port)) => format!("{host}:{port}"),
            None => {
                cx.at(
                    file,
                    &k("address"),
                    format!("'{a}' is not host or host:port (port 1..=65535)"),
                );
                ok = false;
                a
            }
        },
    };
    let timeout_ms = cx
        .valid(Some(file), &k("timeout_ms"), raw.timeout_ms)
        .map_or(1000, Period::get);
    let retries = cx
        .valid(Some(file), &k("retries"), raw.retries)
        .map_or(1, |r| r.get() as u32);
    let max_oids = cx
        .valid(Some(file), &k("max_oids"), raw.max_oids)
        .map_or(DEFAULT_MAX_OIDS, |m| m.get() as usize);
    // None after an error at the key (then `creds` is None too).
    let secret = |cx: &mut Ctx<'_>, name: &str, v: Option<String>, what: &str| match v {
        Some(p) => read_secret(cx, file, &k(name), &p),
        None => {
            cx.at(file, &k(name), format!("is required: {what}"));
            None
        }
    };
    let creds = match raw.version.as_deref() {
        Some("2c") => {
            for (name, present) in [
                ("user", raw.user.is_some()),
                ("context", raw.context.is_some()),
                ("auth", raw.auth.is_some()),
                ("auth_key_file", raw.auth_key_file.is_some()),
                ("privacy", raw.privacy.is_some()),
                ("priv_key_file", raw.priv_key_file.is_some()),
            ] {
                if present {
                    cx.at(file, &k(name), "applies to version = \"3\" only");
                }
            }
            secret(
                cx,
                "community_file",
                raw.community_file,
                "the file holding the community",
            )
            .map(|community| SnmpCreds::V2c { community })
        }
        Some("3") => {
            if raw.community_file.is_some() {
                cx.at(
                    file,
                    &k("community_file"),
                    "applies to version = \"2c\" only",
                );
            }
            let user = raw.user.filter(|u| !u.is_empty() && u.len() <= 32);
            if user.is_none() {
                cx.at(
                    file,
                    &k("user"),
                    "is required: the USM user name (1-32 characters)",
                );
            }
            let auth = match raw.auth.as_deref() {
                Some("sha1") => Some(AuthProto::Sha1),
                Some("sha256") => Some(AuthProto::Sha256),
                other => {
                    let got = other.map_or("missing".to_string(), |s| format!("'{s}'"));
                    cx.at(file, &k("auth"), format!("{got}: expected sha1 or sha256"));
                    None
                }
            };
            if raw.privacy.as_deref() != Some("aes128") {
                let got = raw
                    .privacy
                    .as_deref()
                    .map_or("missing".to_string(), |s| format!("'{s}'"));
                cx.at(
                    file,
                    &k("privacy"),
                    format!("{got}: expected aes128 (authPriv)"),
                );
                ok = false;
            }
            let auth_key = secret(
                cx,
                "auth_key_file",
                raw.auth_key_file,
                "the authentication passphrase file",
            );
            let priv_key = secret(
                cx,
                "priv_key_file",
                raw.priv_key_file,
                "the privacy passphrase file",
            );
            for (name, s) in [("auth_key_file", &auth_key), ("priv_key_file", &priv_key)] {
                if s.as_ref().is_some_and(|s| s.0.len() < 8) {
                    cx.at(
                        file,
                        &k(name),
                        "the passphrase must have at least 8 characters (RFC 3414)",
                    );
                    ok = false;
                }
            }
            match (user, auth, auth_key, priv_key) {
                (Some(user), Some(auth), Some(auth_key), Some(priv_key)) => Some(SnmpCreds::V3 {
                    user,
                    context: raw.context.unwrap_or_default(),
                    auth,
                    auth_key,
                    priv_key,
                }),
                _ => None,
            }
        }
        other => {
            let got = other.map_or("missing".to_string(), |s| format!("'{s}'"));
            cx.at(
                file,
                &k("version"),
                format!("{got}: expected \"2c\" or \"3\""),
            );
            None
        }
    };
    let creds = creds?;
    ok.then_some(SnmpAgentCfg {
        address,
        creds,
        timeout_ms,
        retries,
        max_oids,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReach {
    icmp: Option<String>,
    tcp: Option<String>,
}

/// A device's `reach = {…}` at `key`.
pub(super) fn reach(cx: &mut Ctx<'_>, file: &Path, key: &str, t: toml::Table) -> Option<ReachCfg> {
    let raw = cx.de::<RawReach>(Some(file), toml::Value::Table(t), key)?;
    match (raw.icmp, raw.tcp) {
        (Some(host), None) => {
            if host.is_empty() || host.contains(char::is_whitespace) {
                cx.at(
                    file,
                    &format!("{key}.icmp"),
                    format!("'{host}' is not a host name or address"),
                );
                return None;
            }
            Some(ReachCfg::Icmp(host))
        }
        (None, Some(addr)) => match split_host_port(&addr, None) {
            Some((host, port)) => Some(ReachCfg::Tcp(format!("{host}:{port}"))),
            None => {
                cx.at(
                    file,
                    &format!("{key}.tcp"),
                    format!("'{addr}' is not host:port, e.g. \"10.0.0.31:554\""),
                );
                None
            }
        },
        _ => {
            cx.at(
                file,
                key,
                "needs exactly one of icmp = \"HOST\" or tcp = \"HOST:PORT\"",
            );
            None
        }
    }
}

#[cfg(test)]
#[path = "snmp_tests.rs"]
mod tests;
