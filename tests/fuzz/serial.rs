//! Serial frames through the shipped scripts: a byte stream of mutated valid frames and
//! noise, cut by the profile's framer in random chunks, each frame through `decode` (and
//! `ack`) of the shipped Rhai script; LoRa payloads through the lamp's `decode_uplink`.
//! Frames never exceed `max_frame`, values are only the profile's points with their
//! types, and a failing script is a typed `ScriptError` naming its file (the bus counts
//! `serial_frame_error` for overlong frames and `script_error` for these).

use super::support;
use polegate::model::Value;
use polegate::profile::{PointDef, PointType, Profile, SerialSpec};
use polegate::script::Engine;
use polegate::southbound::lora::script::LoraCodec;
use polegate::southbound::modbus::frame::rtu_frame;
use polegate::southbound::serial::decode::{self, AckError};
use polegate::southbound::serial::framing::{Framed, Framer};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(Engine::new)
}

fn spec(p: &Profile) -> &SerialSpec {
    p.serial.as_ref().expect("a serial profile")
}

/// Valid frames of the PA-100 amplifier (CR LF delimited text).
const PA: [&[u8]; 5] = [
    b"#01 VOL=040 MUTE=0 PLAY=0 AMP=OK LINE=OK TEMP=31.5\r\n",
    b"!07 LINE=FAULT\r\n",
    b"#01 OK\r\n",
    b"#01 ERR 2\r\n",
    b"#12 VOL=100 MUTE=1 PLAY=7 AMP=FAIL LINE=FAULT TEMP=-5\r\n",
];

/// A valid ENV-2 reading frame: A5 addr 81 payload[6] CRC16 (LE).
fn env2(addr: u8, payload: [u8; 6]) -> Vec<u8> {
    let mut body = vec![addr, 0x81];
    body.extend(payload);
    rtu_frame(0xA5, &body)
}

/// Feeds `stream` to the profile's framer in chunks, runs every frame through the
/// script and checks what comes out.
fn through_the_script(name: &str, stream: &[u8], cuts: &[Index]) -> Result<usize, TestCaseError> {
    let profile = support::profile(name);
    let spec = spec(&profile);
    let mut framer = Framer::new(spec.framing.clone(), spec.max_frame);
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        let end = (at + c.index(17) + 1).min(stream.len());
        framer.push(&stream[at..end], &mut out);
        at = end;
    }
    framer.push(&stream[at..], &mut out);
    framer.silence(&mut out);
    let mut decoded = 0;
    for f in out {
        let frame = match f {
            Framed::Frame(frame) => frame,
            Framed::Overlong(n) => {
                prop_assert!(n > 0);
                continue;
            }
        };
        prop_assert!(
            frame.len() <= spec.max_frame,
            "{} bytes > {}",
            frame.len(),
            spec.max_frame
        );
        match decode::decode(engine(), &profile, spec, &frame) {
            Ok(None) => {}
            Ok(Some(d)) => {
                decoded += 1;
                prop_assert!(d.values.len() <= profile.points.len());
                prop_assert!(d.values.len() + d.problems.len() <= frame.len() + 1);
                for (i, v) in &d.values {
                    let def = &profile.points[*i];
                    prop_assert!(typed(def, v), "{} = {:?}", def.name, v);
                }
                if let Some(a) = &d.address {
                    prop_assert!(a.len() <= frame.len() * 4 + 4);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(".rhai"), "{e}"),
        }
        match decode::ack(engine(), spec, &frame) {
            Ok(()) | Err(AckError::Refused) => {}
            // The device's text, lossy UTF-8 (a bad byte becomes a 3-byte U+FFFD).
            Err(AckError::RefusedWith(t)) => prop_assert!(t.len() <= frame.len() * 3 + 64),
            Err(AckError::Script(e)) => prop_assert!(e.to_string().contains(".rhai")),
        }
    }
    Ok(decoded)
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn pa_amplifier_lines_through_the_shipped_script_give_typed_points_or_typed_errors(
        frames in proptest::collection::vec((0..PA.len(), support::ops()), 1..6),
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<Index>(), 0..20),
    ) {
        let mut stream = Vec::new();
        let clean = frames.iter().any(|(_, ops)| ops.is_empty());
        for (i, ops) in &frames {
            stream.extend(support::mutate(PA[*i], ops, &[&noise, PA[0]]));
        }
        stream.extend(&noise);
        let decoded = through_the_script("generic-pa-serial", &stream, &cuts)?;
        if clean && noise.is_empty() {
            prop_assert!(decoded > 0 || frames.iter().all(|(i, ops)| !ops.is_empty() || *i >= 2));
        }
    }

    #[test]
    fn binary_sensor_frames_through_the_shipped_script_give_typed_points_or_typed_errors(
        frames in proptest::collection::vec((any::<u8>(), any::<[u8; 6]>(), support::ops()), 1..6),
        noise in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in proptest::collection::vec(any::<Index>(), 0..20),
    ) {
        let mut stream = Vec::new();
        for (addr, payload, ops) in &frames {
            stream.extend(support::mutate(&env2(*addr, *payload), ops, &[&noise]));
        }
        stream.extend(&noise);
        through_the_script("generic-sensor-binary", &stream, &cuts)?;
        // Unbent frames alone, back to back, all decode.
        let whole: Vec<u8> = frames.iter().flat_map(|(a, p, _)| env2(*a, *p)).collect();
        prop_assert_eq!(through_the_script("generic-sensor-binary", &whole, &[])?, frames.len());
    }

    #[test]
    fn lamp_uplinks_through_the_shipped_decoder_give_typed_points_or_an_error(
        fport in prop_oneof![3 => Just(2u8), 1 => any::<u8>()],
        seed in any::<[u8; 9]>(),
        ops in support::ops(),
    ) {
        let profile = support::profile("generic-lamp-lora");
        let codec = LoraCodec::new(engine(), &profile).expect("lamp codec");
        let bytes = support::mutate(&seed, &ops, &[]);
        match codec.decode(fport, &bytes) {
            Ok(values) => {
                prop_assert!(values.len() <= profile.points.len());
                for (i, v) in &values {
                    prop_assert!(typed(&profile.points[*i], v));
                }
                if fport == 2 && bytes.len() >= 9 {
                    prop_assert!(!values.is_empty());
                }
            }
            Err(e) => prop_assert!(e.contains("decode_uplink") || e.contains(".rhai"), "{e}"),
        }
    }
}

/// A value of the point's declared type (an enum point: a label, or an unknown raw value).
fn typed(def: &PointDef, v: &Value) -> bool {
    match (def.values.is_some(), def.ty, v) {
        (true, _, Value::Int(_) | Value::Text(_)) => true,
        (_, PointType::Bool, Value::Bool(_)) => true,
        (_, PointType::String, Value::Text(_)) => true,
        (_, PointType::F32 | PointType::F64, Value::Float(_)) => true,
        (_, t, Value::Int(_)) => t.is_integer(),
        _ => false,
    }
}
