//! `polegate check` on OCPP configurations, through the real binary: a valid charger
//! setup passes with its listener in the summary; every broken `[ocpp]` key and `ocpp`
//! device is reported with its file and key path in one run, and an ocpp profile with
//! Modbus keys is refused.

use std::process::Command;

fn check(dir: &std::path::Path, text: &str) -> (i32, String) {
    let path = dir.join("polegate.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_polegate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run polegate check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn head(dir: &std::path::Path) -> String {
    let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins");
    format!(
        "[gateway]\nid = \"cab\"\nstate_dir = \"state\"\nplugins_dirs = [{plugins:?}, {:?}]\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\n",
        dir.join("more").display().to_string()
    )
}

#[test]
fn a_valid_charger_setup_passes_and_names_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cp.pass"), "pw\n").unwrap();
    let cfg = head(dir.path())
        + "[ocpp]\nlisten = \"127.0.0.1:8887\"\n\n[[device]]\nid = \"ev-1\"\nprofile = \"ocpp-charger\"\n\
           ocpp = { charge_point_id = \"CP-1\", connector = 1, password_file = \"cp.pass\" }\n";
    let (code, out) = check(dir.path(), &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ws://127.0.0.1:8887/ocpp/<charge point id>, central system"),
        "{out}"
    );
}

#[test]
fn every_broken_ocpp_key_is_reported_with_its_path_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let more = dir.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    std::fs::write(
        more.join("bad-ocpp.toml"),
        "name = \"bad-ocpp\"\nkind = \"ev_charger\"\nprotocol = \"ocpp\"\n\n[[point]]\nname = \"power\"\nunit = \"W\"\ntype = \"f64\"\ntable = \"input\"\naddress = 3\n",
    )
    .unwrap();
    let cfg = head(dir.path())
        + "[ocpp]\nlisten = \"nowhere\"\nheartbeat_s = 1\nauthorize = \"maybe\"\nupstream = \"http://x\"\nbogus = 1\n\n\
           [[device]]\nid = \"ev-1\"\nprofile = \"ocpp-charger\"\nocpp = { charge_point_id = \"CP 1\", connector = 0, password_file = \"missing.pass\", colour = \"red\" }\n\n\
           [[device]]\nid = \"ev-2\"\nprofile = \"bad-ocpp\"\nocpp = { charge_point_id = \"CP-2\" }\n";
    let (code, out) = check(dir.path(), &cfg);
    assert_eq!(code, 1, "{out}");
    for want in [
        "ocpp.listen",
        "ocpp.heartbeat_s",
        "ocpp.authorize",
        "ocpp.upstream",
        "ocpp.bogus",
        "device[0].ocpp.colour",
    ] {
        assert!(out.contains(want), "missing {want} in:\n{out}");
    }
    let (code, out) = check(
        dir.path(),
        &(head(dir.path())
            + "[ocpp]\n\n[[device]]\nid = \"ev-1\"\nprofile = \"ocpp-charger\"\nocpp = { charge_point_id = \"CP 1\", connector = 0, password_file = \"missing.pass\" }\n\n\
               [[device]]\nid = \"ev-2\"\nprofile = \"bad-ocpp\"\nocpp = { charge_point_id = \"CP-2\" }\n\n\
               [[device]]\nid = \"ev-3\"\nprofile = \"ocpp-charger\"\nocpp = { charge_point_id = \"CP-2\" }\n"),
    );
    assert_eq!(code, 1, "{out}");
    for want in [
        "device[0].ocpp.charge_point_id",
        "device[0].ocpp.connector",
        "device[0].ocpp.password_file",
        "device[2].ocpp.connector",
    ] {
        assert!(out.contains(want), "missing {want} in:\n{out}");
    }
    let (code, out) = check(
        dir.path(),
        &(head(dir.path())
            + "[ocpp]\n\n[[device]]\nid = \"ev-2\"\nprofile = \"bad-ocpp\"\nocpp = { charge_point_id = \"CP-2\" }\n"),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad-ocpp.toml") && out.contains("point[0].table"),
        "{out}"
    );
}

/// SPEC §9: a listener outside loopback needs a password on every OCPP device (anyone
/// reaching the port could otherwise pose as a charger), the devices of one charge point
/// share one password, and without `cert_file` `check` warns that passwords travel in
/// clear.
#[test]
fn a_listener_outside_loopback_needs_one_password_per_charge_point_and_warns_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pass"), "pw-a\n").unwrap();
    std::fs::write(dir.path().join("b.pass"), "pw-b\n").unwrap();
    let dev = |n: u32, cp: &str, connector: u32, pw: &str| {
        format!(
            "[[device]]\nid = \"ev-{n}\"\nprofile = \"ocpp-charger\"\n\
             ocpp = {{ charge_point_id = \"{cp}\", connector = {connector}{pw} }}\n\n"
        )
    };
    let open = "[ocpp]\nlisten = \"0.0.0.0:8887\"\n\n";
    let cfg = format!(
        "{}{open}{}{}{}",
        head(dir.path()),
        dev(1, "CP-1", 1, ""),
        dev(2, "CP-2", 1, ", password_file = \"a.pass\""),
        dev(3, "CP-2", 2, ", password_file = \"b.pass\"")
    );
    let (code, out) = check(dir.path(), &cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("device[0].ocpp.password_file") && out.contains("outside loopback"),
        "{out}"
    );
    assert!(
        out.contains("device[2].ocpp.password_file") && out.contains("another password"),
        "{out}"
    );
    let cfg = format!(
        "{}{open}{}{}",
        head(dir.path()),
        dev(1, "CP-1", 1, ", password_file = \"a.pass\""),
        dev(2, "CP-1", 2, ", password_file = \"a.pass\"")
    );
    let (code, out) = check(dir.path(), &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning:") && out.contains("passwords travel in clear"),
        "{out}"
    );
    // On loopback neither is needed, and nothing is said.
    let cfg = format!(
        "{}[ocpp]\nlisten = \"127.0.0.1:8887\"\n\n{}",
        head(dir.path()),
        dev(1, "CP-1", 1, "")
    );
    let (code, out) = check(dir.path(), &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("travel in clear"), "{out}");
}
