//! Reconnect backoff, shared by every driver and the MQTT session: exponential with
//! jitter (after the AWS architecture blog's "full jitter"), except that a wait never
//! goes below `min`: the n-th wait (from 0) is uniform in [min, min(max, min * 2^n)], so
//! a reconnect never spins and many gateways restarted together spread their attempts.
//! Pure apart from the RNG.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The ceiling of the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next wait: uniform in [min, ceiling] so a reconnect never spins.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let lo = self.min.as_millis() as u64;
        let hi = (ceiling.as_millis() as u64).max(lo);
        Duration::from_millis(fastrand::u64(lo..=hi))
    }
}

/// A host up for less than this has just booted: after a power cut a whole district's
/// cabinets come back within seconds of each other.
pub const BOOT_WINDOW: Duration = Duration::from_secs(600);

/// The wait before the first broker connect (`mqtt.connect_delay_max_ms`): uniform in
/// [0, max] while the host's `uptime` is inside [`BOOT_WINDOW`], none otherwise (a daemon
/// restart on a running cabinet, or an unreadable uptime), so a fleet booting together
/// spreads its connects over `max` instead of stampeding the broker.
pub fn boot_delay(max: Duration, uptime: Option<Duration>) -> Duration {
    match uptime {
        Some(up) if up < BOOT_WINDOW && !max.is_zero() => {
            Duration::from_millis(fastrand::u64(0..=max.as_millis() as u64))
        }
        _ => Duration::ZERO,
    }
}

/// Names a file read instead of `/proc/uptime` (same format), so a test can play a host
/// that booted a moment ago (or long ago) without rebooting one.
pub const UPTIME_FILE_ENV: &str = "POLEGATE_UPTIME_FILE";

/// The host's uptime from `/proc/uptime` (or the file [`UPTIME_FILE_ENV`] names); `None`
/// when it cannot be read or parsed.
pub async fn host_uptime() -> Option<Duration> {
    let path = std::env::var_os(UPTIME_FILE_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/proc/uptime".into());
    let text = tokio::fs::read_to_string(path).await.ok()?;
    parse_uptime(&text)
}

/// The first field of `/proc/uptime` ("12345.67 …"); `None` when it does not parse.
pub fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    //! The ceiling doubles up to the maximum, waits stay inside it, reset starts over.
    use super::*;

    #[test]
    fn waits_grow_exponentially_up_to_the_maximum_and_stay_jittered_inside() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_millis(60_000));
        let mut ceilings = vec![];
        for _ in 0..10 {
            let c = b.ceiling();
            let w = b.next_wait();
            assert!(
                w >= Duration::from_millis(500) && w <= c,
                "{w:?} outside [500ms, {c:?}]"
            );
            ceilings.push(c.as_millis());
        }
        assert_eq!(&ceilings[..4], &[500, 1000, 2000, 4000]);
        assert_eq!(*ceilings.last().unwrap_or(&0), 60_000);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn the_boot_delay_is_jittered_inside_the_maximum_only_just_after_boot() {
        let max = Duration::from_millis(10_000);
        let just_booted = Some(Duration::from_secs(20));
        let waits: Vec<Duration> = (0..200).map(|_| boot_delay(max, just_booted)).collect();
        assert!(waits.iter().all(|w| *w <= max), "{waits:?}");
        assert!(waits.iter().any(|w| *w < max / 2) && waits.iter().any(|w| *w > max / 2));
        assert_eq!(boot_delay(max, Some(BOOT_WINDOW)), Duration::ZERO);
        assert_eq!(boot_delay(max, None), Duration::ZERO);
        assert_eq!(boot_delay(Duration::ZERO, just_booted), Duration::ZERO);
    }

    #[test]
    fn proc_uptime_parses_and_garbage_does_not() {
        assert_eq!(
            parse_uptime("4523.17 8790.02\n"),
            Some(Duration::from_secs_f64(4523.17))
        );
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("abc 1"), None);
        assert_eq!(parse_uptime("-3 1"), None);
    }
}
