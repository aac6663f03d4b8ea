//! The simulators over a real tokio-modbus TCP client on 127.0.0.1:0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::{Context, tcp};
use tokio_modbus::prelude::{Reader, Writer};
use tokio_util::sync::CancellationToken;

use super::*;

/// Bound on every network call in these tests.
const IO: Duration = Duration::from_secs(2);
/// Bound on waiting for a behaviour tick to show (several ticks).
const SETTLE: Duration = Duration::from_secs(5);
/// Period of condition polling inside [`SETTLE`].
const POLL: Duration = Duration::from_millis(25);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn connect(addr: SocketAddr) -> Context {
    match timeout(IO, tcp::connect(addr)).await {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(err)) => panic!("connect to {addr}: {err}"),
        Err(_) => panic!("connect to {addr} timed out"),
    }
}

/// Runs one client call under [`IO`], failing the test on a timeout, a transport error
/// or an exception.
async fn ok<T, F>(call: F) -> T
where
    F: Future<Output = tokio_modbus::Result<T>>,
{
    match timeout(IO, call).await {
        Ok(Ok(Ok(value))) => value,
        other => panic!(
            "modbus call failed: {:?}",
            other.map(|r| r.map(|r| r.err()))
        ),
    }
}

async fn input(ctx: &mut Context, addr: u16, n: u16) -> Vec<u16> {
    ok(ctx.read_input_registers(addr, n)).await
}

