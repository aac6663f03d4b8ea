//! Proves decoding of known register images for every type and word order, scaling
//! without binary noise, enums and strings, that malformed input is an error (never a
//! panic), and that encoding then decoding round-trips for every type and order.
use super::*;
use crate::profile::Table;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ORDERS: [WordOrder; 4] = [
    WordOrder::Abcd,
    WordOrder::Dcba,
    WordOrder::Badc,
    WordOrder::Cdab,
];

fn point(ty: PointType, order: WordOrder) -> PointDef {
    PointDef {
        name: "p".into(),
        unit: None,
        ty,
        reg: Some(RegisterRef {
            table: Table::Holding,
            address: 0,
            order,
            bit: None,
            length: (ty == PointType::String).then_some(4),
        }),
        scale: 1.0,
        offset: 0.0,
        deadband: None,
        writable: true,
        min: None,
        max: None,
        values: None,
        scaling: Default::default(),
    }
}

fn dec(p: &PointDef, words: &[u16]) -> Value {
    decode_registers(p, words).expect("decodes").value
}

/// (order, image) for each order of one value.
fn images(abcd: &[u16]) -> Vec<(WordOrder, Vec<u16>)> {
    let swapped: Vec<u16> = abcd.iter().map(|w| w.swap_bytes()).collect();
    let mut cdab = abcd.to_vec();
    cdab.reverse();
    let mut dcba = swapped.clone();
    dcba.reverse();
    vec![
        (WordOrder::Abcd, abcd.to_vec()),
        (WordOrder::Cdab, cdab),
        (WordOrder::Badc, swapped),
        (WordOrder::Dcba, dcba),
    ]
}

#[test]
fn f32_decodes_from_the_documented_image_of_every_order() {
    let cases = [
        (WordOrder::Abcd, [0x42F6, 0xE979]),
        (WordOrder::Cdab, [0xE979, 0x42F6]),
        (WordOrder::Badc, [0xF642, 0x79E9]),
        (WordOrder::Dcba, [0x79E9, 0xF642]),
    ];
    for (order, words) in cases {
        let p = point(PointType::F32, order);
        assert_eq!(dec(&p, &words), Value::Float(123.456), "{order:?}");
        assert_eq!(
            encode_registers(&p, &Value::Float(123.456)),
            Ok(words.to_vec())
        );
    }
}

#[test]
fn f32_publishes_its_shortest_decimal_form() {
    let p = point(PointType::F32, WordOrder::Abcd);
    assert_eq!(dec(&p, &[0x4365, 0xCCCD]), Value::Float(229.8));
}

#[test]
fn u32_and_i32_decode_in_every_order() {
    let cases = [
        (WordOrder::Abcd, [0x1122, 0x3344]),
        (WordOrder::Cdab, [0x3344, 0x1122]),
        (WordOrder::Badc, [0x2211, 0x4433]),
        (WordOrder::Dcba, [0x4433, 0x2211]),
    ];
    for (order, words) in cases {
        let p = point(PointType::U32, order);
        assert_eq!(dec(&p, &words), Value::Int(0x1122_3344), "{order:?}");
    }
    for (order, words) in images(&[0xFFFF, 0xFFFE]) {
        let p = point(PointType::I32, order);
        assert_eq!(dec(&p, &words), Value::Int(-2), "{order:?}");
    }
}

#[test]
fn sixteen_bit_types_swap_bytes_only_for_badc_and_dcba() {
    for (order, word, signed) in [
        (WordOrder::Abcd, 0x1234, 0xFFFE),
        (WordOrder::Cdab, 0x1234, 0xFFFE),
        (WordOrder::Badc, 0x3412, 0xFEFF),
        (WordOrder::Dcba, 0x3412, 0xFEFF),
    ] {
        assert_eq!(
            dec(&point(PointType::U16, order), &[word]),
            Value::Int(0x1234)
        );
        assert_eq!(
            dec(&point(PointType::I16, order), &[signed]),
            Value::Int(-2)
        );
    }
}

#[test]
fn sixty_four_bit_types_decode_in_every_order() {
    let abcd = [0x0102, 0x0304, 0x0506, 0x0708];
    let images_i64 = images(&abcd);
    assert_eq!(
        images_i64[3],
        (WordOrder::Dcba, vec![0x0807, 0x0605, 0x0403, 0x0201])
    );
    for (order, words) in images_i64 {
        assert_eq!(
            dec(&point(PointType::U64, order), &words),
            Value::Int(0x0102_0304_0506_0708)
        );
    }
    for (order, words) in images(&[0xFEFD, 0xFCFB, 0xFAF9, 0xF8F8]) {
        assert_eq!(
            dec(&point(PointType::I64, order), &words),
            Value::Int(-0x0102_0304_0506_0708)
        );
    }
    for (order, words) in images(&[0x405E, 0xDD2F, 0x1A9F, 0xBE77]) {
        assert_eq!(
            dec(&point(PointType::F64, order), &words),
            Value::Float(123.456)
        );
    }
}

