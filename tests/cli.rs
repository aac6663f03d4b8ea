//! The real binary's command line (SPEC §1): `check` on the shipped example and on
//! committed invalid configs (every error named with file and key path, exit 1), usage
//! errors (exit 2), `profiles`, `buffer stats` on a fresh state directory, and the
//! warnings about secret files every user can read (real files, real modes).

use crate::common::Setup;
use std::path::Path;
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn polegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polegate"))
        .args(args)
        .env_remove("STATE_DIRECTORY")
        .env("RUST_LOG", "error")
        .output()
        .expect("run polegate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_accepts_the_shipped_example_and_prints_a_summary() {
    let cfg = root().join("config/example.toml");
    let o = polegate(&["check", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("cab-dijon-0042") && t.contains("generic-lamp-modbus"),
        "{t}"
    );
    assert!(t.contains("eastron-sdm630"), "{t}");
}

#[test]
fn check_names_the_file_and_key_path_of_every_error_and_exits_1() {
    let cfg = root().join("tests/fixtures/config/invalid/unit_out_of_range.toml");
    let o = polegate(&["check", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("unit_out_of_range.toml"), "{t}");
    assert!(t.contains("device[3].modbus.unit"), "{t}");
}

#[test]
fn a_missing_config_file_is_a_configuration_error() {
    let o = polegate(&["check", "--config", "/nonexistent/polegate.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/polegate.toml"));
    let o = polegate(&["run", "--config", "/nonexistent/polegate.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(polegate(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(polegate(&["check", "--bogus"]).status.code(), Some(2));
    assert_eq!(polegate(&[]).status.code(), Some(2));
    assert_eq!(polegate(&["--help"]).status.code(), Some(0));
}

#[test]
fn profiles_lists_every_shipped_profile_with_its_points() {
    let cfg = root().join("config/example.toml");
    let o = polegate(&["profiles", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for name in [
        "generic-lamp-modbus",
        "generic-ev-modbus",
        "eastron-sdm630",
        "dim_level",
        "energy_import",
    ] {
        assert!(t.contains(name), "{name} missing from:\n{t}");
    }
}

#[test]
fn buffer_stats_reports_an_empty_queue_as_lines_and_json() {
    let setup = Setup::new(1, "");
    let cfg = &setup.path;
    let o = polegate(&["buffer", "stats", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("events:      0"), "{t}");
    let o = polegate(&[
        "buffer",
        "stats",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["events"], 0);
}

#[test]
fn check_reports_a_misspelled_profile_together_with_the_files_other_errors() {
    let cfg = root().join("tests/fixtures/config/check_all/polegate.toml");
    let o = polegate(&["check", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("4 error(s)"), "{t}");
    for want in [
        "gateway.colour: unknown field",
        "mqtt.keep_alive_s: invalid type",
        "device[0].profile: profile 'generic-lamp-modbsu' not found",
        "device[1].lora.nwk_s_key:",
    ] {
        assert!(t.contains(want), "{want} missing from:\n{t}");
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn check_and_run_warn_once_per_secret_file_every_user_can_read_and_never_print_the_secret() {
    let setup = Setup::custom(
        "cab-test",
        "url = \"mqtts://127.0.0.1:1\"\npassword_file = \"mqtt.pass\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"\nreconnect_min_ms = 50\n",
        "[lora]\nsource = \"chirpstack\"\nchirpstack = { url = \"mqtt://127.0.0.1:1\", application_id = \"a\", password_file = \"mqtt.pass\" }\n",
    );
    let dir = setup.dir.path();
    std::fs::write(dir.join("mqtt.pass"), "hunter2-broker\n").unwrap();
    std::fs::write(dir.join("client.pem"), "not read by check\n").unwrap();
    std::fs::write(dir.join("client.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    // LoRa keys written inline in a conf.d file.
    std::fs::create_dir(dir.join("conf.d")).unwrap();
    let keys = dir.join("conf.d/lamps.toml");
    std::fs::write(
        &keys,
        "[[device]]\nid = \"lamp-ns\"\nprofile = \"generic-lamp-lora\"\nlora = { dev_eui = \"0004a30b001c0532\" }\n",
    )
    .unwrap();
    chmod(&setup.path, 0o640);
    chmod(&dir.join("mqtt.pass"), 0o644);
    chmod(&dir.join("client.key"), 0o604);
    chmod(&keys, 0o644);
    let check = || polegate(&["check", "--config", setup.path.to_str().unwrap()]);

    let o = check();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "a warning, not an error: {t}");
    let warnings: Vec<&str> = t.lines().filter(|l| l.starts_with("warning:")).collect();
    let pass = dir.join("mqtt.pass").display().to_string();
    let key = dir.join("client.key").display().to_string();
    assert_eq!(warnings.len(), 2, "one per file: {t}");
    assert!(
        warnings[0].contains(&pass)
            && warnings[0].contains("mode 0644")
            && warnings[0].contains("mqtt.password_file, lora.chirpstack.password_file")
            && warnings[0].contains(&format!("chmod o-r {pass}")),
        "{t}"
    );
    assert!(
        warnings[1].contains(&key) && warnings[1].contains("mode 0604"),
        "{t}"
    );
    assert!(!t.contains("hunter2"), "the secret is never printed: {t}");
    // The conf.d file has no key in it (chirpstack holds them), so it is not a secret.
    assert!(!t.contains("lamps.toml"), "{t}");

    // With the network server's keys inline (Semtech source), the conf.d file is one.
    std::fs::write(
        &setup.path,
        std::fs::read_to_string(&setup.path).unwrap().replace(
            "source = \"chirpstack\"\nchirpstack = { url = \"mqtt://127.0.0.1:1\", application_id = \"a\", password_file = \"mqtt.pass\" }",
            "listen = \"127.0.0.1:0\"",
        ),
    )
    .unwrap();
    std::fs::write(
        &keys,
        "[[device]]\nid = \"lamp-abp\"\nprofile = \"generic-lamp-lora\"\nlora = { dev_eui = \"0004a30b001c0531\", activation = \"abp\", dev_addr = \"26011bda\", nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\" }\n",
    )
    .unwrap();
    let t = text(&check());
    assert!(
        t.contains(&format!(
            "{} is readable by every user (mode 0644) and holds secrets (device[0].lora.nwk_s_key, device[0].lora.app_s_key)",
            keys.display()
        )),
        "{t}"
    );
    assert!(!t.contains("000102030405"), "keys are never printed: {t}");

    // Group-readable (0640 root:polegate, as packaged) is what an integrator expects: quiet.
    for p in [dir.join("mqtt.pass"), dir.join("client.key"), keys.clone()] {
        chmod(&p, 0o640);
    }
    let t = text(&check());
    assert!(!t.contains("warning:"), "{t}");

    // At start: the daemon logs the same, once per file, and keeps running.
    chmod(&dir.join("mqtt.pass"), 0o644);
    let log = dir.join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let daemon = crate::common::Process::start(&setup.path, |c| {
        c.stderr(stderr).env("RUST_LOG", "warn");
    });
    let deadline = std::time::Instant::now() + crate::common::WAIT;
    let line = loop {
        let l = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = l.lines().find(|l| l.contains("secret file readable")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning at start: {l}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    daemon.stop();
    assert!(line.contains(&pass) && line.contains("mode=0644"), "{line}");
    let l = std::fs::read_to_string(&log).unwrap();
    assert_eq!(l.matches("secret file readable").count(), 1, "{l}");
    assert!(!l.contains("hunter2"), "{l}");
}
