//! The sandbox: limits stop runaway scripts quickly, errors name file and line, helpers
//! work from scripts, values convert both ways.

use super::*;
use rhai::Blob;
use std::time::{Duration, Instant};

fn engine_and(src: &str) -> (Engine, Script) {
    let e = Engine::new();
    let s = e.compile_str("test.rhai", src).expect("compiles");
    (e, s)
}

#[test]
fn a_script_that_loops_forever_is_stopped_within_milliseconds() {
    let (e, s) = engine_and("fn decode(frame) {\n  loop {}\n}\n");
    let t = Instant::now();
    let err = e.call(&s, "decode", ("x".to_string(),)).unwrap_err();
    let took = t.elapsed();
    assert!(err.message.contains("operations"), "{err}");
    assert_eq!(err.file, Path::new("test.rhai"));
    assert_eq!(
        err.line,
        Some(1),
        "the function's line when the limit has no position"
    );
    // Debug builds are slow; release measures ~2 ms (BENCHMARKS-serial.md).
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let e = Engine::new();
    let err = e
        .compile_str("pa.rhai", "fn decode(frame) {\n  let x = ;\n}\n")
        .unwrap_err();
    assert_eq!(err.line, Some(2));
    assert!(
        err.to_string().starts_with("pa.rhai:2: syntax error"),
        "{err}"
    );
}

#[test]
fn a_runtime_error_names_the_line_inside_the_function() {
    let (e, s) = engine_and("fn decode(frame) {\n  let a = 1;\n  a + \"x\" * 2\n}\n");
    let err = e.call(&s, "decode", ("x".to_string(),)).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
}

#[test]
fn eval_import_and_deep_recursion_are_refused() {
    let e = Engine::new();
    assert!(e.compile_str("a.rhai", "fn f() { eval(\"1\") }").is_err());
    assert!(e.compile_str("b.rhai", "import \"x\" as y;").is_err());
    let s = e.compile_str("c.rhai", "fn f(n) { f(n + 1) }").unwrap();
    let err = e.call(&s, "f", (1_i64,)).unwrap_err();
    assert!(err.message.contains("nested"), "{err}");
}

#[test]
fn huge_strings_are_refused() {
    let (e, s) = engine_and("fn f() { let s = \"x\"; for i in 0..30 { s += s; } s }");
    assert!(e.call(&s, "f", ()).is_err());
}

#[test]
fn has_fn_checks_name_and_arity() {
    let (_, s) = engine_and("fn decode(frame) { () }\nfn encode(p, v, a) { \"\" }");
    assert!(s.has_fn("decode", 1));
    assert!(s.has_fn("encode", 3));
    assert!(!s.has_fn("encode", 2));
    assert!(!s.has_fn("ack", 1));
}

#[test]
fn helpers_read_and_write_integers_in_both_orders() {
    let (e, s) = engine_and(
        "fn f(b) { [u16_be(b, 0), u16_le(b, 0), i16_be(b, 2), i32_le(b, 0), u32_be(b, 0)] }\n\
         fn g() { let b = u16_be_bytes(0x1234); b += i16_le_bytes(-2); b += u32_le_bytes(1); b }\n\
         fn h(b) { [crc16_modbus(b), sum8(b), xor8(b), hex_encode(b), hex_decode(\"0a0B\")] }\n\
         fn bad(b) { u32_be(b, 2) }",
    );
    let blob: Blob = vec![0x12, 0x34, 0xFF, 0xFE];
    let r = e
        .call(&s, "f", (blob.clone(),))
        .unwrap()
        .into_array()
        .unwrap();
    let ints: Vec<i64> = r.iter().map(|d| d.as_int().unwrap()).collect();
    assert_eq!(
        ints,
        [0x1234, 0x3412, -2, 0xFEFF3412_u32 as i32 as i64, 0x1234FFFE]
    );
    let g = e.call(&s, "g", ()).unwrap().into_blob().unwrap();
    assert_eq!(g, [0x12, 0x34, 0xFE, 0xFF, 1, 0, 0, 0]);
    let h = e
        .call(&s, "h", (vec![1u8, 3, 0, 0, 0, 1],))
        .unwrap()
        .into_array()
        .unwrap();
    assert_eq!(h[0].as_int().unwrap(), 0x0A84);
    assert_eq!(h[1].as_int().unwrap(), 5);
    assert_eq!(h[2].as_int().unwrap(), 3);
    assert_eq!(h[3].clone().into_string().unwrap(), "010300000001");
    assert_eq!(h[4].clone().into_blob().unwrap(), [0x0A, 0x0B]);
    let err = e.call(&s, "bad", (blob,)).unwrap_err();
    assert!(err.message.contains("outside a blob of 4 bytes"), "{err}");
}

#[test]
fn values_convert_both_ways_and_containers_are_not_values() {
    for v in [
        Value::Bool(true),
        Value::Int(-7),
        Value::Float(1.5),
        Value::Text("on".into()),
    ] {
        assert_eq!(dynamic_to_value(&value_to_dynamic(&v)), Some(v));
    }
    assert_eq!(dynamic_to_value(&Dynamic::UNIT), None);
    assert_eq!(dynamic_to_value(&Dynamic::from_blob(vec![1])), None);
    assert_eq!(dynamic_to_value(&Dynamic::from_float(f64::NAN)), None);
}

#[test]
fn print_does_not_reach_stdout_and_the_engine_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Script>();
    let (e, s) = engine_and("fn f() { print(\"hello\"); debug(1); 2 }");
    assert_eq!(e.call(&s, "f", ()).unwrap().as_int().unwrap(), 2);
}

#[test]
fn a_call_of_slow_helpers_is_stopped_by_its_wall_time_deadline_before_its_operations_run_out() {
    // Each CRC over 60 KB is one operation but takes far longer than one.
    let (e, s) = engine_and(
        "fn decode(frame) {\n  let b = blob(60000, 7);\n  loop { crc16_modbus(b); }\n}\n",
    );
    let err = e.call(&s, "decode", ("x".to_string(),)).unwrap_err();
    assert!(err.message.contains("stopped after 50 ms"), "{err}");
    // The deadline belongs to that call only: the next one starts afresh.
    let (e2, ok) = engine_and("fn decode(frame) { 1 }\n");
    assert!(e2.call(&ok, "decode", ("x".to_string(),)).is_ok());
    assert!(e.call(&ok, "decode", ("x".to_string(),)).is_ok());
}
