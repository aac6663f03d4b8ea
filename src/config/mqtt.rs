//! The `[mqtt]` section (SPEC §2): broker URL and TLS files, credentials, session and
//! reconnect timing, each value checked with the key it came from.

use super::MqttCfg;
use super::broker::{RawConn, conn};
use super::ctx::Ctx;
use super::parse::{parse_mqtt_url, without_password};
use super::values::{Checked, Int, Millis, Period};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    url: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    topic_prefix: Option<String>,
    keep_alive_s: Option<Checked<Int<0, 65535>>>,
    max_inflight: Option<Checked<Int<1, 65535>>>,
    replay_rate: Option<Checked<Int<0, { u32::MAX as i64 }>>>,
    reconnect_min_ms: Option<Checked<Millis<1>>>,
    reconnect_max_ms: Option<Checked<Millis<1>>>,
    connect_delay_max_ms: Option<Checked<Millis<0>>>,
}

pub(super) fn mqtt(cx: &mut Ctx<'_>, gateway_id: &str) -> Option<MqttCfg> {
    let m = cx.section::<RawMqtt>("mqtt")?;
    let (url, parsed) = match m.url {
        None => {
            cx.err(
                "mqtt.url",
                "is required: mqtt://host[:port] or mqtts://host[:port]",
            );
            (String::new(), None)
        }
        Some(url) => {
            let parsed = parse_mqtt_url(&url);
            if parsed.is_none() {
                cx.err(
                    "mqtt.url",
                    format!("'{}' is not mqtt://host[:port] or mqtts://host[:port] (credentials go in username and password)", without_password(&url)),
                );
            }
            (url, parsed)
        }
    };
    let raw = RawConn {
        username: m.username,
        password: m.password,
        password_file: m.password_file,
        ca_file: m.ca_file,
        cert_file: m.cert_file,
        key_file: m.key_file,
    };
    let broker = conn(cx, "mqtt", url, parsed, raw);
    let topic_prefix = m.topic_prefix.unwrap_or_else(|| "polegate".into());
    if topic_prefix.is_empty() || topic_prefix.contains(['+', '#']) || topic_prefix.ends_with('/') {
        cx.err(
            "mqtt.topic_prefix",
            format!("'{topic_prefix}' is not a topic prefix: non-empty, no + or #, no trailing /"),
        );
    }
    let keep_alive_s = cx
        .valid(None, "mqtt.keep_alive_s", m.keep_alive_s)
        .map_or(30, |v| v.get() as u64);
    let max_inflight = cx
        .valid(None, "mqtt.max_inflight", m.max_inflight)
        .map_or(64, |v| v.get() as u16);
    let replay_rate = cx
        .valid(None, "mqtt.replay_rate", m.replay_rate)
        .map_or(1000, |v| v.get() as u32);
    let reconnect_min_ms = cx
        .valid(None, "mqtt.reconnect_min_ms", m.reconnect_min_ms)
        .map_or(500, Period::get);
    let reconnect_max_ms = cx
        .valid(None, "mqtt.reconnect_max_ms", m.reconnect_max_ms)
        .map_or(60_000, Period::get);
    let connect_delay_max_ms = cx
        .valid(None, "mqtt.connect_delay_max_ms", m.connect_delay_max_ms)
        .map_or(10_000, Period::get);
    if reconnect_min_ms > reconnect_max_ms {
        cx.err(
            "mqtt.reconnect_max_ms",
            format!("{reconnect_max_ms} is below reconnect_min_ms ({reconnect_min_ms})"),
        );
    }
    Some(MqttCfg {
        broker,
        client_id: m.client_id.unwrap_or_else(|| gateway_id.to_string()),
        topic_prefix,
        keep_alive_s,
        max_inflight,
        replay_rate,
        reconnect_min_ms,
        reconnect_max_ms,
        connect_delay_max_ms,
    })
}

impl MqttCfg {
    /// What `ops::tls::client_config` reads for an `mqtts://` broker.
    pub fn tls_files(&self) -> crate::ops::tls::ClientFiles<'_> {
        self.broker.tls_files("mqtt")
    }
}
