//! Decode cost per frame through the script engine, on one core: the shipped PA-100 text
//! script and the ENV-2 binary script (CRC-16 check, integer helpers), plus how fast the
//! operation limit stops `loop {}`. Target: >= 50,000 frames/s (SPEC issue 6).
//! Also each byte-walking helper on a 64 KiB frame: one helper call cannot be interrupted
//! by the wall-time deadline (it is looked at between operations), so its worst case must
//! stay well inside `MAX_CALL_TIME`.
//!
//! Run: `cargo bench --bench script` (release). Prints one line per case.

use polegate::profile::Registry;
use polegate::script::Engine;
use polegate::southbound::serial::decode;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn rate(name: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let dt = t.elapsed();
    println!(
        "{name:<40} {:>9.0} frames/s  {:>6.2} µs/frame",
        n as f64 / dt.as_secs_f64(),
        dt.as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("script bench: run with `cargo bench --bench script` (skipped under cargo test)");
        return;
    }
    let engine = Engine::new();
    // `--helpers`: only the 64 KiB helper cases.
    if !std::env::args().any(|a| a == "--helpers") {
        frames(&engine);
    }
    helpers_on_64k(&engine);
}

fn frames(engine: &Engine) {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let (registry, errors) = Registry::load(&[plugins]);
    assert!(errors.is_empty(), "{errors:?}");
    let pa = registry.get("generic-pa-serial").expect("pa profile");
    let pa_spec = pa.serial.as_ref().expect("serial spec");
    let line = b"#01 VOL=040 MUTE=0 PLAY=0 AMP=OK LINE=OK TEMP=31.5";
    rate("decode PA-100 status line (text)", 200_000, || {
        let d = decode::decode(engine, pa, pa_spec, line).unwrap().unwrap();
        assert_eq!(d.values.len(), 6);
    });
    let env = registry
        .get("generic-sensor-binary")
        .expect("sensor profile");
    let env_spec = env.serial.as_ref().expect("serial spec");
    let mut frame = vec![0xA5, 0x03, 0x81, 0x00, 0xD2, 0x02, 0x4E, 0x01, 0xC3];
    let crc = polegate::script::crc16_modbus(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    rate("decode ENV-2 frame (binary, CRC-16)", 200_000, || {
        let d = decode::decode(engine, env, env_spec, &frame)
            .unwrap()
            .unwrap();
        assert_eq!(d.values.len(), 3);
    });
    let looping = engine
        .compile_str("loop.rhai", "fn decode(f) { loop {} }")
        .unwrap();
    let t = Instant::now();
    let n = 20;
    for _ in 0..n {
        assert!(engine.call(&looping, "decode", (1_i64,)).is_err());
    }
    let per = t.elapsed() / n;
    println!(
        "{:<40} {:>9.2} ms",
        "loop {} stopped after",
        per.as_secs_f64() * 1e3
    );
    assert!(per < Duration::from_millis(100));
}

fn helpers_on_64k(engine: &Engine) {
    // A 64 KiB frame (the largest a serial line or a LoRa payload could hand a script is
    // far smaller): the time of one uninterruptible helper call.
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    for (helper, body) in [
        ("crc16_modbus on a 64 KiB frame", "crc16_modbus(f)"),
        ("sum8 on a 64 KiB frame", "sum8(f)"),
        ("xor8 on a 64 KiB frame", "xor8(f)"),
        // Strings are capped at MAX_STRING_SIZE (64 KiB): hex of half the frame is the most.
        (
            "hex_encode of 32 KiB (64 KiB string)",
            "hex_encode(slice(f, 0, 32767)).len()",
        ),
        (
            "hex_encode + hex_decode of 32 KiB",
            "hex_decode(hex_encode(slice(f, 0, 32767))).len()",
        ),
        ("slice of 65,000 bytes", "slice(f, 1, 65000).len()"),
    ] {
        let script = engine
            .compile_str("big.rhai", &format!("fn decode(f) {{ {body} }}"))
            .unwrap();
        let n = 50;
        let t = Instant::now();
        for _ in 0..n {
            let r = engine.call(&script, "decode", (big.clone(),)).unwrap();
            assert!(r.as_int().is_ok_and(|v| v >= 0), "{helper}: {r}");
        }
        let per = t.elapsed() / n;
        println!(
            "{:<40} {:>9.3} ms  (MAX_CALL_TIME {} ms)",
            helper,
            per.as_secs_f64() * 1e3,
            polegate::script::MAX_CALL_TIME.as_millis()
        );
    }
}
