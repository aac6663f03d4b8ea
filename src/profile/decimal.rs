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

    #[test]
    fn long_text_falls_back_to_the_heap_with_the_same_result() {
        assert_eq!(decimals(1e300), 0);
        assert!(1.5e-60f64.to_string().len() > STACK);
        assert_eq!(decimals(1.5e-60), 61);
        assert_eq!(round_decimals(1e300, 2), 1e300);
        assert_eq!(round_decimals(229.800_000_000_1, 1), 229.8);
    }
}
