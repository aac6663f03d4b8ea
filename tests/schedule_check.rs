//! SPEC §10 "check", through the real binary: every class of schedule mistake is named
//! with its key path in one run (exit 1), and a pattern that matches no device is a
//! warning of a configuration that is otherwise OK.

use crate::common::*;
use std::process::Command;

fn check(setup: &Setup) -> (i32, String, String) {
    let out = Command::new(Process::own_binary())
        .args(["check", "--config"])
        .arg(&setup.path)
        .output()
        .expect("run polegate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LAMPS: &str = "[[device]]\nid = \"lamp-1\"\nprofile = \"generic-lamp-modbus\"\n\
    modbus = { address = \"127.0.0.1:1502\", unit = 1 }\n\n\
    [[device]]\nid = \"lamp-2\"\nprofile = \"generic-lamp-modbus\"\n\
    modbus = { address = \"127.0.0.1:1502\", unit = 2 }\n\n";

#[test]
fn every_schedule_mistake_is_named_with_its_key_path() {
    let setup = Setup::new(
        free_port(),
        &format!(
            "{LAMPS}[schedule]\ntimezone = \"Europe/Dijon\"\nclock = \"gps\"\n\n\
             [[program]]\nid = \"a\"\ndevices = [\"lamp-1\", \"lamp-9\"]\nsteps = [\n\
             {{ at = \"sunset-10m\", set = {{ on = true, dim_level = 150 }} }},\n\
             {{ at = \"25:00\", set = {{ dim_level = 40 }} }},\n\
             {{ at = \"sunrise+10x\", set = {{ on = false }} }},\n\
             {{ at = \"05:30\", set = {{ power = 5, colour = 3 }} }},\n]\n\n\
             [[program.exception]]\ndates = [\"12-32\", \"2027-07-14\"]\n\
             steps = [ {{ at = \"noon\", set = {{ on = true }} }} ]\n\n\
             [[program]]\nid = \"b\"\ndevices = [\"lamp-*\"]\nsteps = [ {{ at = \"22:30\", set = {{ dim_level = 70 }} }} ]\n"
        ),
    );
    let (code, _, err) = check(&setup);
    assert_eq!(code, 1, "{err}");
    for (key, what) in [
        ("schedule.timezone", "unknown time zone 'Europe/Dijon'"),
        ("schedule.clock", "'gps' is not a clock"),
        ("schedule.latitude", "sun event"),
        ("program[0].devices[1]", "unknown device id 'lamp-9'"),
        (
            "program[1].devices",
            "device 'lamp-1' is already in program 'a'",
        ),
        ("program[0].steps[1].at", "'25:00' is not a local time"),
        ("program[0].steps[2].at", "offset '10x' is not a duration"),
        ("program[0].exception[0].dates[0]", "'12-32' is not a date"),
        (
            "program[0].exception[0].steps[0].at",
            "'noon' is not a time",
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{key}: ")) && l.contains(what)),
            "no '{key}: …{what}…' in:\n{err}"
        );
    }
}

/// Checked against the profiles once the file itself is valid (like every value check
/// of a command: the same validation).
#[test]
fn a_point_the_profile_lacks_or_cannot_write_or_a_value_out_of_range_is_named() {
    let setup = Setup::new(
        free_port(),
        &format!(
            "{LAMPS}[schedule]
timezone = \"Europe/Paris\"\n\n\
             [[program]]\nid = \"a\"\ndevices = [\"lamp-*\"]\nsteps = [\n\
             {{ at = \"22:30\", set = {{ on = true, dim_level = 150 }} }},\n\
             {{ at = \"05:30\", set = {{ power = 5, colour = 3 }} }},\n]\n"
        ),
    );
    let (code, _, err) = check(&setup);
    assert_eq!(code, 1, "{err}");
    for (key, what) in [
        ("program[0].steps[0].set.dim_level", "out of range 0..=100"),
        ("program[0].steps[1].set.power", "not writable"),
        ("program[0].steps[1].set.colour", "unknown point 'colour'"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{key}: ")) && l.contains(what)),
            "no '{key}: …{what}…' in:\n{err}"
        );
    }
    assert!(!err.contains("set.on"), "{err}");
}

#[test]
fn a_pattern_that_matches_no_device_is_a_warning() {
    let setup = Setup::new(
        free_port(),
        &format!(
            "{LAMPS}[schedule]\ntimezone = \"Europe/Paris\"\n\n\
             [[program]]\nid = \"a\"\ndevices = [\"lamp-*\", \"mast-*\"]\n\
             steps = [ {{ at = \"22:30\", set = {{ dim_level = 70 }} }} ]\n"
        ),
    );
    let (code, out, err) = check(&setup);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning:")
            && out.contains("program[0].devices[1]: pattern 'mast-*' matches no device"),
        "{out}"
    );
}