#[test]
fn u64_above_i64_max_becomes_a_float() {
    let p = point(PointType::U64, WordOrder::Abcd);
    assert_eq!(
        dec(&p, &[0xFFFF; 4]),
        Value::Float(18_446_744_073_709_551_615.0)
    );
    assert_eq!(
        dec(&p, &[0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        Value::Int(i64::MAX)
    );
}

#[test]
fn bits_of_a_holding_register_decode_and_merge_without_touching_the_others() {
    let mut p = point(PointType::Bool, WordOrder::Abcd);
    if let Some(r) = p.reg.as_mut() {
        r.bit = Some(9);
    }
    assert_eq!(dec(&p, &[0x0200]), Value::Bool(true));
    assert_eq!(dec(&p, &[0xFDFF]), Value::Bool(false));
    assert_eq!(merge_bit(&p, 0x00F0, true), Ok(0x02F0));
    assert_eq!(merge_bit(&p, 0xFFFF, false), Ok(0xFDFF));
    assert_eq!(encode_registers(&p, &Value::Bool(true)), Ok(vec![0x0200]));
    if let Some(r) = p.reg.as_mut() {
        r.order = WordOrder::Badc;
    }
    assert_eq!(dec(&p, &[0x0002]), Value::Bool(true));
    assert_eq!(merge_bit(&p, 0x0000, true), Ok(0x0002));
}

#[test]
fn coils_take_true_false_zero_or_one_only() {
    let mut p = point(PointType::Bool, WordOrder::Abcd);
    if let Some(r) = p.reg.as_mut() {
        r.table = Table::Coil;
    }
    assert_eq!(decode_bit(&p, true).map(|d| d.value), Ok(Value::Bool(true)));
    assert_eq!(encode_bit(&p, &Value::Int(1)), Ok(true));
    assert_eq!(encode_bit(&p, &Value::Bool(false)), Ok(false));
    assert!(encode_bit(&p, &Value::Int(2)).is_err());
    assert!(encode_bit(&p, &Value::Text("on".into())).is_err());
    assert!(decode_bit(&point(PointType::U16, WordOrder::Abcd), true).is_err());
}

#[test]
fn scaling_publishes_clean_decimals_and_integers_when_integral() {
    let mut p = point(PointType::U16, WordOrder::Abcd);
    p.scale = 0.1;
    assert_eq!(dec(&p, &[234]), Value::Float(23.4));
    assert_eq!(dec(&p, &[2298]), Value::Float(229.8));
    p.scale = 0.001;
    assert_eq!(dec(&p, &[987]), Value::Float(0.987));
    p.scale = 10.0;
    p.offset = -40.0;
    assert_eq!(dec(&p, &[5]), Value::Int(10));
    p.offset = -40.5;
    assert_eq!(dec(&p, &[5]), Value::Float(9.5));
    let mut kwh = point(PointType::F32, WordOrder::Abcd);
    kwh.scale = 1000.0;
    let words = encode_registers(
        &point(PointType::F32, WordOrder::Abcd),
        &Value::Float(1.234),
    );
    assert_eq!(dec(&kwh, &words.expect("encodes")), Value::Float(1234.0));
}

#[test]
fn writes_invert_scale_and_offset_and_reject_out_of_range_values() {
    let mut p = point(PointType::U16, WordOrder::Abcd);
    p.scale = 0.1;
    assert_eq!(encode_registers(&p, &Value::Float(16.0)), Ok(vec![160]));
    assert_eq!(encode_registers(&p, &Value::Int(32)), Ok(vec![320]));
    assert!(encode_registers(&p, &Value::Float(-1.0)).is_err());
    assert!(encode_registers(&p, &Value::Float(7000.0)).is_err());
    assert!(encode_registers(&p, &Value::Bool(true)).is_err());
    assert!(encode_registers(&p, &Value::Float(f64::NAN)).is_err());
    let i16p = point(PointType::I16, WordOrder::Abcd);
    assert_eq!(encode_registers(&i16p, &Value::Int(-2)), Ok(vec![0xFFFE]));
    assert!(encode_registers(&i16p, &Value::Int(40_000)).is_err());
}

#[test]
fn enums_publish_labels_and_unknown_raw_values_as_flagged_numbers() {
    let mut p = point(PointType::U16, WordOrder::Abcd);
    p.values = Some(BTreeMap::from([
        (0, "available".to_string()),
        (2, "charging".to_string()),
    ]));
    let d = decode_registers(&p, &[2]).expect("decodes");
    assert_eq!(d.value, Value::Text("charging".into()));
    assert!(!d.unknown_enum);
    let d = decode_registers(&p, &[7]).expect("decodes");
    assert_eq!(d.value, Value::Int(7));
    assert!(d.unknown_enum);
    assert_eq!(
        encode_registers(&p, &Value::Text("charging".into())),
        Ok(vec![2])
    );
    assert_eq!(encode_registers(&p, &Value::Int(0)), Ok(vec![0]));
    assert!(encode_registers(&p, &Value::Text("flying".into())).is_err());
    assert!(encode_registers(&p, &Value::Int(7)).is_err());
}

#[test]
fn strings_trim_padding_swap_bytes_for_badc_and_replace_invalid_utf8() {
    let p = point(PointType::String, WordOrder::Abcd);
    assert_eq!(
        dec(&p, &[0x4556, 0x4331, 0x3220, 0x0000]),
        Value::Text("EVC12".into())
    );
    let swapped = point(PointType::String, WordOrder::Badc);
    assert_eq!(
        dec(&swapped, &[0x5645, 0x3143, 0x2032, 0x0000]),
        Value::Text("EVC12".into())
    );
    assert_eq!(dec(&p, &[0x41FF, 0, 0, 0]), Value::Text("A\u{FFFD}".into()));
    assert_eq!(
        encode_registers(&p, &Value::Text("EVC".into())),
        Ok(vec![0x4556, 0x4300, 0, 0])
    );
    assert!(encode_registers(&p, &Value::Text("far too long".into())).is_err());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let p = point(PointType::U32, WordOrder::Abcd);
    assert!(decode_registers(&p, &[1]).is_err());
    assert!(decode_registers(&p, &[1, 2, 3]).is_err());
    assert!(decode_registers(&p, &[]).is_err());
    let f = point(PointType::F32, WordOrder::Abcd);
    assert!(decode_registers(&f, &[0x7FC0, 0x0000]).is_err(), "NaN");
    let mut none = p.clone();
    none.reg = None;
    assert!(decode_registers(&none, &[1, 2]).is_err());
    assert!(encode_registers(&none, &Value::Int(1)).is_err());
}

fn any_type() -> impl Strategy<Value = PointType> {
    prop::sample::select(PointType::ALL.to_vec())
}

proptest! {
    /// Decoding any image, encoding the value and decoding again gives the same value;
    /// with scale 1 the exact registers come back (bool-with-bit: the bit).
    #[test]
    fn encode_then_decode_round_trips_for_every_type_and_order(
        ty in any_type(),
        order in prop::sample::select(ORDERS.to_vec()),
        words in prop::collection::vec(any::<u16>(), 4),
        bit in 0u8..16,
        scaled in any::<bool>(),
    ) {
        let mut p = point(ty, order);
        let words: Vec<u16> = match ty {
            // Printable ASCII, so the text survives the trip byte for byte.
            PointType::String => words.iter().map(|w| (w & 0x3F3F) + 0x2121).collect(),
            _ => words,
        };
        if ty == PointType::Bool && let Some(r) = p.reg.as_mut() {
            r.bit = Some(bit);
        }
        if scaled && matches!(ty, PointType::U16 | PointType::I16 | PointType::U32 | PointType::I32) {
            p.scale = 0.1;
            p.offset = -3.5;
        }
        let reg = p.reg.clone().expect("register");
        let image = &words[..usize::from(span(&reg, ty))];
        let Ok(first) = decode_registers(&p, image) else {
            // Only NaN and infinities may refuse to decode.
            prop_assert!(matches!(ty, PointType::F32 | PointType::F64));
            return Ok(());
        };
        let encoded = encode_registers(&p, &first.value).expect("encodes");
        let second = decode_registers(&p, &encoded).expect("decodes again");
        prop_assert_eq!(&second.value, &first.value);
        let exact = p.scale == 1.0 && !matches!(ty, PointType::Bool | PointType::String | PointType::U64);
        if exact {
            prop_assert_eq!(encoded, image.to_vec());
        }
    }
}

#[test]
fn a_decoded_point_still_equals_the_same_point_freshly_loaded() {
    // A reload compares points: the scaling worked out by a decode must not count.
    let mut p = point(PointType::U16, WordOrder::Abcd);
    p.scale = 0.1;
    let fresh = p.clone();
    assert_eq!(dec(&p, &[2298]), Value::Float(229.8));
    assert_eq!(p, fresh);
}
