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

/// A value as an error message quotes it: at most 32 characters, the rest elided, so a
/// pasted blob does not flood the terminal.
pub fn shown(s: &str) -> String {
    const MAX: usize = 32;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX - 1).collect();
    format!("{head}…")
}

/// What is wrong with `s` as exactly `n` hex digits, naming the value (never a `secret`
/// one: a key is described by its length), what was expected and the first bad character.
pub fn hex_problem(s: &str, n: usize, secret: bool) -> String {
    let len = s.chars().count();
    let value = if secret {
        format!("the key ({len} characters, not shown)")
    } else {
        format!("'{}'", shown(s))
    };
    let why = match s.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
        Some((i, _)) if secret => format!("character {} is not 0-9 or a-f", i + 1),
        Some((i, c)) => format!("'{c}' (character {}) is not 0-9 or a-f", i + 1),
        None => format!("it has {len}"),
    };
    format!("{value} is not {n} hex digits: {why}")
}

/// `url` with any `user:password@` part masked, for error messages.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return shown(url);
    };
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            shown(&format!("{scheme}://{user}:***@{host}"))
        }
        None => shown(url),
    }
}

#[cfg(test)]
mod tests {
    //! The shapes of value errors: values shortened, keys never quoted, passwords masked.
    use super::*;

    #[test]
    fn a_non_hex_key_of_the_right_length_says_which_character_is_wrong_without_quoting_it() {
        let m = hex_problem("zz0102030405060708090a0b0c0d0e0f", 32, true);
        assert_eq!(
            m,
            "the key (32 characters, not shown) is not 32 hex digits: character 1 is not 0-9 or a-f"
        );
        assert!(!m.contains("0102"));
        assert_eq!(
            hex_problem("0004a30b001c05", 16, false),
            "'0004a30b001c05' is not 16 hex digits: it has 14"
        );
        assert_eq!(
            hex_problem("26011bdx", 8, false),
            "'26011bdx' is not 8 hex digits: 'x' (character 8) is not 0-9 or a-f"
        );
    }

    #[test]
    fn long_values_are_shortened_and_url_passwords_masked() {
        let long = "a".repeat(100);
        assert_eq!(shown(&long).chars().count(), 32);
        assert!(shown(&long).ends_with('…'));
        assert_eq!(
            without_password("mqtt://user:secret@broker"),
            "mqtt://user:***@broker"
        );
        assert_eq!(without_password("http://broker:1883"), "http://broker:1883");
    }
}
