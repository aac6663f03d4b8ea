//! Helpers for binary line protocols, registered into every script engine and documented
//! in `plugins/SCRIPTING.md`. Pure functions over blobs (`Vec<u8>`) and strings; every
//! out-of-range offset or value is a script error naming the helper, never a panic.

use rhai::{Blob, EvalAltResult, INT};

type Res<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(msg: String) -> Res<T> {
    Err(msg.into())
}

/// `n` bytes of `b` from `off`, or an error naming the helper.
fn window<'b>(name: &str, b: &'b [u8], off: INT, n: usize) -> Res<&'b [u8]> {
    let start = usize::try_from(off).ok();
    match start.and_then(|s| b.get(s..s.checked_add(n)?)) {
        Some(w) => Ok(w),
        None => fail(format!(
            "{name}: offset {off} + {n} bytes is outside a blob of {} bytes",
            b.len()
        )),
    }
}

fn range_checked(name: &str, v: INT, lo: INT, hi: INT) -> Res<INT> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        fail(format!("{name}: {v} does not fit ({lo}..={hi})"))
    }
}

pub use crate::model::bytes::{crc16_modbus, hex_decode, hex_encode, sum8, xor8};

macro_rules! read_int {
    ($e:ident, $name:literal, $ty:ty, $n:literal, $from:ident) => {
        $e.register_fn($name, |b: &mut Blob, off: INT| -> Res<INT> {
            let w = window($name, b, off, $n)?;
            let mut a = [0u8; $n];
            a.copy_from_slice(w);
            Ok(<$ty>::$from(a) as INT)
        });
    };
}

macro_rules! write_int {
    ($e:ident, $name:literal, $ty:ty, $to:ident) => {
        $e.register_fn($name, |v: INT| -> Res<Blob> {
            let v = range_checked($name, v, <$ty>::MIN as INT, <$ty>::MAX as INT)?;
            Ok((v as $ty).$to().to_vec())
        });
    };
}

pub fn register(e: &mut rhai::Engine) {
    read_int!(e, "u16_be", u16, 2, from_be_bytes);
    read_int!(e, "u16_le", u16, 2, from_le_bytes);
    read_int!(e, "i16_be", i16, 2, from_be_bytes);
    read_int!(e, "i16_le", i16, 2, from_le_bytes);
    read_int!(e, "u32_be", u32, 4, from_be_bytes);
    read_int!(e, "u32_le", u32, 4, from_le_bytes);
    read_int!(e, "i32_be", i32, 4, from_be_bytes);
    read_int!(e, "i32_le", i32, 4, from_le_bytes);
    write_int!(e, "u16_be_bytes", u16, to_be_bytes);
    write_int!(e, "u16_le_bytes", u16, to_le_bytes);
    write_int!(e, "i16_be_bytes", i16, to_be_bytes);
    write_int!(e, "i16_le_bytes", i16, to_le_bytes);
    write_int!(e, "u32_be_bytes", u32, to_be_bytes);
    write_int!(e, "u32_le_bytes", u32, to_le_bytes);
    write_int!(e, "i32_be_bytes", i32, to_be_bytes);
    write_int!(e, "i32_le_bytes", i32, to_le_bytes);
    e.register_fn("u8_at", |b: &mut Blob, off: INT| -> Res<INT> {
        Ok(window("u8_at", b, off, 1)?[0] as INT)
    });

    e.register_fn("crc16_modbus", |b: &mut Blob| crc16_modbus(b) as INT);
    e.register_fn("crc16_modbus", |s: &str| crc16_modbus(s.as_bytes()) as INT);
    e.register_fn("sum8", |b: &mut Blob| sum8(b) as INT);
    e.register_fn("sum8", |s: &str| sum8(s.as_bytes()) as INT);
    e.register_fn("xor8", |b: &mut Blob| xor8(b) as INT);
    e.register_fn("xor8", |s: &str| xor8(s.as_bytes()) as INT);
    e.register_fn("hex_encode", |b: &mut Blob| hex_encode(b));
    e.register_fn("hex_decode", |s: &str| -> Res<Blob> {
        hex_decode(s).map_err(|m| m.into())
    });
    // Ranges of a blob for checksums over part of a frame (`crc16_modbus(slice(f, 0, 6))`).
    e.register_fn("slice", |b: &mut Blob, off: INT, len: INT| -> Res<Blob> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(window("slice", b, off, n)?.to_vec())
    });
}

#[cfg(test)]
mod tests {
    //! The helpers against known vectors.
    use super::*;

    #[test]
    fn crc16_modbus_matches_the_reference_vector() {
        // Read holding 0, count 1, unit 1: 01 03 00 00 00 01 -> CRC 0x0A84 (sent 84 0A).
        assert_eq!(crc16_modbus(&[1, 3, 0, 0, 0, 1]), 0x0A84);
        assert_eq!(crc16_modbus(b"123456789"), 0x4B37);
    }

    #[test]
    fn sums_and_hex_round_trip() {
        assert_eq!(sum8(&[0xFF, 0x02]), 0x01);
        assert_eq!(xor8(&[0x0F, 0xF0, 0x01]), 0xFE);
        assert_eq!(hex_encode(&[0x01, 0xAB]), "01AB");
        assert_eq!(hex_decode("01 ab").unwrap(), vec![0x01, 0xAB]);
        assert!(hex_decode("0").is_err());
        assert!(hex_decode("zz").is_err());
    }
}
