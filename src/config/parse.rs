//! Pure parsers for the values the configuration checks: ids, broker URLs, `host:port`
//! addresses and buffer sizes. No I/O.

/// `[A-Za-z0-9_-]{1,64}`, the shape of gateway, bus and device ids.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "'{id}' is not a valid id: use 1 to 64 characters among A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` -> (tls, host, port).
pub fn parse_mqtt_url(url: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        (false, url.strip_prefix("mqtt://")?)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = split_host_port(rest, Some(default_port))?;
    Some((tls, host, port))
}

/// `host:port` (`[v6]:port` too); the port is 1..=65535. `default` applies when absent.
pub fn split_host_port(s: &str, default: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (format!("[{h}]"), Some(p)),
            None if after.is_empty() => (format!("[{h}]"), None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    let bare = !host.starts_with('[');
    if host.is_empty() || (bare && host.contains(':')) || host.contains(char::is_whitespace) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
        None => default?,
    };
    Some((host, port))
}

/// `262144`, `"262144"`, `"256KiB"`, `"256 MiB"`, `"1GiB"`.
pub fn parse_size(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).ok(),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().ok()?;
            let mult: u64 = match unit.trim() {
                "" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                _ => return None,
            };
            n.checked_mul(mult)
        }
        _ => None,
    }
}
