//! Whether the wall clock can be trusted to run a lighting schedule (SPEC §10 "Clock"):
//! with `clock = "ntp"` only while the kernel says it is synchronized (`adjtimex(2)`:
//! `STA_UNSYNC` clear, set by the kernel itself once no NTP daemon has disciplined the
//! clock for a while); with `clock = "rtc"` always.
//!
//! The one `unsafe` call of the crate is here: `adjtimex` with `modes = 0` only reads
//! the kernel's state into a zeroed struct we own.

use crate::config::schedule::ClockMode;

/// What the scheduler knows about the clock, as shown in `P/G/schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    Synchronized,
    Unsynchronized,
    /// `clock = "rtc"`: trusted by configuration.
    Rtc,
}

impl ClockState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockState::Synchronized => "synchronized",
            ClockState::Unsynchronized => "unsynchronized",
            ClockState::Rtc => "rtc",
        }
    }
    pub fn trusted(self) -> bool {
        self != ClockState::Unsynchronized
    }
}

/// Where the clock's state comes from: the kernel, or a test's hand.
pub trait ClockSource: Send + Sync {
    /// True when the kernel reports the clock synchronized.
    fn synchronized(&self) -> bool;
}

/// The kernel, through `adjtimex`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl ClockSource for Kernel {
    fn synchronized(&self) -> bool {
        kernel_synchronized().unwrap_or(false)
    }
}

/// The clock state for `mode` read from `source`.
pub fn state(mode: ClockMode, source: &dyn ClockSource) -> ClockState {
    match mode {
        ClockMode::Rtc => ClockState::Rtc,
        ClockMode::Ntp if source.synchronized() => ClockState::Synchronized,
        ClockMode::Ntp => ClockState::Unsynchronized,
    }
}

/// `Some(true)` when `STA_UNSYNC` is clear; None when the call fails (an error is
/// treated as "not synchronized": the fail-safe applies).
#[allow(unsafe_code)]
pub fn kernel_synchronized() -> Option<bool> {
    // SAFETY: `timex` is plain old data, so all-zero is a valid value; with `modes = 0`
    // adjtimex only writes the current state into the struct we pass and changes nothing.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return None;
    }
    Some(tx.status & libc::STA_UNSYNC == 0 && rc != libc::TIME_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);
    impl ClockSource for Fixed {
        fn synchronized(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn rtc_is_always_trusted_and_ntp_follows_the_kernel() {
        assert_eq!(state(ClockMode::Rtc, &Fixed(false)), ClockState::Rtc);
        assert_eq!(
            state(ClockMode::Ntp, &Fixed(true)),
            ClockState::Synchronized
        );
        assert_eq!(
            state(ClockMode::Ntp, &Fixed(false)),
            ClockState::Unsynchronized
        );
        assert!(!ClockState::Unsynchronized.trusted());
    }

    #[test]
    fn the_kernel_answers_adjtimex() {
        assert!(kernel_synchronized().is_some());
    }
}
