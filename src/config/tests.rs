//! Proves the configuration contract (SPEC §2, §8): every committed invalid config under
//! `tests/fixtures/config/invalid/` is rejected with the exact key path and a message
//! that says what is wrong; all problems are reported at once; conf.d merges in name
//! order with key paths into the merged lists; environment overrides (injected, never
//! the process environment); relative paths; syntax errors with line and column.

use super::check::summary;
use super::values::Secret;
use super::{ConfigError, Framing, OnFull, Parity, Transport, cross_check, load_with_env};
use crate::model::Kind;
use crate::profile::{Profile, Protocol, Registry};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors_of(path: &Path, vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match load_with_env(path, &env(vars)) {
        Ok(_) => panic!("{} loaded but should be invalid", path.display()),
        Err(e) => e.0,
    }
}

fn profile(name: &str, kind: Kind, protocol: Protocol) -> Profile {
    Profile {
        name: name.into(),
        kind,
        protocol,
        vendor: None,
        model: None,
        description: None,
        poll_ms: None,
        points: Vec::new(),
        uplink_interval_s: None,
        serial: None,
        lora: None,
        snmp: None,
        source: PathBuf::from(format!("/usr/share/polegate/plugins/{name}.toml")),
    }
}

/// (fixture, key path, message fragment)
const INVALID: &[(&str, &str, &str)] = &[
    (
        "unit_out_of_range",
        "device[3].modbus.unit",
        "300 is out of range 1..=247",
    ),
    ("two_transports", "device[0]", "has both modbus and serial"),
    (
        "no_transport",
        "device[0]",
        "has no transport: set exactly one of modbus, serial, lora, ocpp or snmp",
    ),
    (
        "duplicate_device_id",
        "device[2].id",
        "duplicate id 'lamp-1': already used by device[0]",
    ),
    ("duplicate_bus_id", "bus[1].id", "duplicate id 'rs485-1'"),
    (
        "unknown_key_in_transport",
        "device[0].modbus.unti",
        "unknown field `unti`",
    ),
    (
        "unknown_key_in_section",
        "mqtt.pasword",
        "unknown field `pasword`",
    ),
    ("unknown_section", "gatway", "unknown key"),
    (
        "device_not_an_array",
        "device",
        "must be an array of tables, written [[device]]",
    ),
    ("missing_gateway_id", "gateway.id", "is required"),
    (
        "bad_gateway_id",
        "gateway.id",
        "'cab dijon' is not a valid id",
    ),
    (
        "missing_mqtt_url",
        "mqtt.url",
        "is required: mqtt://host[:port] or mqtts://host[:port]",
    ),
    (
        "bad_mqtt_url",
        "mqtt.url",
        "'http://broker:1883' is not mqtt://host[:port]",
    ),
    (
        "url_with_credentials",
        "mqtt.url",
        "credentials go in username and password",
    ),
    (
        "password_and_password_file",
        "mqtt.password_file",
        "mutually exclusive",
    ),
    (
        "password_file_unreadable",
        "mqtt.password_file",
        "no-such.secret",
    ),
    ("cert_without_key", "mqtt.cert_file", "needs key_file too"),
    (
        "tls_file_without_mqtts",
        "mqtt.ca_file",
        "use an mqtts:// url",
    ),
    (
        "max_inflight_zero",
        "mqtt.max_inflight",
        "0 is out of range 1..=65535",
    ),
    (
        "reconnect_min_above_max",
        "mqtt.reconnect_max_ms",
        "1000 is below reconnect_min_ms (5000)",
    ),
    (
        "keep_alive_wrong_type",
        "mqtt.keep_alive_s",
        "invalid type: string \"30\", expected an integer",
    ),
    (
        "buffer_too_small",
        "buffer.max_bytes",
        "1024 bytes is too small: at least 64KiB",
    ),
    ("buffer_bad_size", "buffer.max_bytes", "is not a size"),
    (
        "buffer_bad_on_full",
        "buffer.on_full",
        "expected drop_oldest or drop_newest",
    ),
    (
        "buffer_zero_flush",
        "buffer.flush_every_ms",
        "0 is out of range: must be at least 1",
    ),
    ("bus_bad_kind", "bus[0].kind", "'canbus' is not a bus kind"),
    ("bus_missing_port", "bus[0].port", "is required"),
    (
        "bus_bad_data_bits",
        "bus[0].data_bits",
        "9 is not allowed: expected 7 or 8",
    ),
    (
        "bus_bad_parity",
        "bus[0].parity",
        "expected none, even or odd",
    ),
    (
        "modbus_address_and_bus",
        "device[0].modbus",
        "address and bus are mutually exclusive",
    ),
    (
        "modbus_bad_address",
        "device[0].modbus.address",
        "'10.0.0.1' is not host:port",
    ),
    (
        "modbus_bad_port",
        "device[0].modbus.address",
        "'10.0.0.1:70000' is not host:port",
    ),
    (
        "modbus_tcp_unit_out_of_range",
        "device[0].modbus.unit",
        "256 is out of range 0..=255",
    ),
    (
        "modbus_bad_framing",
        "device[0].modbus.framing",
        "expected tcp (Modbus TCP) or rtu",
    ),
    (
        "modbus_bus_unit_missing",
        "device[0].modbus.unit",
        "is required on a bus",
    ),
    (
        "modbus_bus_undeclared",
        "device[0].modbus.bus",
        "bus 'rs485-9' is not declared",
    ),
    (
        "modbus_on_serial_bus",
        "device[0].modbus.bus",
        "bus 'pa-line' is a serial bus",
    ),
    (
        "serial_on_modbus_bus",
        "device[0].serial.bus",
        "is a modbus_rtu bus; serial needs",
    ),
    (
        "serial_missing_address",
        "device[0].serial.address",
        "is required",
    ),
    (
        "lora_bad_dev_eui",
        "device[0].lora.dev_eui",
        "'0004a30b001c05' is not 16 hex digits: it has 14",
    ),
    (
        "lora_bad_key",
        "device[0].lora.app_s_key",
        "the key (7 characters, not shown) is not 32 hex digits: character 1 is not 0-9 or a-f",
    ),
    (
        "lora_bad_dev_addr",
        "device[0].lora.dev_addr",
        "'26011bdaff' is not 8 hex digits: it has 10",
    ),
    (
        "poll_ms_too_small",
        "device[0].poll_ms",
        "5 is out of range: must be at least 10",
    ),
    (
        "meta_not_scalar",
        "device[0].meta.tags",
        "must be a string, number or boolean (meta is flat), got an array",
    ),
    ("device_missing_profile", "device[0].profile", "is required"),
    (
        "device_bad_id",
        "device[0].id",
        "'lamp/1' is not a valid id",
    ),
    (
        "device_enabled_wrong_type",
        "device[0].enabled",
        "invalid type: string \"yes\"",
    ),
];

