//! Range-checked values of the configuration: periods, bounded integers, buffer sizes
//! and listen addresses. Each is checked once, while its section is deserialized; what
//! is wrong with a value is kept beside the key ([`Checked::Invalid`]) and reported by
//! the section in the order of its other checks, so one run lists every problem in a
//! stable order, in our own words.
//!
//! A type error (a string where a number belongs) is still serde's, reported with the
//! others of its section (see `ctx.rs`).

use super::ctx::Ctx;
use super::parse::parse_size;
use crate::model::limits::{MAX_PERIOD_MS, MAX_PERIOD_S};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::Path;

/// A value checked while it was deserialized: in range, or what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked<T> {
    Valid(T),
    /// The message, without the key (`0 is out of range: must be at least 1`).
    Invalid(String),
}

/// A type whose written form (`Repr`) is checked into it.
pub trait Check: Sized {
    type Repr;
    fn check(written: Self::Repr) -> Result<Self, String>;
}

impl<T: Check> Checked<T> {
    /// `written`, checked.
    pub fn of(written: T::Repr) -> Self {
        match T::check(written) {
            Ok(v) => Checked::Valid(v),
            Err(m) => Checked::Invalid(m),
        }
    }
}

impl<'de, T> Deserialize<'de> for Checked<T>
where
    T: Check,
    T::Repr: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::Repr::deserialize(d).map(Checked::of)
    }
}

impl Ctx<'_> {
    /// The value of `key` (in `file`, else whoever set the section key); None when absent,
    /// or after reporting what is wrong with it.
    pub fn valid<T>(&mut self, file: Option<&Path>, key: &str, v: Option<Checked<T>>) -> Option<T> {
        match v? {
            Checked::Valid(v) => Some(v),
            Checked::Invalid(msg) => {
                match file {
                    Some(f) => self.at(f, key, msg),
                    None => self.err(key, msg),
                }
                None
            }
        }
    }
}

/// A period, timeout or silence in milliseconds (`MS`) or seconds: at least `LO`, at most
/// a year (`model::limits`), so a huge value is refused here rather than overflowing a
/// timer later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period<const MS: bool, const LO: u64>(u64);

/// A period in milliseconds, at least `LO`.
pub type Millis<const LO: u64> = Period<true, LO>;
/// A period in seconds, at least `LO`.
pub type Seconds<const LO: u64> = Period<false, LO>;

impl<const MS: bool, const LO: u64> Period<MS, LO> {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<const MS: bool, const LO: u64> Check for Period<MS, LO> {
    type Repr = i64;
    fn check(n: i64) -> Result<Self, String> {
        let (hi, unit) = if MS {
            (MAX_PERIOD_MS, "ms")
        } else {
            (MAX_PERIOD_S, "s")
        };
        match u64::try_from(n) {
            Ok(v) if v > hi => Err(format!("{n} is too long: at most {hi} {unit} (a year)")),
            Ok(v) if v >= LO => Ok(Period(v)),
            _ => Err(format!("{n} is out of range: must be at least {LO}")),
        }
    }
}

/// A password, key or community string; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An integer in `LO..=HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int<const LO: i64, const HI: i64>(i64);

impl<const LO: i64, const HI: i64> Int<LO, HI> {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<const LO: i64, const HI: i64> Check for Int<LO, HI> {
    type Repr = i64;
    fn check(n: i64) -> Result<Self, String> {
        if (LO..=HI).contains(&n) {
            Ok(Int(n))
        } else {
            Err(format!("{n} is out of range {LO}..={HI}"))
        }
    }
}

/// An integer that is `A` or `B` (`data_bits`, `stop_bits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneOf<const A: i64, const B: i64>(i64);

impl<const A: i64, const B: i64> OneOf<A, B> {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<const A: i64, const B: i64> Check for OneOf<A, B> {
    type Repr = i64;
    fn check(n: i64) -> Result<Self, String> {
        if n == A || n == B {
            Ok(OneOf(n))
        } else {
            Err(format!("{n} is not allowed: expected {A} or {B}"))
        }
    }
}

/// The smallest buffer size accepted.
pub const MIN_BYTES: u64 = 64 * 1024;

/// A size of `[buffer]`: an integer of bytes or a string like "256MiB", at least 64KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Check for ByteSize {
    type Repr = toml::Value;
    fn check(v: toml::Value) -> Result<Self, String> {
        match parse_size(&v) {
            Some(n) if n >= MIN_BYTES => Ok(ByteSize(n)),
            Some(n) => Err(format!("{n} bytes is too small: at least 64KiB")),
            None => Err(format!(
                "{v} is not a size: an integer of bytes or a string like \"256MiB\" (KiB, MiB, GiB)"
            )),
        }
    }
}

/// An `ip:port` a listener binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(SocketAddr);

impl ListenAddr {
    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl Check for ListenAddr {
    type Repr = String;
    fn check(s: String) -> Result<Self, String> {
        s.parse()
            .map(ListenAddr)
            .map_err(|_| format!("'{s}' is not an ip:port address"))
    }
}

/// An `ip:port` a listener binds, or `""`: no listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalListen(Option<SocketAddr>);

impl OptionalListen {
    pub fn get(self) -> Option<SocketAddr> {
        self.0
    }
}

impl Check for OptionalListen {
    type Repr = String;
    fn check(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(OptionalListen(None));
        }
        ListenAddr::check(s)
            .map(|a| OptionalListen(Some(a.0)))
            .map_err(|m| format!("{m} (\"\" turns the listener off)"))
    }
}

#[cfg(test)]
mod tests {
    //! Each value says what is wrong in the words the fixtures expect; bounds included.
    use super::*;

