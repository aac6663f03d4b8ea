//! Proves that the shipped plugins load, that every problem of a broken profile is
//! reported with its file and key path (line and column for syntax errors), and that
//! discovery walks vendor folders, tolerates missing dirs and reports duplicates.
use super::*;
use crate::profile::WordOrder;
use std::fs;

const LAMP_HEAD: &str = "name = \"t\"\nkind = \"lamp\"\nprotocol = \"modbus\"\n";

fn errors_of(text: &str) -> Vec<ProfileError> {
    parse(Path::new("t.toml"), text).expect_err("must be rejected")
}

fn keys_of(text: &str) -> Vec<String> {
    errors_of(text).into_iter().map(|e| e.key).collect()
}

fn point(body: &str) -> String {
    format!("{LAMP_HEAD}[[point]]\n{body}\n")
}

#[test]
fn snmp_points_need_an_oid_of_an_snmp_type_and_power_cycle_needs_a_writable_poe_port() {
    let head = "name = \"c\"\nkind = \"camera\"\nprotocol = \"snmp\"\n";
    let no_oid = format!("{head}[[point]]\nname = \"uptime\"\nunit = \"s\"\ntype = \"u32\"\n");
    assert_eq!(keys_of(&no_oid), ["point[0].oid"]);
    let float = format!(
        "{head}[[point]]\nname = \"uptime\"\nunit = \"s\"\ntype = \"f32\"\noid = \"1.3.6.1.2.1.1.3.0\"\n"
    );
    assert_eq!(keys_of(&float), ["point[0].type"]);
    let bad_oid = format!(
        "{head}[[point]]\nname = \"uptime\"\nunit = \"s\"\ntype = \"u32\"\noid = \"sysUpTime.0\"\n"
    );
    assert_eq!(keys_of(&bad_oid), ["point[0].oid"]);
    let cycle =
        format!("{head}[[point]]\nname = \"power_cycle\"\ntype = \"bool\"\nwritable = true\n");
    assert_eq!(keys_of(&cycle), ["point"]);
    let on_modbus = point(
        "name = \"on\"\ntype = \"bool\"\ntable = \"coil\"\naddress = 0\noid = \"1.3.6.1.2.1.1.3.0\"",
    );
    assert_eq!(keys_of(&on_modbus), ["point[0].oid"]);
    let ok = format!(
        "{head}[snmp]\ncycle_off_s = 2\n[[point]]\nname = \"poe_enabled\"\ntype = \"bool\"\nwritable = true\noid = \"1.3.6.1.2.1.105.1.1.1.3.1.{{index}}\"\n[[point]]\nname = \"power_cycle\"\ntype = \"bool\"\nwritable = true\n"
    );
    let p = parse(Path::new("c.toml"), &ok).expect("valid");
    let spec = p.snmp.expect("snmp spec");
    assert_eq!(spec.cycle_off_s, 2);
    assert_eq!(spec.oids.len(), 2);
    assert!(spec.oids[1].is_none());
}

#[test]
fn a_lora_profile_needs_a_lora_table_naming_its_script() {
    let head = "name = \"s\"\nkind = \"sensor\"\nprotocol = \"lora\"\n";
    let pt = "[[point]]\nname = \"humidity\"\nunit = \"%\"\ntype = \"f32\"\n";
    assert_eq!(keys_of(&format!("{head}{pt}")), ["lora"]);
    let bad = format!("{head}[lora]\nscrpt = \"s.rhai\"\n{pt}");
    assert_eq!(keys_of(&bad), ["lora.scrpt", "lora.script"]);
}

#[test]
fn the_shipped_plugins_load_without_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let (registry, errors) = Registry::load(&[dir]);
    assert!(errors.is_empty(), "{errors:#?}");
    let count = |name: &str| registry.get(name).map(|p| p.points.len());
    assert_eq!(registry.len(), 14);
    assert_eq!(count("snmp-poe-port-camera"), Some(3));
    assert_eq!(count("snmp-poe-switch"), Some(3));
    assert_eq!(count("reach-camera"), Some(2));
    assert_eq!(count("generic-pa-serial"), Some(8));
    assert_eq!(count("generic-sensor-binary"), Some(3));
    assert_eq!(count("generic-lamp-modbus"), Some(12));
    assert_eq!(count("generic-lamp-lora"), Some(9));
    assert_eq!(count("generic-ev-modbus"), Some(11));
    assert_eq!(count("eastron-sdm630"), Some(16));
    let ev = registry.get("generic-ev-modbus").expect("ev profile");
    let (_, status) = ev.point("status").expect("status");
    assert_eq!(status.values.as_ref().map(|v| v.len()), Some(9));
    let (_, power) = ev.point("power").expect("power");
    assert_eq!(power.reg.as_ref().map(|r| r.order), Some(WordOrder::Cdab));
    let meter = registry.get("eastron-sdm630").expect("meter");
    let (_, import) = meter.point("energy_import").expect("energy_import");
    assert_eq!((import.scale, import.unit.as_deref()), (1000.0, Some("Wh")));
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let errors = errors_of("name = \"t\"\nkind = = \"lamp\"\n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("line 2, column"),
        "{}",
        errors[0]
    );
}

