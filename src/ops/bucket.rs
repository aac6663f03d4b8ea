//! The one token bucket: `burst` tokens, refilled continuously at `rate` per second,
//! starting full. The command rate limit (per device) and the replay pacing both use it.
//! Pure, time injected (tokio's `Instant`, so paused-time tests drive it).

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; at or below 0 the bucket never refills.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Takes one token if there is one; otherwise how long until there is
    /// (`Duration::MAX` when the bucket never refills).
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate)
                .unwrap_or(Duration::MAX))
        }
    }

    /// Takes one token whether or not there is one (never below empty): traffic that may
    /// not wait still uses up the budget of the traffic that does.
    pub fn spend(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    //! Proves the burst, the refill rate, the wait it reports and the cap at `burst`.
    use super::*;

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_refill_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, 5.0, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), Ok(()));
        }
        assert_eq!(b.take(t0), Err(Duration::from_millis(200)));
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(b.take(t1), Ok(()));
        assert!(b.take(t1).is_err());
    }

    #[test]
    fn the_reported_wait_is_exactly_long_enough() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1.0, t0);
        assert_eq!(b.take(t0), Ok(()));
        let wait = b.take(t0).expect_err("empty");
        assert!(b.take(t0 + wait / 2).is_err());
        assert_eq!(b.take(t0 + wait), Ok(()));
    }

    #[test]
    fn an_idle_bucket_fills_up_to_its_burst_and_no_further() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn spending_draws_the_budget_without_going_below_empty() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 2.0, t0);
        for _ in 0..10 {
            b.spend(t0);
        }
        assert_eq!(b.take(t0), Err(Duration::from_millis(100)));
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn a_bucket_that_never_refills_says_it_waits_forever() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1.0, t0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0 + Duration::from_secs(60)), Err(Duration::MAX));
    }
}
