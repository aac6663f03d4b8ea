//! The §11 keys as a technician writes them: a shared v3 agent with its port
//! devices, a device's own v2c agent, reach alone, and each mistake named at its key.
use super::*;
use crate::config::{Transport, load_with_env};

const HEAD: &str = "[gateway]\nid = \"cab-1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";

fn load(body: &str) -> Result<crate::config::Config, Vec<(String, String)>> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (f, s) in [
        ("c", "public"),
        ("a", "authpass123"),
        ("p", "privpass123"),
        ("short", "x"),
    ] {
        std::fs::write(dir.path().join(f), s).expect("secret");
    }
    let path = dir.path().join("polegate.toml");
    std::fs::write(&path, format!("{HEAD}{body}")).expect("config");
    load_with_env(&path, &[]).map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
}

#[test]
fn a_shared_v3_agent_its_ports_a_direct_agent_and_reach_alone_load() {
    let cfg = load(
        r#"
[[bus]]
id = "poe-sw-1"
kind = "snmp"
address = "10.0.0.2"
version = "3"
user = "polegate"
auth = "sha256"
auth_key_file = "a"
privacy = "aes128"
priv_key_file = "p"
max_oids = 40
[[device]]
id = "cam-1"
profile = "snmp-poe-port-camera"
snmp = { bus = "poe-sw-1", index = 3 }
reach = { tcp = "10.0.0.31:554" }
[[device]]
id = "ap-1"
profile = "snmp-if-mib-interface"
snmp = { address = "10.0.0.41:1161", version = "2c", community_file = "c", index = 2 }
[[device]]
id = "cam-2"
profile = "reach-camera"
reach = { icmp = "10.0.0.32" }
"#,
    )
    .expect("valid");
    let agent = &cfg.snmp_agents["poe-sw-1"];
    assert_eq!(agent.address, "10.0.0.2:161");
    assert_eq!(agent.max_oids, 40);
    assert!(matches!(
        &agent.creds,
        SnmpCreds::V3 {
            auth: AuthProto::Sha256,
            ..
        }
    ));
    assert_eq!(
        cfg.devices[0].transport,
        Transport::Snmp(SnmpDeviceCfg::Bus {
            bus: "poe-sw-1".into(),
            index: Some(3)
        })
    );
    assert_eq!(
        cfg.devices[0].reach,
        Some(ReachCfg::Tcp("10.0.0.31:554".into()))
    );
    let Transport::Snmp(SnmpDeviceCfg::Agent { agent, index }) = &cfg.devices[1].transport else {
        panic!("direct agent");
    };
    assert_eq!(
        (agent.address.as_str(), *index),
        ("10.0.0.41:1161", Some(2))
    );
    assert_eq!(cfg.devices[2].transport, Transport::Reach);
}

#[test]
fn snmp_mistakes_are_named_at_their_keys() {
    let errors = load(
        r#"
[[bus]]
id = "poe-sw-1"
kind = "snmp"
address = "10.0.0.2"
version = "3"
user = "polegate"
auth = "md5"
auth_key_file = "short"
privacy = "des"
priv_key_file = "p"
[[bus]]
id = "rs485"
kind = "serial"
port = "/dev/ttyS1"
[[device]]
id = "cam-1"
profile = "x"
snmp = { bus = "rs485", index = 1 }
[[device]]
id = "cam-2"
profile = "x"
snmp = { address = "10.0.0.3", version = "1" }
[[device]]
id = "cam-3"
profile = "x"
reach = { icmp = "a", tcp = "b:1" }
"#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "bus[0].auth",
        "bus[0].auth_key_file",
        "bus[0].privacy",
        "device[0].snmp.bus",
        "device[1].snmp.version",
        "device[2].reach",
    ] {
        assert!(keys.contains(&k), "{k} not in {errors:#?}");
    }
}

#[test]
fn a_port_profile_without_an_index_is_named_by_check() {
    let cfg = load(
        r#"
[[bus]]
id = "sw"
kind = "snmp"
address = "10.0.0.2"
version = "2c"
community_file = "c"
[[device]]
id = "cam-1"
profile = "snmp-poe-port-camera"
snmp = { bus = "sw" }
[[device]]
id = "sw"
profile = "snmp-poe-switch"
snmp = { bus = "sw" }
"#,
    )
    .expect("valid on its own");
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let (registry, errors) = crate::profile::Registry::load(&[plugins]);
    assert!(errors.is_empty(), "{errors:#?}");
    let errors = crate::config::cross_check(&cfg, &registry);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["device[0].snmp.index"], "{errors:#?}");
}