#[test]
fn every_problem_of_a_file_is_reported_with_its_key_path() {
    let text = "name = \"t\"\nkind = \"lampp\"\nprotocol = \"modbus\"\ncolour = 1\n\
        [[point]]\nname = \"dim_level\"\nunit = \"%\"\ntable = \"holding\"\naddress = 0\ntype = \"u17\"\n\
        [[point]]\nname = \"power\"\nunit = \"W\"\ntable = \"input\"\naddress = \"zero\"\ntype = \"u16\"\n\
        [[point]]\nname = \"voltage\"\nunit = \"V\"\ntable = \"input\"\naddress = 70000\ntype = \"u16\"\nwritable = true\n";
    let keys = keys_of(text);
    for want in [
        "kind",
        "colour",
        "point[0].type",
        "point[1].address",
        "point[2].address",
        "point[2].writable",
    ] {
        assert!(
            keys.iter().any(|k| k == want),
            "{want} missing from {keys:?}"
        );
    }
    let shown = errors_of(text)[0].to_string();
    assert!(shown.starts_with("t.toml: "), "{shown}");
}

#[test]
fn modbus_register_rules_are_enforced() {
    let cases = [
        (
            "name = \"on\"\ntable = \"coil\"\naddress = 0\ntype = \"u16\"",
            "point[0].type",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"bool\"",
            "point[0].bit",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"bool\"\nbit = 16",
            "point[0].bit",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nbit = 1",
            "point[0].bit",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"string\"",
            "point[0].length",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"string\"\nlength = 126",
            "point[0].length",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nlength = 2",
            "point[0].length",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u32\"\norder = \"ACBD\"",
            "point[0].order",
        ),
        (
            "name = \"x_a\"\ntable = \"discrete\"\naddress = 0\ntype = \"bool\"\nwritable = true",
            "point[0].writable",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 65535\ntype = \"u32\"",
            "point[0].address",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\ntype = \"u16\"",
            "point[0].address",
        ),
        (
            "name = \"x_a\"\naddress = 0\ntype = \"u16\"",
            "point[0].table",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nscale = 0",
            "point[0].scale",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nscale = nan",
            "point[0].scale",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nmin = 5\nmax = 1",
            "point[0].min",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nvalues = { \"one\" = \"a\" }",
            "point[0].values.one",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"f32\"\nvalues = { \"1\" = \"a\" }",
            "point[0].values",
        ),
        (
            "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nwritable = \"yes\"",
            "point[0].writable",
        ),
    ];
    for (body, want) in cases {
        let keys = keys_of(&point(body));
        assert!(keys.iter().any(|k| k == want), "{body:?}: {keys:?}");
    }
}

#[test]
fn units_and_names_must_follow_the_vocabulary() {
    let kwh = "name = \"energy\"\nunit = \"kWh\"\ntable = \"input\"\naddress = 0\ntype = \"f32\"";
    assert_eq!(keys_of(&point(kwh)), ["point[0].unit"]);
    let no_unit = "name = \"energy\"\ntable = \"input\"\naddress = 0\ntype = \"f32\"";
    assert_eq!(keys_of(&point(no_unit)), ["point[0].unit"]);
    let unknown =
        "name = \"brightness\"\nunit = \"%\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"";
    assert_eq!(keys_of(&point(unknown)), ["point[0].name"]);
    let wrong_shape = "name = \"lamp_failure\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"";
    assert_eq!(keys_of(&point(wrong_shape)), ["point[0].type"]);
    let twice = "name = \"x_a\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n[[point]]\n\
        name = \"x_a\"\ntable = \"input\"\naddress = 1\ntype = \"u16\"";
    assert_eq!(keys_of(&point(twice)), ["point[1].name"]);
}

#[test]
fn charger_status_labels_must_be_ocpp_names() {
    let text = "name = \"t\"\nkind = \"ev_charger\"\nprotocol = \"modbus\"\n[[point]]\n\
        name = \"status\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n\
        values = { \"0\" = \"available\", \"1\" = \"busy\" }\n";
    assert_eq!(keys_of(text), ["point[0].values.1"]);
}

#[test]
fn serial_and_lora_points_reject_modbus_addressing_and_keep_their_tables() {
    let serial = "name = \"pa\"\nkind = \"pa_speaker\"\nprotocol = \"serial\"\n\
        [serial]\ndelimiter = \"\\r\\n\"\nscript = \"pa.rhai\"\n\
        [[point]]\nname = \"volume\"\nunit = \"%\"\ntype = \"u16\"\ntable = \"holding\"\naddress = 3\n";
    // The script does not exist beside this in-memory profile: reported too.
    assert_eq!(
        keys_of(serial),
        ["point[0].table", "point[0].address", "serial.script"]
    );
    let lora = "name = \"s\"\nkind = \"sensor\"\nprotocol = \"lora\"\nuplink_interval_s = 600\n\
        [lora]\nscript = \"s.rhai\"\n\
        [[point]]\nname = \"rssi\"\nunit = \"dBm\"\ntype = \"i16\"\n\
        [[point]]\nname = \"humidity\"\nunit = \"%\"\ntype = \"f32\"\n";
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("s.rhai"),
        "fn decode_uplink(fport, bytes) { () }\n",
    )
    .unwrap();
    let profile = parse(&dir.path().join("s.toml"), lora).expect("valid lora profile");
    assert_eq!(profile.uplink_interval_s, Some(600));
    // The script named by [lora] travels compiled in the profile.
    assert!(profile.lora.is_some_and(
        |l| l.script.path().ends_with("s.rhai") && l.script.has_fn("decode_uplink", 2)
    ));
    assert!(profile.points.iter().all(|p| p.reg.is_none()));
    let rssi_on_modbus =
        point("name = \"rssi\"\nunit = \"dBm\"\ntable = \"input\"\naddress = 0\ntype = \"i16\"");
    assert_eq!(keys_of(&rssi_on_modbus), ["point[0].name"]);
}

