//! More configuration tests: syntax errors, missing files, the cross-check against
//! profiles, the check summary, the shipped example, sizes, URLs and LoRa-only keys,
//! bad environment overrides.

use super::*;

#[test]
fn a_syntax_error_names_the_file_line_and_column() {
    let path = fixtures().join("syntax/polegate.toml");
    let errors = errors_of(&path, &[]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, path);
    assert_eq!(errors[0].key, "");
    assert!(
        errors[0]
            .message
            .starts_with("TOML syntax error at line 5, column 7:"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_syntax_error_in_conf_d_names_that_file() {
    let dir = fixtures().join("syntax_conf_d");
    let errors = errors_of(&dir.join("polegate.toml"), &[]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, dir.join("conf.d/50-bad.toml"));
    assert!(
        errors[0].message.contains("at line 4,"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let path = fixtures().join("no-such-dir/polegate.toml");
    let errors = errors_of(&path, &[]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, path);
    assert!(
        errors[0].message.starts_with("cannot read:"),
        "{}",
        errors[0].message
    );
}

#[test]
fn cross_check_reports_missing_profiles_and_protocol_mismatches() {
    let dir = fixtures().join("valid");
    let cfg = load_with_env(&dir.join("polegate.toml"), &[]).expect("valid");
    let mut reg = Registry::default();
    reg.insert(profile("generic-lamp-modbus", Kind::Lamp, Protocol::Modbus));
    reg.insert(profile(
        "generic-ev-modbus",
        Kind::EvCharger,
        Protocol::Serial,
    ));
    let errors = cross_check(&cfg, &reg);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].key, "device[2].profile");
    assert_eq!(errors[0].file, dir.join("conf.d/10-east.toml"));
    assert!(
        errors[0]
            .message
            .contains("speaks serial but the device has a modbus_rtu_over_tcp transport")
    );
    assert_eq!(errors[1].key, "device[3].profile");
    assert_eq!(errors[1].file, dir.join("conf.d/20-west.toml"));
    assert!(
        errors[1].message.starts_with(&format!(
            "profile 'serial-pa' not found in plugins_dirs [{}, /usr/share/polegate/plugins]",
            dir.join("plugins").display()
        )),
        "{}",
        errors[1].message
    );
    reg.insert(profile(
        "generic-ev-modbus",
        Kind::EvCharger,
        Protocol::Modbus,
    ));
    reg.insert(profile("serial-pa", Kind::PaSpeaker, Protocol::Serial));
    assert_eq!(cross_check(&cfg, &reg), []);
}

#[test]
fn the_check_summary_counts_devices_and_never_shows_the_password() {
    let cfg = load_with_env(&fixtures().join("valid/polegate.toml"), &[]).expect("valid");
    let mut reg = Registry::default();
    reg.insert(profile("generic-lamp-modbus", Kind::Lamp, Protocol::Modbus));
    reg.insert(profile(
        "generic-ev-modbus",
        Kind::EvCharger,
        Protocol::Modbus,
    ));
    let s = summary(&cfg, &reg);
    for want in [
        "gateway     cab-fixture",
        "mqtts://broker.city.example",
        "devices     4 (3 enabled, 1 disabled)",
        "by kind       ev_charger 1, lamp 2, unknown 1",
        "by transport  modbus_bus 1, modbus_rtu_over_tcp 1, modbus_tcp 1, serial 1",
        "/usr/share/polegate/plugins/generic-lamp-modbus.toml",
        "serial-pa",
        "NOT FOUND",
        "rs485-1",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("s3cret"), "{s}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let cfg = load_with_env(&path, &[]).expect("config/example.toml must be valid");
    assert_eq!(cfg.gateway.id, "cab-dijon-0042");
    assert_eq!(
        cfg.gateway.plugins_dirs,
        [path.parent().expect("dir").join("../plugins")]
    );
    let mut profiles: Vec<&str> = cfg.devices.iter().map(|d| d.profile.as_str()).collect();
    profiles.sort();
    profiles.dedup();
    assert_eq!(
        profiles,
        ["eastron-sdm630", "generic-ev-modbus", "generic-lamp-modbus"]
    );
}

#[test]
fn sizes_accept_integers_and_binary_units() {
    use crate::config::parse::parse_size;
    let s = |x: &str| parse_size(&toml::Value::String(x.into()));
    assert_eq!(s("256MiB"), Some(256 << 20));
    assert_eq!(s("64 KiB"), Some(64 << 10));
    assert_eq!(s("1GiB"), Some(1 << 30));
    assert_eq!(s("65536"), Some(65536));
    assert_eq!(s("1MB"), None);
    assert_eq!(s("MiB"), None);
    assert_eq!(parse_size(&toml::Value::Integer(-1)), None);
}

#[test]
fn broker_urls_default_their_port_by_scheme() {
    use crate::config::parse::parse_mqtt_url;
    assert_eq!(parse_mqtt_url("mqtt://b"), Some((false, "b".into(), 1883)));
    assert_eq!(parse_mqtt_url("mqtts://b"), Some((true, "b".into(), 8883)));
    assert_eq!(
        parse_mqtt_url("mqtts://b:9000/"),
        Some((true, "b".into(), 9000))
    );
    assert_eq!(
        parse_mqtt_url("mqtt://[::1]:1884"),
        Some((false, "[::1]".into(), 1884))
    );
    assert_eq!(parse_mqtt_url("mqtt://b:0"), None);
    assert_eq!(parse_mqtt_url("mqtt://b/x"), None);
    assert_eq!(parse_mqtt_url("tcp://b"), None);
}

#[test]
fn offline_after_s_is_a_device_key_for_lora_devices_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("polegate.toml");
    let base = "[gateway]\nid = \"g\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n[lora]\n";
    let lora_dev = "[[device]]\nid = \"s1\"\nprofile = \"p\"\noffline_after_s = 600\n\
        lora = { dev_eui = \"0004a30b001c0530\", activation = \"abp\", dev_addr = \"26011bda\", \
        nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\" }\n";
    std::fs::write(&path, format!("{base}{lora_dev}")).unwrap();
    let cfg = load_with_env(&path, &[]).expect("valid");
    match &cfg.devices[0].transport {
        Transport::Lora(l) => assert_eq!(l.offline_after_s, Some(600)),
        other => panic!("not lora: {other:?}"),
    }
    let modbus_dev = "[[device]]\nid = \"m1\"\nprofile = \"p\"\noffline_after_s = 600\n\
        modbus = { address = \"10.0.0.1:502\" }\n";
    std::fs::write(&path, format!("{base}{modbus_dev}")).unwrap();
    let errs = load_with_env(&path, &[]).expect_err("invalid").0;
    assert!(
        errs.iter().any(|e| e.key == "device[0].offline_after_s"),
        "{errs:?}"
    );
}
#[test]
fn state_directory_is_the_default_state_dir_when_the_key_is_absent() {
    let path = fixtures().join("invalid/max_inflight_zero.toml");
    let ok = [("POLEGATE__MQTT__MAX_INFLIGHT", "1")];
    let cfg = load_with_env(&path, &env(&ok)).expect("valid");
    assert_eq!(cfg.gateway.state_dir, PathBuf::from("/var/lib/polegate"));
    let with = [
        ok[0],
        ("STATE_DIRECTORY", "/var/lib/polegate-a:/var/lib/other"),
    ];
    let cfg = load_with_env(&path, &env(&with)).expect("valid");
    assert_eq!(cfg.gateway.state_dir, PathBuf::from("/var/lib/polegate-a"));
    // The key, when present, wins over $STATE_DIRECTORY.
    let valid = fixtures().join("valid");
    let cfg = load_with_env(&valid.join("polegate.toml"), &env(&with[1..])).expect("valid");
    assert_eq!(cfg.gateway.state_dir, valid.join("state"));
}

#[test]
fn bad_environment_overrides_name_the_variable_and_the_key() {
    let path = fixtures().join("valid/polegate.toml");
    let vars = [
        ("POLEGATE__MQTT__MAX_INFLIGHT", "lots"),
        ("POLEGATE__MQTT__PASWORD", "x"),
        ("POLEGATE__DEVICE__ID", "x"),
    ];
    let errors = errors_of(&path, &vars);
    let find = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key}: {errors:#?}"))
    };
    let e = find("mqtt.max_inflight");
    assert_eq!(
        e.file,
        PathBuf::from("environment POLEGATE__MQTT__MAX_INFLIGHT")
    );
    assert!(
        e.message.contains("invalid type: string \"lots\""),
        "{}",
        e.message
    );
    assert_eq!(
        find("mqtt.pasword").file,
        PathBuf::from("environment POLEGATE__MQTT__PASWORD")
    );
    assert!(
        find("device")
            .message
            .contains("cannot be overridden from the environment")
    );
}

#[test]
fn a_config_loaded_twice_compares_equal_and_a_changed_section_does_not() {
    // A reload is diffed with ==: every type describing a driver, link, device or
    // broker section is Eq.
    fn eq<T: Eq>() {}
    eq::<crate::config::MqttCfg>();
    eq::<crate::config::BrokerConn>();
    eq::<crate::config::BusCfg>();
    eq::<crate::config::DeviceCfg>();
    eq::<crate::config::lora::LoraCfg>();
    eq::<crate::config::ocpp::OcppCfg>();
    eq::<crate::config::snmp::SnmpAgentCfg>();
    eq::<crate::config::http::HttpCfg>();
    let path = fixtures().join("valid/polegate.toml");
    let a = load_with_env(&path, &[]).expect("valid");
    assert_eq!(a, load_with_env(&path, &[]).expect("valid"));
    let b = load_with_env(&path, &env(&[("POLEGATE__MQTT__CLIENT_ID", "other")])).expect("valid");
    assert_ne!(a.mqtt, b.mqtt);
    assert_eq!(a.mqtt.broker, b.mqtt.broker);
    assert_eq!((&a.buses, &a.devices), (&b.buses, &b.devices));
}

#[test]
fn the_debug_form_of_a_config_never_shows_the_broker_password() {
    let path = fixtures().join("invalid/max_inflight_zero.toml");
    let vars = [
        ("POLEGATE__MQTT__PASSWORD", "s3cret-Dijon"),
        ("POLEGATE__MQTT__MAX_INFLIGHT", "8"),
    ];
    let cfg = load_with_env(&path, &env(&vars)).expect("fixed by the environment");
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("s3cret-Dijon"), "{shown}");
    assert!(
        shown.contains("password: Some(Secret(<redacted>))"),
        "{shown}"
    );
}