    fn msg<T: Check>(r: T::Repr) -> String {
        match T::check(r) {
            Ok(_) => "ok".into(),
            Err(m) => m,
        }
    }

    #[test]
    fn periods_take_their_lower_bound_and_at_most_a_year() {
        assert_eq!(msg::<Millis<1>>(0), "0 is out of range: must be at least 1");
        assert_eq!(
            msg::<Millis<0>>(-1),
            "-1 is out of range: must be at least 0"
        );
        assert_eq!(msg::<Millis<1>>(MAX_PERIOD_MS as i64), "ok");
        assert_eq!(
            msg::<Millis<1>>(i64::MAX),
            format!(
                "{} is too long: at most {MAX_PERIOD_MS} ms (a year)",
                i64::MAX
            )
        );
        assert_eq!(
            msg::<Seconds<1>>(MAX_PERIOD_S as i64 + 1),
            format!(
                "{} is too long: at most {MAX_PERIOD_S} s (a year)",
                MAX_PERIOD_S + 1
            )
        );
        assert_eq!(Seconds::<0>::check(0).map(Period::get), Ok(0));
    }

    #[test]
    fn integers_sizes_and_addresses_name_what_is_allowed() {
        assert_eq!(msg::<Int<1, 65535>>(0), "0 is out of range 1..=65535");
        assert_eq!(Int::<1, 65535>::check(65535).map(Int::get), Ok(65535));
        assert_eq!(msg::<OneOf<7, 8>>(9), "9 is not allowed: expected 7 or 8");
        assert_eq!(
            msg::<ByteSize>(toml::Value::String("1KiB".into())),
            "1024 bytes is too small: at least 64KiB"
        );
        assert_eq!(
            msg::<ByteSize>(toml::Value::Float(1.5)),
            "1.5 is not a size: an integer of bytes or a string like \"256MiB\" (KiB, MiB, GiB)"
        );
        assert_eq!(
            ByteSize::check(toml::Value::String("256MiB".into())).map(ByteSize::get),
            Ok(256 << 20)
        );
        assert_eq!(
            msg::<ListenAddr>("x".into()),
            "'x' is not an ip:port address"
        );
        assert_eq!(
            msg::<OptionalListen>("x".into()),
            "'x' is not an ip:port address (\"\" turns the listener off)"
        );
        assert_eq!(
            OptionalListen::check(String::new()),
            Ok(OptionalListen(None))
        );
    }
}