#[test]
fn a_serial_script_syntax_error_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bad.rhai"),
        "fn decode(frame) {\n  let = 1;\n}\n",
    )
    .unwrap();
    let text = "name = \"pa\"\nkind = \"pa_speaker\"\nprotocol = \"serial\"\n\
        [serial]\ndelimiter = \"\\r\\n\"\nscript = \"bad.rhai\"\n\
        [[point]]\nname = \"muted\"\ntype = \"bool\"\n";
    let errs = parse(&dir.path().join("pa.toml"), text).expect_err("bad script");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "serial.script");
    let want = format!("{}:2: syntax error", dir.path().join("bad.rhai").display());
    assert!(errs[0].message.starts_with(&want), "{}", errs[0].message);
    fs::write(dir.path().join("bad.rhai"), "fn decode(frame) { () }\n").unwrap();
    let ok = parse(&dir.path().join("pa.toml"), text).expect("good script");
    let spec = ok.serial.expect("serial spec");
    assert_eq!(spec.encoding, crate::profile::SerialEncoding::Text);
    assert!(spec.expect_reply);
    let both = text.replace("[serial]\n", "[serial]\nlength = 4\n");
    assert_eq!(keys_of_at(&dir.path().join("pa.toml"), &both), ["serial"]);
}

const LORA_LAMP: &str = "name = \"l\"\nkind = \"lamp\"\nprotocol = \"lora\"\n\
    [lora]\nscript = \"l.rhai\"\n\
    [[point]]\nname = \"dim_level\"\nunit = \"%\"\ntype = \"u16\"\nwritable = true\n";

/// Parses [`LORA_LAMP`] beside a script `l.rhai` holding `script`.
fn lora_errors(script: &str) -> (tempfile::TempDir, Vec<ProfileError>) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("l.rhai"), script).unwrap();
    let errs = match parse(&dir.path().join("l.toml"), LORA_LAMP) {
        Ok(_) => vec![],
        Err(e) => e,
    };
    (dir, errs)
}

#[test]
fn a_lora_script_syntax_error_is_reported_with_its_file_and_line() {
    let (dir, errs) = lora_errors(
        "fn decode_uplink(fport, bytes) {\n  ()\n}\nfn encode_downlink(point, value) {\n  let = 1;\n}\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "lora.script");
    assert_eq!(errs[0].file, dir.path().join("l.toml"));
    let want = format!("{}:5: syntax error", dir.path().join("l.rhai").display());
    assert!(errs[0].message.starts_with(&want), "{}", errs[0].message);
}

#[test]
fn a_lora_script_must_define_decode_uplink_and_encode_downlink_for_writable_points() {
    let (_dir, errs) = lora_errors("fn decode(frame) { () }\n");
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "l.rhai does not define fn decode_uplink(fport, bytes)",
            "l.rhai does not define fn encode_downlink(point, value), needed by writable points",
        ]
    );
    assert!(errs.iter().all(|e| e.key == "lora.script"));
    let (_dir, errs) = lora_errors(
        "fn decode_uplink(fport, bytes) { () }\nfn encode_downlink(point, value) { () }\n",
    );
    assert!(errs.is_empty(), "{errs:?}");
    // Read-only points need no encoder.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("l.rhai"),
        "fn decode_uplink(fport, bytes) { () }\n",
    )
    .unwrap();
    let read_only = LORA_LAMP.replace("writable = true\n", "");
    parse(&dir.path().join("l.toml"), &read_only).expect("decoder alone is enough");
}

