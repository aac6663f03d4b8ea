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
}
