//! Replay pacing (SPEC §8 "replay_rate"): a token bucket of `max_inflight` tokens refilled
//! at `replay_rate` per second, applied only while a backlog larger than the in-flight
//! window exists. Pure, time injected.

use crate::ops::bucket::TokenBucket;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Pacer {
    /// None: `replay_rate` 0, no limit.
    bucket: Option<TokenBucket>,
}

impl Pacer {
    /// `rate` 0 = unlimited.
    pub fn new(rate: u32, burst: u16, now: Instant) -> Pacer {
        Pacer {
            bucket: (rate > 0)
                .then(|| TokenBucket::new(f64::from(rate), f64::from(burst.max(1)), now)),
        }
    }

    /// Takes one token if the publish may go now; otherwise how long to wait for one.
    pub fn take(&mut self, backlog: bool, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = &mut self.bucket else {
            return Ok(());
        };
        if backlog {
            bucket.take(now)
        } else {
            // Live traffic is not paced, but still draws the bucket so a backlog that
            // starts right after a burst cannot exceed the rate.
            bucket.spend(now);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    //! A backlog drains at the configured rate after an initial burst of max_inflight.
    use super::*;

    #[test]
    fn a_backlog_is_paced_to_the_rate_after_a_burst_of_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, 10, t0);
        let mut sent = 0;
        let mut now = t0;
        let end = t0 + Duration::from_secs(2);
        while now < end {
            match p.take(true, now) {
                Ok(()) => sent += 1,
                Err(wait) => now += wait,
            }
        }
        // 10 burst + 100/s for 2 s.
        assert!((205..=212).contains(&sent), "sent {sent}");
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0, 10, t0);
        for _ in 0..10_000 {
            assert!(p.take(true, t0).is_ok());
        }
    }

    #[test]
    fn live_traffic_is_never_held_but_uses_up_the_replay_budget() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10, 2, t0);
        for _ in 0..5 {
            assert!(p.take(false, t0).is_ok());
        }
        assert!(p.take(true, t0).is_err());
    }
}