#[test]
fn each_invalid_fixture_is_rejected_with_its_key_path_and_a_clear_message() {
    let mut failures = Vec::new();
    for (name, key, fragment) in INVALID {
        let path = fixtures().join(format!("invalid/{name}.toml"));
        let errors = errors_of(&path, &[]);
        let hit = errors
            .iter()
            .any(|e| e.key == *key && e.message.contains(fragment) && e.file == path);
        if !hit || errors.len() != 1 {
            failures.push(format!(
                "{name}: want exactly `{key}: ...{fragment}...`, got {errors:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_invalid_fixture_is_covered_by_the_table() {
    let dir = fixtures().join("invalid");
    let mut listed: Vec<&str> = INVALID.iter().map(|(n, _, _)| *n).collect();
    listed.push("many_errors");
    for entry in std::fs::read_dir(dir).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            listed.contains(&stem.as_str()),
            "{stem} is not in the table"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once_not_only_the_first() {
    let path = fixtures().join("invalid/many_errors.toml");
    let keys: Vec<String> = errors_of(&path, &[]).into_iter().map(|e| e.key).collect();
    for want in [
        "gateway.id",
        "mqtt.max_inflight",
        "buffer.on_full",
        "bus[0].baud",
        "device[0].modbus.unit",
        "device[1].id",
        "device[2].modbus.unti",
        "device[2].enabled",
    ] {
        assert!(
            keys.iter().any(|k| k == want),
            "{want} missing from {keys:?}"
        );
    }
}

#[test]
fn conf_d_files_are_merged_in_name_order_with_entries_appended_and_keys_overridden() {
    let dir = fixtures().join("valid");
    let cfg = load_with_env(&dir.join("polegate.toml"), &[]).expect("valid");
    let ids: Vec<&str> = cfg.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["lamp-1", "lamp-2", "ev-1", "pa-1"]);
    let buses: Vec<&str> = cfg.buses.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(buses, ["rs485-1", "pa-line"]);
    // Overridden by 10-east.toml; the rest of [mqtt] is kept from the main file.
    assert_eq!(cfg.mqtt.topic_prefix, "dijon");
    assert_eq!(cfg.mqtt.broker.username.as_deref(), Some("cab-fixture"));
    assert_eq!(cfg.stats.interval_s, 0);
    // Files not ending in .toml are ignored.
    assert_eq!(cfg.gateway.id, "cab-fixture");
    assert_eq!(
        cfg.devices[2].origin,
        format!("{}: device[2]", dir.join("conf.d/10-east.toml").display())
    );
    assert_eq!(
        cfg.buses[1].origin,
        format!("{}: bus[1]", dir.join("conf.d/20-west.toml").display())
    );
}

#[test]
fn valid_config_gets_defaults_and_parsed_transports() {
    let cfg = load_with_env(&fixtures().join("valid/polegate.toml"), &[]).expect("valid");
    let m = &cfg.mqtt;
    assert!(m.broker.tls);
    assert_eq!(
        (m.broker.host.as_str(), m.broker.port),
        ("broker.city.example", 8883)
    );
    assert_eq!(m.client_id, "cab-fixture");
    assert_eq!(
        (m.keep_alive_s, m.max_inflight, m.replay_rate),
        (30, 64, 1000)
    );
    assert_eq!((m.reconnect_min_ms, m.reconnect_max_ms), (500, 60_000));
    assert_eq!(m.connect_delay_max_ms, 10_000);
    assert_eq!(cfg.buffer.max_bytes, 256 * 1024 * 1024);
    assert_eq!(cfg.buffer.memory_max_bytes, 4 * 1024 * 1024);
    assert_eq!(cfg.buffer.flush_every_ms, 1000);
    assert_eq!(cfg.buffer.on_full, OnFull::DropOldest);
    assert!(cfg.commands.enabled);
    assert_eq!(cfg.buses[0].parity, Parity::Even);
    assert_eq!(cfg.buses[1].parity, Parity::None);
    assert_eq!((cfg.buses[0].baud, cfg.buses[1].baud), (19200, 9600));
    let d = &cfg.devices;
    assert_eq!(
        d[0].transport,
        Transport::ModbusTcp {
            address: "10.0.0.1:502".into(),
            unit: 1,
            framing: Framing::Tcp
        }
    );
    assert_eq!(
        d[1].transport,
        Transport::ModbusBus {
            bus: "rs485-1".into(),
            unit: 2
        }
    );
    assert_eq!(d[2].transport.label(), "modbus_rtu_over_tcp");
    assert_eq!(
        d[3].transport,
        Transport::Serial {
            bus: "pa-line".into(),
            address: "01".into()
        }
    );
    assert!(!d[1].enabled);
    assert_eq!(
        (d[0].poll_ms, d[1].poll_ms, d[0].heartbeat_s),
        (None, Some(2500), 300)
    );
    assert_eq!(d[0].meta["street"], "Rue de la Liberté");
    assert_eq!(d[0].meta["lat"], 47.3220);
    assert_eq!(d[0].meta["lit"], true);
}

#[test]
fn relative_paths_resolve_against_the_directory_of_the_file_that_holds_them() {
    let dir = fixtures().join("valid");
    let cfg = load_with_env(&dir.join("polegate.toml"), &[]).expect("valid");
    assert_eq!(cfg.gateway.state_dir, dir.join("state"));
    assert_eq!(
        cfg.gateway.plugins_dirs,
        [
            dir.join("plugins"),
            PathBuf::from("/usr/share/polegate/plugins")
        ]
    );
    // password_file is read, its trailing newline trimmed.
    assert_eq!(
        cfg.mqtt.broker.password.as_ref().map(Secret::expose),
        Some("s3cret")
    );
    // Set in conf.d/10-east.toml, so relative to conf.d/.
    assert_eq!(
        cfg.mqtt.broker.ca_file,
        Some(dir.join("conf.d/east-ca.pem"))
    );
}

#[test]
fn errors_in_conf_d_name_that_file_and_index_into_the_merged_list() {
    let dir = fixtures().join("merge_errors");
    let errors = errors_of(&dir.join("polegate.toml"), &[]);
    let more = dir.join("conf.d/10-more.toml");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let dup = errors
        .iter()
        .find(|e| e.key == "device[3].id")
        .expect("duplicate reported");
    assert_eq!(dup.file, more);
    assert!(
        dup.message.contains("already used by device[0] in"),
        "{}",
        dup.message
    );
    let unit = errors
        .iter()
        .find(|e| e.key == "device[2].modbus.unit")
        .expect("unit reported");
    assert_eq!(
        unit.to_string(),
        format!(
            "{}: device[2].modbus.unit: 300 is out of range 0..=255",
            more.display()
        )
    );
}

#[test]
fn environment_overrides_set_numbers_and_strings() {
    let path = fixtures().join("valid/polegate.toml");
    let vars = [
        ("POLEGATE__MQTT__KEEP_ALIVE_S", "45"),
        ("POLEGATE__GATEWAY__ID", "cab-env-7"),
        ("POLEGATE__MQTT__PASSWORD_FILE", "secrets/mqtt.secret"),
        ("POLEGATE__BUFFER__ON_FULL", "\"drop_newest\""),
        ("POLEGATE__COMMANDS__ENABLED", "false"),
        ("UNRELATED", "1"),
    ];
    let cfg = load_with_env(&path, &env(&vars)).expect("valid");
    assert_eq!(cfg.mqtt.keep_alive_s, 45);
    assert_eq!(cfg.gateway.id, "cab-env-7");
    assert_eq!(cfg.mqtt.client_id, "cab-env-7");
    assert_eq!(cfg.buffer.on_full, OnFull::DropNewest);
    assert!(!cfg.commands.enabled);
}

#[test]
fn a_numeric_password_from_the_environment_stays_a_string() {
    let path = fixtures().join("invalid/max_inflight_zero.toml");
    let vars = [
        ("POLEGATE__MQTT__PASSWORD", "123456"),
        ("POLEGATE__MQTT__MAX_INFLIGHT", "8"),
    ];
    let cfg = load_with_env(&path, &env(&vars)).expect("fixed by the environment");
    assert_eq!(
        cfg.mqtt.broker.password.as_ref().map(Secret::expose),
        Some("123456")
    );
    assert_eq!(cfg.mqtt.max_inflight, 8);
}

#[path = "tests_more.rs"]
mod more;
