//! Proves that a plan's settings are config only: equal for an unchanged configuration
//! whatever its devices' runtime state or their place in the file, different when a
//! driver's own inputs change (a credential included, never shown), and a change that
//! only one driver reads restarts only that driver.

use super::*;
use crate::model::LinkState;
use std::collections::BTreeMap;
use std::path::Path;

/// Plans `body` (after a gateway and mqtt head) with the shipped profiles; the
/// community file holds `community`. Settings by driver key, and the device infos.
fn planned(
    body: &str,
    community: &str,
) -> (BTreeMap<String, DriverSettings>, Vec<Arc<DeviceInfo>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c"), community).expect("community");
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let head = format!(
        "[gateway]\nid = \"cab-1\"\nplugins_dirs = [{:?}]\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n",
        plugins.display().to_string()
    );
    let path = dir.path().join("polegate.toml");
    std::fs::write(&path, format!("{head}{body}")).expect("config");
    let cfg = crate::config::load(&path).expect("valid configuration");
    let (registry, _) = Registry::load(&cfg.gateway.plugins_dirs);
    let mut infos = Vec::new();
    let mut settings = BTreeMap::new();
    for p in plan(&cfg, &registry) {
        infos.extend(p.devices.iter().cloned());
        settings.insert(p.key, p.settings);
    }
    (settings, infos)
}

const LAMPS: &str = r#"
[[device]]
id = "lamp-1"
profile = "generic-lamp-modbus"
modbus = { address = "10.0.0.17:502", unit = 1 }
reach = { tcp = "10.0.0.17:80" }
[[device]]
id = "lamp-2"
profile = "generic-lamp-modbus"
modbus = { address = "10.0.0.18:502", unit = 1 }
"#;

const AGENT: &str = r#"
[[bus]]
id = "sw"
kind = "snmp"
address = "10.0.0.2"
version = "2c"
community_file = "c"
[[device]]
id = "cam-1"
profile = "snmp-poe-port-camera"
snmp = { bus = "sw", index = 3 }
"#;

#[test]
fn settings_ignore_the_devices_runtime_state_and_their_place_in_the_file() {
    let (before, infos) = planned(LAMPS, "public");
    for info in &infos {
        info.link.set(LinkState::Online);
    }
    let (again, _) = planned(LAMPS, "public");
    assert_eq!(before, again);
    // The same entries in the other order: each device's origin (`device[0]`) changes.
    let (first, second) =
        LAMPS.split_at(LAMPS.find("[[device]]\nid = \"lamp-2\"").expect("lamp-2"));
    let (swapped, _) = planned(&format!("{second}{first}"), "public");
    assert_eq!(before, swapped);
}

#[test]
fn a_changed_reach_target_changes_the_reach_task_only() {
    let (before, _) = planned(LAMPS, "public");
    let (after, _) = planned(&LAMPS.replace("10.0.0.17:80", "10.0.0.17:8080"), "public");
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(changed, ["reach"]);
}

#[test]
fn a_changed_community_changes_the_agents_settings_without_showing_it() {
    let (a, _) = planned(AGENT, "public-1");
    let (b, _) = planned(AGENT, "public-2");
    assert_ne!(a["snmp sw"], b["snmp sw"]);
    let shown = format!("{:?}", a["snmp sw"]);
    assert!(!shown.contains("public-1"), "{shown}");
}
