//! The connection to an MQTT broker, written the same way in `[mqtt]` and in
//! `[lora.chirpstack]`: the url (`mqtt://` or `mqtts://`), the credentials and, for
//! `mqtts://`, `ca_file` and the mutual-TLS `cert_file` + `key_file`. One type and one
//! set of rules, so both sections read and refuse the same things. Paths resolve against
//! the file that set them; the files themselves are read when connecting (`ops::tls`),
//! so a renewed certificate is picked up on the next connect.

use super::ctx::{Ctx, resolve};
use super::values::Secret;
use crate::ops::tls::ClientFiles;
use std::path::PathBuf;

/// A broker connection, checked: the url parsed, the password read, the TLS files
/// resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConn {
    /// As written (error messages and logs show it with any password masked).
    pub url: String,
    /// `mqtts://`: TLS with `ca_file` (or the system roots) and, for mutual TLS,
    /// `cert_file` + `key_file`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    /// Resolved from `password` or the contents of `password_file` (trailing newline trimmed).
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl BrokerConn {
    /// The MQTT login, `(username, password)`, when a username is set; no password is an
    /// empty one.
    pub fn credentials(&self) -> Option<(String, String)> {
        let password = self
            .password
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default();
        Some((self.username.clone()?, password.to_string()))
    }

    /// What `ops::tls::client_config` reads for an `mqtts://` broker; `section` names
    /// the keys in its messages (`mqtt`, `lora.chirpstack`).
    pub fn tls_files(&self, section: &'static str) -> ClientFiles<'_> {
        ClientFiles {
            section,
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
        }
    }
}

/// The keys of a broker section besides `url`, as written.
pub(super) struct RawConn {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `url` of `section` as (tls, host, port), None when it did not parse (the section
/// reports that in its own words), and the other keys: the password read, the TLS files
/// checked and resolved.
pub(super) fn conn(
    cx: &mut Ctx<'_>,
    section: &str,
    url: String,
    parsed: Option<(bool, String, u16)>,
    raw: RawConn,
) -> BrokerConn {
    let password = cx.password(section, raw.password, raw.password_file);
    let url_ok = parsed.is_some();
    let (tls, host, port) = parsed.unwrap_or((false, String::new(), 0));
    let [ca_file, cert_file, key_file] = tls_files(
        cx,
        section,
        tls,
        url_ok,
        [raw.ca_file, raw.cert_file, raw.key_file],
    );
    BrokerConn {
        url,
        tls,
        host,
        port,
        username: raw.username,
        password: password.map(Secret),
        ca_file,
        cert_file,
        key_file,
    }
}

/// Checks and resolves the TLS keys of `section`. `tls`: the url is `mqtts://`;
/// `url_ok`: the url parsed (no second complaint about a url already reported).
fn tls_files(
    cx: &mut Ctx<'_>,
    section: &str,
    tls: bool,
    url_ok: bool,
    written: [Option<String>; 3],
) -> [Option<PathBuf>; 3] {
    const KEYS: [&str; 3] = ["ca_file", "cert_file", "key_file"];
    let files: [Option<PathBuf>; 3] = std::array::from_fn(|i| {
        let origin = cx.merged.origin_of(&format!("{section}.{}", KEYS[i]));
        written[i].as_ref().map(|f| resolve(&origin, f))
    });
    let [_, cert, key] = &files;
    if let Some(k) = key {
        cx.secret(&format!("{section}.key_file"), k);
    }
    match (cert, key) {
        (Some(_), None) => cx.err(
            &format!("{section}.cert_file"),
            "needs key_file too (mutual TLS takes both)",
        ),
        (None, Some(_)) => cx.err(
            &format!("{section}.key_file"),
            "needs cert_file too (mutual TLS takes both)",
        ),
        _ => {}
    }
    if !tls && url_ok {
        for (key, set) in KEYS.iter().zip(&files) {
            if set.is_some() {
                cx.err(
                    &format!("{section}.{key}"),
                    "applies to TLS only; use an mqtts:// url",
                );
            }
        }
    }
    files
}