#[test]
fn a_missing_lora_script_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let errs = parse(&dir.path().join("l.toml"), LORA_LAMP).expect_err("no script file");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "lora.script");
    assert!(errs[0].message.contains("l.rhai"), "{}", errs[0].message);
}

fn keys_of_at(path: &Path, text: &str) -> Vec<String> {
    parse(path, text)
        .expect_err("must be rejected")
        .into_iter()
        .map(|e| e.key)
        .collect()
}

#[test]
fn profile_level_keys_are_checked() {
    assert_eq!(
        keys_of(
            "kind = \"lamp\"\nprotocol = \"modbus\"\n[[point]]\nname = \"x_a\"\ntable = \"coil\"\naddress = 0\ntype = \"bool\"\n"
        ),
        ["name"]
    );
    assert_eq!(keys_of(LAMP_HEAD), ["point"]);
    let keys = keys_of(&format!(
        "{LAMP_HEAD}poll_ms = 0\n[lora]\nscript = \"x\"\n[[point]]\nname = \"x_a\"\ntable = \"coil\"\naddress = 0\ntype = \"bool\"\n"
    ));
    assert_eq!(keys, ["poll_ms", "lora"]);
}

#[test]
fn discovery_walks_vendor_folders_and_names_the_second_duplicate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = "kind = \"lamp\"\nprotocol = \"modbus\"\n[[point]]\nname = \"on\"\ntable = \"coil\"\naddress = 0\ntype = \"bool\"\n";
    fs::create_dir_all(tmp.path().join("acme/lamps")).expect("mkdir");
    fs::write(tmp.path().join("a.toml"), format!("name = \"one\"\n{body}")).expect("write");
    fs::write(
        tmp.path().join("acme/lamps/b.toml"),
        format!("name = \"two\"\n{body}"),
    )
    .expect("write");
    fs::write(
        tmp.path().join("acme/c.toml"),
        format!("name = \"one\"\n{body}"),
    )
    .expect("write");
    fs::write(tmp.path().join("acme/notes.txt"), "not a profile").expect("write");
    fs::write(tmp.path().join("acme/broken.toml"), "name = ").expect("write");
    let missing = tmp.path().join("nowhere");
    let (registry, errors) = Registry::load(&[missing, tmp.path().to_path_buf()]);
    assert_eq!(registry.len(), 2);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].file.ends_with("acme/broken.toml"));
    assert!(errors[1].file.ends_with("acme/c.toml"));
    assert_eq!(errors[1].key, "name");
}

#[test]
fn a_plugins_path_that_cannot_be_read_as_a_directory_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plugins");
    fs::write(&file, "").expect("write");
    let (registry, errors) = Registry::load(&[file]);
    assert!(registry.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("cannot read plugins directory"));
}

#[test]
fn a_lora_profile_gets_rssi_and_snr_points_whether_or_not_it_declares_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("s.rhai"),
        "fn decode_uplink(fport, bytes) { () }\n",
    )
    .unwrap();
    let head = "name = \"s\"\nkind = \"sensor\"\nprotocol = \"lora\"\n[lora]\nscript = \"s.rhai\"\n\
        [[point]]\nname = \"humidity\"\nunit = \"%\"\ntype = \"f32\"\n";
    let bare = parse(&dir.path().join("s.toml"), head).expect("valid lora profile");
    let names: Vec<_> = bare.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["humidity", "rssi", "snr"]);
    assert_eq!(bare.points[1].unit.as_deref(), Some("dBm"));
    assert_eq!(bare.points[2].unit.as_deref(), Some("dB"));
    // A declared one keeps its own settings (here a deadband) and is not doubled.
    let declared =
        format!("{head}[[point]]\nname = \"snr\"\nunit = \"dB\"\ntype = \"f32\"\ndeadband = 2.0\n");
    let p = parse(&dir.path().join("s.toml"), &declared).expect("valid lora profile");
    let names: Vec<_> = p.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["humidity", "snr", "rssi"]);
    assert_eq!(p.points[1].deadband, Some(2.0));
}
