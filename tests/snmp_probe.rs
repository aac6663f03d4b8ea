//! `polegate probe snmp` as the technician runs it (the real binary) against snmpsim:
//! v2c and v3 reads, a `noSuchInstance` printed as such, a wrong v3 key named with exit
//! 3; and an agent name that does not resolve taking the device offline, naming it.

use crate::common::*;
use std::sync::atomic::Ordering::Relaxed;
/// `polegate probe snmp` as the technician runs it (the real binary, blocking: run on a
/// blocking thread so the agent's log reader keeps going).
async fn probe(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_polegate"))
            .arg("probe")
            .arg("snmp")
            .args(args)
            .output()
            .expect("run polegate probe snmp")
    })
    .await
    .expect("probe thread")
}

#[tokio::test]
async fn the_probe_reads_oids_with_v2c_and_v3_and_names_a_wrong_key() {
    let sim = SnmpSim::start(&switch_records()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, s: &str| {
        crate::common::secret_file(dir.path(), name, s)
            .display()
            .to_string()
    };
    let (community, auth, wrong, privacy) = (
        file("c", crate::common::COMMUNITY),
        file("a", V3_AUTH),
        file("w", "wrongpass123"),
        file("p", V3_PRIV),
    );
    let oids = [
        "--oid".to_string(),
        "1.3.6.1.2.1.1.3.0".into(),
        "--oid".into(),
        format!("{DETECT}.1"),
        "--oid".into(),
        format!("{ADMIN}.9"),
    ];
    let mut args = vec![
        "--agent".to_string(),
        sim.address(),
        "--community-file".into(),
        community,
    ];
    args.extend(oids.iter().cloned());
    let out = probe(args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1.3.6.1.2.1.1.3.0 = time_ticks"), "{text}");
    assert!(text.contains(&format!("{DETECT}.1 = integer 3")), "{text}");
    assert!(
        text.contains(&format!("{ADMIN}.9 = no_such_instance")),
        "{text}"
    );
    let v3 = |key: String| {
        let mut a = vec![
            "--agent".to_string(),
            sim.address(),
            "--user".into(),
            V3_USER.into(),
            "--auth".into(),
            "sha256".into(),
            "--auth-key-file".into(),
            key,
            "--privacy".into(),
            "aes128".into(),
            "--priv-key-file".into(),
            privacy.clone(),
            "--context".into(),
            crate::common::COMMUNITY.into(),
            "--timeout-ms".into(),
            "500".into(),
        ];
        a.extend(oids[..2].iter().cloned());
        a
    };
    let out = probe(v3(auth)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = probe(v3(wrong)).await;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SNMP authentication failed"), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn an_agent_name_that_does_not_resolve_goes_offline_naming_it() {
    let mut cfg = v2c("camera.invalid:161");
    cfg.timeout_ms = 200;
    let mut rig = AgentRig::start(
        "nowhere",
        cfg,
        vec![snmp_device("cam", "snmp-uptime-camera", None, 50)],
    );
    let reason = rig.state("cam", false).await.expect("a reason");
    assert!(reason.starts_with("SNMP error"), "{reason}");
    assert!(
        rig.counters.snmp_error.load(Relaxed) >= 3,
        "each failed cycle is counted"
    );
}
