//! The decimal side of the register codec: the shortest decimal form of a float and
//! rounding to a number of decimals, exactly as `Display` and `str::parse` define them,
//! formatted into a buffer on the stack: they run for every scaled point of every poll,
//! where a `String` each was most of the daemon's allocations (BENCHMARKS.md, issue 20).

use std::fmt::{Arguments, Write};

/// Text up to this long stays on the stack; longer text (huge magnitudes) goes to a
/// `String`, with the same result.
const STACK: usize = 48;

struct Stack {
    buf: [u8; STACK],
    len: usize,
}

impl Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self
            .len
            .checked_add(s.len())
            .filter(|&e| e <= STACK)
            .ok_or(std::fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `f` of the text `args` make.
fn with_text<R>(args: Arguments<'_>, f: impl FnOnce(&str) -> R) -> R {
    let mut s = Stack {
        buf: [0; STACK],
        len: 0,
    };
    if s.write_fmt(args).is_ok()
        && let Ok(text) = std::str::from_utf8(&s.buf[..s.len])
    {
        return f(text);
    }
    f(&args.to_string())
}

/// The f64 with the same shortest decimal representation as `x` (229.8f32 -> 229.8).
pub(super) fn f32_to_f64(x: f32) -> f64 {
    with_text(format_args!("{x}"), |s| s.parse().unwrap_or(f64::from(x)))
}

/// Digits after the decimal point in the shortest representation of `x`.
pub(super) fn decimals(x: f64) -> usize {
    with_text(format_args!("{x}"), |s| {
        s.split_once('.').map(|(_, frac)| frac.len()).unwrap_or(0)
    })
}

/// Rounds `x` to `places` decimals, removing binary noise from decimal arithmetic.
pub(super) fn round_decimals(x: f64, places: usize) -> f64 {
    if !x.is_finite() || places > 17 {
        return x;
    }
    with_text(format_args!("{x:.places$}"), |s| s.parse().unwrap_or(x))
}

/// A point's `scale` and `offset` as decimals, for integer raws: worked out once per
/// point ([`PointDef::scaling`](super::PointDef::scaling)) instead of formatting both on
/// every poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// The `scale` and `offset` this was worked out for (bits).
    of: (u64, u64),
    /// Digits after the decimal point of `scale` and of `offset`.
    pub(super) scale_places: usize,
    pub(super) offset_places: usize,
    /// `scale` and `offset` in units of 10^-places (places: the larger of the two), when
    /// both fit.
    units: Option<(i128, i128)>,
}

/// Results below this magnitude (in units of the last decimal) are exact in `f64` and
/// far from any rounding tie, so the integer path gives what `round_decimals` gives.
const EXACT_UNITS: u128 = 1 << 48;

impl Scaling {
    pub(super) fn of(scale: f64, offset: f64) -> Scaling {
        let (scale_places, offset_places) = (decimals(scale), decimals(offset));
        let places = scale_places.max(offset_places);
        let units = match (units(scale, places), units(offset, places)) {
            (Some(s), Some(o)) if places <= 17 => Some((s, o)),
            _ => None,
        };
        Scaling {
            of: (scale.to_bits(), offset.to_bits()),
            scale_places,
            offset_places,
            units,
        }
    }

    /// Whether this was worked out for these `scale` and `offset`.
    pub(super) fn is_for(&self, scale: f64, offset: f64) -> bool {
        self.of == (scale.to_bits(), offset.to_bits())
    }

    /// The decimals a scaled integer is rounded to.
    pub(super) fn places(&self) -> usize {
        self.scale_places.max(self.offset_places)
    }

    /// `raw * scale + offset` rounded to [`Scaling::places`] decimals, computed on
    /// integers; `None` where only the decimal text path gives the published value
    /// (huge results, zero and its sign).
    pub(super) fn apply(&self, raw: i128) -> Option<f64> {
        let (scale, offset) = self.units?;
        let n = raw.checked_mul(scale)?.checked_add(offset)?;
        if n == 0 || n.unsigned_abs() >= EXACT_UNITS {
            return None;
        }
        // Both operands are exact in f64 (n < 2^53, 10^places <= 10^17 < 2^57 with
        // trailing zero bits), and IEEE division rounds once: the f64 nearest the decimal.
        Some(n as f64 / 10f64.powi(self.places() as i32))
    }
}

/// `x` in units of 10^-places (its shortest decimal text with the point moved), if whole.
fn units(x: f64, places: usize) -> Option<i128> {
    with_text(format_args!("{x}"), |s| {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let pad = places.checked_sub(frac.len())?;
        // Too many digits for an i128 fail to parse; products that overflow, to check.
        let int: i128 = int.parse().ok()?;
        let frac: i128 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        let scale_up = 10i128.checked_pow(u32::try_from(places).ok()?)?;
        let v = int
            .checked_mul(scale_up)?
            .checked_add(frac.checked_mul(10i128.checked_pow(u32::try_from(pad).ok()?)?)?)?;
        Some(if neg { -v } else { v })
    })
}

#[cfg(test)]
mod tests {
    //! Proves the stack formatting gives what `to_string` and `format!` give, also past
    //! the stack buffer.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_helpers_agree_with_heap_formatting(x in any::<f64>(), places in 0usize..18, y in any::<f32>()) {
            let want_dec = x.to_string().split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            prop_assert_eq!(decimals(x), want_dec);
            if x.is_finite() {
                let want: f64 = format!("{x:.places$}").parse().unwrap_or(x);
                prop_assert_eq!(round_decimals(x, places).to_bits(), want.to_bits());
            }
            let want32: f64 = y.to_string().parse().unwrap_or(f64::from(y));
            prop_assert_eq!(f32_to_f64(y).to_bits(), want32.to_bits());
        }
    }

    /// Scales and offsets as profiles write them: a few decimal digits.
    fn decimal() -> impl Strategy<Value = f64> {
        (-100_000i64..100_000, 0i32..8)
            .prop_map(|(m, e)| format!("{m}e-{e}").parse().unwrap_or(0.0))
    }

    proptest! {
        #[test]
        fn the_integer_path_gives_what_the_text_path_gives(raw in any::<i64>(), small in -70_000i64..70_000, scale in decimal(), offset in decimal()) {
            let s = Scaling::of(scale, offset);
            for r in [i128::from(raw), i128::from(small)] {
                if let Some(v) = s.apply(r) {
                    let want = round_decimals(r as f64 * scale + offset, s.places());
                    prop_assert_eq!(v.to_bits(), want.to_bits(), "{} * {} + {}", r, scale, offset);
                }
            }
        }
    }

    #[test]
    fn the_integer_path_covers_the_usual_scales_and_leaves_the_rest() {
        let s = Scaling::of(0.1, 0.0);
        assert_eq!(s.apply(2298), Some(229.8));
        assert_eq!(Scaling::of(0.001, -40.5).apply(1234), Some(-39.266));
        assert_eq!(s.apply(0), None, "zero keeps the text path's sign");
        assert_eq!(s.apply(1 << 60), None, "too large to be exact");
        assert_eq!(Scaling::of(1.5e-60, 0.0).apply(3), None);
    }

    #[test]
    fn long_text_falls_back_to_the_heap_with_the_same_result() {
        assert_eq!(decimals(1e300), 0);
        assert!(1.5e-60f64.to_string().len() > STACK);
        assert_eq!(decimals(1.5e-60), 61);
        assert_eq!(round_decimals(1e300, 2), 1e300);
        assert_eq!(round_decimals(229.800_000_000_1, 1), 229.8);
    }
}
