//! The real binary's command line (SPEC §1): `check` on the shipped example and on
//! committed invalid configs (every error named with file and key path, exit 1), usage
//! errors (exit 2), `profiles`, and `buffer stats` on a fresh state directory.

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
