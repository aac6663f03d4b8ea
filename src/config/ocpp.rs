//! The typed shape of `[ocpp]` and of a device's `ocpp = {…}` (SPEC §2, §9).
//!
//! Passwords are read from their files at load time (trailing newline trimmed); `Debug`
//! never prints them.

use super::ctx::{Ctx, join_key, resolve};
pub use super::values::Secret;
use super::values::{Checked, Int, ListenAddr};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorize {
    /// Every idTag is accepted.
    Accept,
    /// Only the idTags of `id_tags`.
    AllowList,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcppCfg {
    pub listen: SocketAddr,
    /// `wss://` (security profile 2): certificate chain and key, PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub heartbeat_s: u64,
    pub authorize: Authorize,
    pub id_tags: Vec<String>,
    /// Proxy mode: the operator's CSMS (`ws://` or `wss://`), charge point id appended.
    pub upstream: Option<String>,
}

impl OcppCfg {
    /// The idTag policy of central-system mode (SPEC §9 StartTransaction, Authorize).
    pub fn accepts(&self, id_tag: &str) -> bool {
        self.authorize == Authorize::Accept || self.id_tags.iter().any(|t| t == id_tag)
    }

    /// What `check` and `run` warn about (SPEC §9): passwords in clear off loopback.
    pub fn warning(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && self.tls.is_none()).then(|| {
            format!(
                "ocpp.listen {} is outside loopback without cert_file: charger passwords travel in clear (OCPP security profile 1 is only for closed networks; set cert_file and key_file for wss://)",
                self.listen
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcppDeviceCfg {
    pub charge_point_id: String,
    /// 1-based connector number.
    pub connector: u32,
    /// Basic auth password the charger must present (security profile 1).
    pub password: Option<Secret>,
    /// Proxy mode: Basic auth password polegate presents to the upstream CSMS.
    pub upstream_password: Option<Secret>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOcpp {
    listen: Option<Checked<ListenAddr>>,
    cert_file: Option<String>,
    key_file: Option<String>,
    heartbeat_s: Option<Checked<Int<10, 86_400>>>,
    authorize: Option<String>,
    id_tags: Option<Vec<String>>,
    upstream: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    charge_point_id: Option<String>,
    connector: Option<Checked<Int<1, 99>>>,
    password_file: Option<String>,
    upstream_password_file: Option<String>,
}

/// Charge point ids go into a URL path: keep them to characters that need no escaping.
fn valid_cp_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Checks across `[ocpp]` and the devices: a charger device needs the listener, a
/// (charge point, connector) pair belongs to one device, a listener outside loopback
/// needs a password on every device (SPEC §9), and the devices of one charge point share
/// one password (the charger presents one).
pub(super) fn cross(cx: &mut Ctx<'_>, ocpp: Option<&OcppCfg>, devices: &[super::DeviceCfg]) {
    let mut seen = std::collections::BTreeMap::new();
    let mut passwords: std::collections::BTreeMap<&str, (&Option<Secret>, &str)> =
        Default::default();
    let open_listen = ocpp.map(|c| c.listen).filter(|l| !l.ip().is_loopback());
    for d in devices {
        let super::Transport::Ocpp(o) = &d.transport else {
            continue;
        };
        let file = PathBuf::from(d.origin.rsplit_once(": ").map_or("", |(f, _)| f));
        let key = d
            .origin
            .rsplit_once(": ")
            .map_or(d.origin.as_str(), |(_, k)| k)
            .to_string();
        if ocpp.is_none() {
            cx.at(
                &file,
                &format!("{key}.ocpp"),
                "needs an [ocpp] section (the listener chargers connect to)",
            );
        }
        if o.upstream_password.is_some() && ocpp.is_some_and(|c| c.upstream.is_none()) {
            cx.at(
                &file,
                &format!("{key}.ocpp.upstream_password_file"),
                "only used in proxy mode (ocpp.upstream)",
            );
        }
        if let Some(listen) = open_listen
            && o.password.is_none()
        {
            cx.at(
                &file,
                &format!("{key}.ocpp.password_file"),
                format!("is required: ocpp.listen {listen} is outside loopback, and without a password anyone reaching it can pose as this charger"),
            );
        }
        match passwords.get(o.charge_point_id.as_str()) {
            Some((pw, other)) if *pw != &o.password => cx.at(
                &file,
                &format!("{key}.ocpp.password_file"),
                format!(
                    "charge point '{}' has another password (or none) on device '{other}': the devices of one charge point share its password",
                    o.charge_point_id
                ),
            ),
            Some(_) => {}
            None => {
                passwords.insert(&o.charge_point_id, (&o.password, &d.id));
            }
        }
        if let Some(first) = seen.insert((o.charge_point_id.clone(), o.connector), d.id.clone()) {
            cx.at(
                &file,
                &format!("{key}.ocpp.connector"),
                format!(
                    "charge point '{}' connector {} is already device '{first}'",
                    o.charge_point_id, o.connector
                ),
            );
        }
    }
}

/// `[ocpp]`, when present.
pub(super) fn gateway(cx: &mut Ctx<'_>, v: &toml::Value) -> Option<OcppCfg> {
    let raw: RawOcpp = cx.de(None, v.clone(), "ocpp")?;
    let mut ok = true;
    let listen = match raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8887)),
        Some(l) => cx.valid(None, "ocpp.listen", Some(l)).map_or_else(
            || {
                ok = false;
                SocketAddr::from(([127, 0, 0, 1], 8887))
            },
            ListenAddr::get,
        ),
    };
    let tls = match (raw.cert_file, raw.key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let key = resolve(&cx.merged.origin_of("ocpp.key_file"), &k);
            cx.secret("ocpp.key_file", &key);
            Some((resolve(&cx.merged.origin_of("ocpp.cert_file"), &c), key))
        }
        (Some(_), None) => {
            cx.err("ocpp.key_file", "is required with cert_file (wss://)");
            ok = false;
            None
        }
        (None, Some(_)) => {
            cx.err("ocpp.cert_file", "is required with key_file (wss://)");
            ok = false;
            None
        }
    };
    for (key, path) in tls
        .iter()
        .flat_map(|(c, k)| [("cert_file", c), ("key_file", k)])
    {
        if let Err(e) = std::fs::metadata(path) {
            cx.err(
                &format!("ocpp.{key}"),
                format!("cannot read {}: {e}", path.display()),
            );
            ok = false;
        }
    }
    let heartbeat_s = cx
        .valid(None, "ocpp.heartbeat_s", raw.heartbeat_s)
        .map_or(300, |h| h.get() as u64);
    let authorize = match raw.authorize.as_deref().unwrap_or("accept") {
        "accept" => Authorize::Accept,
        "allow_list" => Authorize::AllowList,
        other => {
            cx.err(
                "ocpp.authorize",
                format!("'{other}' is not accept or allow_list"),
            );
            ok = false;
            Authorize::Accept
        }
    };
    let id_tags = raw.id_tags.unwrap_or_default();
    if authorize == Authorize::Accept && !id_tags.is_empty() {
        cx.err("ocpp.id_tags", "only used with authorize = \"allow_list\"");
        ok = false;
    }
    for (i, t) in id_tags.iter().enumerate() {
        if t.is_empty() || t.len() > 20 {
            cx.err(
                &format!("ocpp.id_tags[{i}]"),
                "an OCPP idTag is 1 to 20 characters",
            );
            ok = false;
        }
    }
    let upstream = raw.upstream.map(|u| u.trim_end_matches('/').to_string());
    if let Some(u) = &upstream {
        let host = u.strip_prefix("ws://").or_else(|| u.strip_prefix("wss://"));
        if host.is_none_or(str::is_empty) {
            cx.err(
                "ocpp.upstream",
                format!("'{u}' is not a ws:// or wss:// URL"),
            );
            ok = false;
        }
    }
    ok.then_some(OcppCfg {
        listen,
        tls,
        heartbeat_s,
        authorize,
        id_tags,
        upstream,
    })
}

pub(super) fn read_secret(cx: &mut Ctx<'_>, file: &Path, key: &str, p: &str) -> Option<Secret> {
    let path = if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        file.parent().unwrap_or(Path::new("")).join(p)
    };
    cx.read_secret(file, key, &path).map(Secret)
}

/// A device's `ocpp = {…}` at `key` in `file`.
pub(super) fn device(
    cx: &mut Ctx<'_>,
    file: &Path,
    key: &str,
    t: toml::Table,
) -> Option<OcppDeviceCfg> {
    let raw: RawDevice = cx.de(Some(file), toml::Value::Table(t), key)?;
    let mut ok = true;
    let cp = raw.charge_point_id.unwrap_or_default();
    if !valid_cp_id(&cp) {
        let k = join_key(key, "charge_point_id");
        let msg = if cp.is_empty() {
            "is required: the id the charger puts in its URL".to_string()
        } else {
            format!("'{cp}' must be 1-64 characters of A-Z a-z 0-9 - _ . :")
        };
        cx.at(file, &k, msg);
        ok = false;
    }
    let connector = cx
        .valid(Some(file), &join_key(key, "connector"), raw.connector)
        .map_or(1, |c| c.get() as u32);
    let password = raw.password_file.and_then(|p| {
        read_secret(cx, file, &join_key(key, "password_file"), &p).or_else(|| {
            ok = false;
            None
        })
    });
    let upstream_password = raw.upstream_password_file.and_then(|p| {
        read_secret(cx, file, &join_key(key, "upstream_password_file"), &p).or_else(|| {
            ok = false;
            None
        })
    });
    ok.then_some(OcppDeviceCfg {
        charge_point_id: cp,
        connector,
        password,
        upstream_password,
    })
}