#[tokio::test]
async fn sdm630_registers_decode_to_a_plausible_three_phase_meter() {
    let sim = Sim::spawn(SimKind::Sdm630, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    let regs = input(&mut ctx, 0, 76).await;
    let f = |addr| get_f32(&regs, addr, false).unwrap_or(f32::NAN);
    for addr in [0, 2, 4, 42] {
        assert!(
            (225.0..=235.0).contains(&f(addr)),
            "voltage at {addr}: {}",
            f(addr)
        );
    }
    for addr in [6, 8, 10] {
        assert!(
            (0.0..=32.0).contains(&f(addr)),
            "current at {addr}: {}",
            f(addr)
        );
    }
    assert!((49.9..=50.1).contains(&f(70)), "frequency {}", f(70));
    assert!((0.85..=1.0).contains(&f(62)), "power factor {}", f(62));
    assert!(
        f(52) > 0.0 && f(72) > 0.0,
        "power {} import {}",
        f(52),
        f(72)
    );
    assert_eq!(f(74), 0.0);
}

#[tokio::test]
async fn lamp_registers_decode_to_a_plausible_lamp() {
    let sim = Sim::spawn(SimKind::Lamp, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    let regs = input(&mut ctx, 0, 12).await;
    let volts = f64::from(regs[3]) / 10.0;
    let watts = f64::from(regs[0]) / 10.0;
    let amps = f64::from(regs[4]) / 1000.0;
    assert!((220.0..=240.0).contains(&volts), "voltage {volts}");
    assert!((55.0..=65.0).contains(&watts), "power {watts} at 100 %");
    assert!((amps - watts / volts).abs() < 0.002, "current {amps}");
    assert!((940..=960).contains(&regs[5]), "power factor {}", regs[5]);
    let celsius = f64::from(regs[6] as i16) / 10.0;
    assert!((-20.0..=60.0).contains(&celsius), "temperature {celsius}");
    assert!(get_u32(&regs, 1).unwrap_or(0) > 0 && get_u32(&regs, 7).unwrap_or(0) > 0);
    assert_eq!(ok(ctx.read_holding_registers(0, 1)).await, [100]);
    assert_eq!(ok(ctx.read_coils(0, 1)).await, [true]);
}

#[tokio::test]
async fn ev_charger_registers_decode_to_a_charging_session() {
    let sim = Sim::spawn(SimKind::EvCharger, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    let regs = input(&mut ctx, 0, 28).await;
    assert_eq!(regs[0], 2, "charging");
    let watts = get_f32(&regs, 1, true).unwrap_or(f32::NAN);
    assert!((7000.0..=7400.0).contains(&watts), "power {watts}");
    assert!((300..=325).contains(&regs[3]), "current {}", regs[3]);
    assert!((2250..=2350).contains(&regs[4]), "voltage {}", regs[4]);
    assert!(get_u64(&regs, 7).unwrap_or(0) >= u64::from(get_u32(&regs, 5).unwrap_or(0)));
    let serial: Vec<u8> = regs[20..28].iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_eq!(serial, b"EVC22-000417\0\0\0\0");
    assert_eq!(ok(ctx.read_discrete_inputs(0, 1)).await, [true]);
    assert_eq!(ok(ctx.read_holding_registers(0, 1)).await, [320]);
}

#[tokio::test]
async fn writing_dim_level_makes_lamp_power_follow_after_a_tick() {
    let sim = Sim::spawn(SimKind::Lamp, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    ok(ctx.write_single_register(0, 40)).await;
    // 40 % of a 60 W lamp is 24.0 W = 240 in 0.1 W units, give or take 1 % noise.
    let mut poll = tokio::time::interval(POLL);
    let followed = timeout(SETTLE, async {
        loop {
            poll.tick().await;
            let power = input(&mut ctx, 0, 1).await[0];
            if (235..=245).contains(&power) {
                break;
            }
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "power never followed the written dim level"
    );
    assert_eq!(ok(ctx.read_holding_registers(0, 1)).await, [40]);
}

#[tokio::test]
async fn writing_max_current_caps_the_charger_power_after_a_tick() {
    let sim = Sim::spawn(SimKind::EvCharger, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    ok(ctx.write_single_register(0, 100)).await;
    let mut poll = tokio::time::interval(POLL);
    let capped = timeout(SETTLE, async {
        loop {
            poll.tick().await;
            let regs = input(&mut ctx, 0, 3).await;
            let watts = get_f32(&regs, 1, true).unwrap_or(f32::NAN);
            if (2000.0..=2350.0).contains(&watts) {
                break;
            }
        }
    })
    .await;
    assert!(capped.is_ok(), "power never dropped to the 10 A cap");
}

#[tokio::test]
async fn every_table_can_be_written_and_read_back() {
    let sim = Sim::spawn(SimKind::Static, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    ok(ctx.write_multiple_registers(10, &[1, 2, 3])).await;
    ok(ctx.write_multiple_coils(5, &[true, false, true])).await;
    ok(ctx.write_single_coil(127, true)).await;
    assert_eq!(ok(ctx.read_holding_registers(10, 3)).await, [1, 2, 3]);
    assert_eq!(ok(ctx.read_coils(5, 3)).await, [true, false, true]);
    sim.registers().lock().unwrap().input[4] = 0xBEEF;
    assert_eq!(input(&mut ctx, 4, 1).await, [0xBEEF]);
    assert!(sim.registers().lock().unwrap().coils[127]);
    assert_eq!(sim.requests(), 6);
}

#[tokio::test]
async fn reading_past_the_table_answers_illegal_data_address() {
    let sim = Sim::spawn(SimKind::Static, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    let reply = timeout(IO, ctx.read_holding_registers(120, 9)).await;
    assert!(
        matches!(reply, Ok(Ok(Err(ExceptionCode::IllegalDataAddress)))),
        "{reply:?}"
    );
    let reply = timeout(IO, ctx.write_single_register(128, 1)).await;
    assert!(
        matches!(reply, Ok(Ok(Err(ExceptionCode::IllegalDataAddress)))),
        "{reply:?}"
    );
}

#[tokio::test]
async fn an_exception_fault_returns_that_exception_to_the_client() {
    let sim = Sim::spawn(SimKind::Lamp, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    sim.set_fault(Fault::Exception(ExceptionCode::ServerDeviceBusy));
    let reply = timeout(IO, ctx.read_input_registers(0, 2)).await;
    assert!(
        matches!(reply, Ok(Ok(Err(ExceptionCode::ServerDeviceBusy)))),
        "{reply:?}"
    );
    sim.set_fault(Fault::None);
    input(&mut ctx, 0, 2).await;
    assert_eq!(sim.requests(), 2);
}

#[tokio::test]
async fn a_silent_fault_makes_the_client_time_out_and_is_still_counted() {
    let sim = Sim::spawn(SimKind::Lamp, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    sim.set_fault(Fault::Silent);
    let reply = timeout(Duration::from_millis(200), ctx.read_input_registers(0, 2)).await;
    assert!(reply.is_err(), "expected a timeout, got {reply:?}");
    assert_eq!(sim.requests(), 1);
    // After a timeout a real client reconnects; so does this one.
    sim.set_fault(Fault::None);
    let mut ctx = connect(sim.addr()).await;
    input(&mut ctx, 0, 2).await;
}

#[tokio::test]
async fn stop_closes_the_listener_and_open_connections_and_resume_serves_the_same_registers() {
    let mut sim = Sim::spawn(SimKind::Static, any_port(), CancellationToken::new())
        .await
        .unwrap();
    let addr = sim.addr();
    let mut ctx = connect(addr).await;
    ok(ctx.write_single_register(3, 77)).await;

    sim.stop().await;
    let reply = timeout(IO, ctx.read_holding_registers(3, 1)).await;
    assert!(
        matches!(reply, Ok(Err(_))),
        "open connection still answered: {reply:?}"
    );
    let refused = timeout(IO, tcp::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(_))), "listener still open");

    sim.resume().await.unwrap();
    let mut ctx = connect(addr).await;
    assert_eq!(ok(ctx.read_holding_registers(3, 1)).await, [77]);
}

#[tokio::test]
async fn cancelling_the_token_closes_the_simulator() {
    let cancel = CancellationToken::new();
    let sim = Sim::spawn(SimKind::Sdm630, any_port(), cancel.clone())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr()).await;
    input(&mut ctx, 0, 2).await;
    cancel.cancel();
    let reply = timeout(IO, ctx.read_input_registers(0, 2)).await;
    assert!(matches!(reply, Ok(Err(_))), "{reply:?}");
}

#[test]
fn word_helpers_round_trip_in_both_word_orders() {
    let mut regs = [0u16; 8];
    put_f32(&mut regs, 0, 7400.5, true);
    assert_eq!(get_f32(&regs, 0, true), Some(7400.5));
    assert_eq!(
        regs[1],
        (7400.5f32.to_bits() >> 16) as u16,
        "CDAB puts the high word second"
    );
    put_f32(&mut regs, 2, 230.1, false);
    assert_eq!(regs[2], (230.1f32.to_bits() >> 16) as u16);
    put_u64(&mut regs, 4, 0x0102_0304_0506_0708);
    assert_eq!(&regs[4..], &[0x0102, 0x0304, 0x0506, 0x0708]);
    put_u32(&mut regs, 0, 0xDEAD_BEEF);
    assert_eq!(get_u32(&regs, 0), Some(0xDEAD_BEEF));
    put_str(&mut regs, 0, 2, "ABC");
    assert_eq!(&regs[..2], &[0x4142, 0x4300]);
    put_u32(&mut regs, 7, 1);
    assert_eq!(regs[7], 0x0708, "out-of-range writes are ignored");
    assert_eq!(get_u32(&regs, 7), None);
}
