//! Proves `polegate probe modbus` as the technician runs it: the real binary reads the
//! demo simulator over Modbus TCP, a simulated RTU bus over TCP (serial device server)
//! and over a pseudo-terminal, prints raw and decoded values, and exits 0 on success,
//! 2 on usage errors and 3 when the connection fails or the device answers an exception.

use crate::common::{Line, WAIT, device_server, free_port};
use polegate::demo::rtu_slave::{Behaviour, SlaveBus};
use polegate::demo::sim::{Sim, SimKind, put_f32};
use polegate::southbound::modbus::rtu::Mode;
use std::process::{Command, Output};
use std::sync::Arc;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

async fn probe(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out: Output = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_polegate"))
                .arg("probe")
                .arg("modbus")
                .args(&args)
                .env("RUST_LOG", "off")
                .output()
                .expect("run polegate")
        }),
    )
    .await
    .expect("probe finished in time")
    .expect("probe task");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reads_and_decodes_a_float_from_the_tcp_simulator() {
    let cancel = CancellationToken::new();
    let sim = Sim::spawn(
        SimKind::Static,
        "127.0.0.1:0".parse().unwrap(),
        cancel.clone(),
    )
    .await
    .expect("sim");
    {
        let regs = sim.registers();
        let mut r = regs.lock().unwrap();
        put_f32(&mut r.holding, 0, 230.5, false);
    }
    let addr = sim.addr().to_string();
    let (code, out, err) = probe(&["--tcp", &addr, "--read", "holding:0:2", "--type", "f32"]).await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("0x4366"), "raw words printed: {out}");
    assert!(out.contains("f32") && out.contains("230.5"), "{out}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_usage_errors_exit_2_and_connection_failures_exit_3() {
    let (code, _, err) = probe(&["--tcp", "127.0.0.1:1", "--read", "holding:0"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("TABLE:ADDR:COUNT"), "{err}");
    let (code, _, err) = probe(&[
        "--tcp",
        "127.0.0.1:1",
        "--read",
        "holding:0:1",
        "--type",
        "f32",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs 2 registers"), "{err}");
    let (code, _, _) = probe(&["--read", "holding:0:1"]).await;
    assert_eq!(code, 2);
    // Nothing listens on a port we just freed.
    let target = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = probe(&["--tcp", &target, "--read", "holding:0:2"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&target) && err.contains("failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_speaks_rtu_over_tcp_and_explains_exceptions() {
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[3, 4]));
    sim.unit(3).set_holding(10, &[0x0001, 0x86A0]);
    sim.unit(4)
        .set_behaviour(Behaviour::Exception(ExceptionCode::IllegalDataAddress));
    let cancel = CancellationToken::new();
    let addr = device_server(&sim, &cancel).await.to_string();
    let (code, out, err) = probe(&[
        "--tcp",
        &addr,
        "--framing",
        "rtu",
        "--unit",
        "3",
        "--read",
        "holding:10:2",
        "--type",
        "u32",
    ])
    .await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("100000"), "{out}");
    let (code, _, err) = probe(&[
        "--tcp",
        &addr,
        "--framing",
        "rtu",
        "--unit",
        "4",
        "--read",
        "holding:10:2",
    ])
    .await;
    assert_eq!(code, 3);
    assert!(err.contains("illegal data address"), "{err}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reads_a_serial_port_and_times_out_clearly_on_a_silent_unit() {
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
    sim.unit(1).set_holding(0, &[1234]);
    let line = Line::serve(&sim);
    let base = [
        "--serial",
        line.path.to_str().expect("utf-8 pty path"),
        "--baud",
        "19200",
        "--parity",
        "none",
    ];
    let mut args = base.to_vec();
    args.extend(["--read", "holding:0:1"]);
    let (code, out, err) = probe(&args).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("1234"), "{out}");
    let mut args = base.to_vec();
    args.extend([
        "--unit",
        "9",
        "--read",
        "holding:0:1",
        "--timeout-ms",
        "200",
    ]);
    let (code, _, err) = probe(&args).await;
    assert_eq!(code, 3);
    assert!(err.contains("timed out after 200 ms"), "{err}");
}
