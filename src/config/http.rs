//! The typed shape of `[http]` (SPEC §2, §6): the listener of the status page,
//! `/metrics` and `/healthz`. On by default on loopback; `listen = ""` turns it off. A
//! listen address outside loopback requires Basic auth (`password_file`), so the page
//! is never open to the street network by accident. The password is a secret: `Debug`
//! redacts it and errors never echo it.

use super::ctx::{Ctx, resolve};
use super::values::{Checked, OptionalListen};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";

#[derive(Clone, PartialEq, Eq)]
pub struct HttpCfg {
    /// None: no listener.
    pub listen: Option<SocketAddr>,
    /// Basic auth; both or neither.
    pub auth: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for HttpCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCfg")
            .field("listen", &self.listen)
            .field("username", &self.auth.as_ref().map(|a| &a.username))
            .finish()
    }
}

impl Default for HttpCfg {
    fn default() -> Self {
        HttpCfg {
            listen: DEFAULT_LISTEN.parse().ok(),
            auth: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Checked<OptionalListen>>,
    username: Option<String>,
    password_file: Option<String>,
}

/// `[http]` (defaults when absent).
pub(super) fn http(cx: &mut Ctx<'_>, raw: RawHttp) -> Option<HttpCfg> {
    let listen = match raw.listen {
        None => HttpCfg::default().listen,
        Some(l) => cx.valid(None, "http.listen", Some(l))?.get(),
    };
    let password = match &raw.password_file {
        None => None,
        Some(f) => {
            let password = cx.section_secret("http.password_file", f)?;
            if password.is_empty() {
                let path = resolve(&cx.merged.origin_of("http.password_file"), f);
                cx.err("http.password_file", format!("{} is empty", path.display()));
                return None;
            }
            Some(password)
        }
    };
    let auth = match (raw.username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        (Some(_), None) => {
            cx.err("http.username", "needs http.password_file beside it");
            return None;
        }
        (None, Some(_)) => {
            cx.err("http.password_file", "needs http.username beside it");
            return None;
        }
    };
    if let Some(a) = listen
        && !a.ip().is_loopback()
        && auth.is_none()
    {
        cx.err(
            "http.listen",
            format!(
                "{a} is outside loopback: set http.username and http.password_file (Basic auth), or listen on 127.0.0.1"
            ),
        );
        return None;
    }
    Some(HttpCfg { listen, auth })
}
