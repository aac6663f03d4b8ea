//! The rate limit of refusals (SPEC §5, §7): every refused command is counted
//! (`stats.errors.command_rejected`), but past [`REFUSALS_PER_S`] (burst
//! [`REFUSAL_BURST`]) on one `cmd` topic further refusals get no `cmd/result`, so a
//! misbehaving client cannot push telemetry out of a full buffer or flood the journal.
//! Topics are chosen by the sender, so the map is bounded: beyond [`MAX_TOPICS`] topics
//! share one bucket. Pure, time injected.

use crate::ops::bucket::TokenBucket;
use std::collections::HashMap;
use tokio::time::Instant;

pub const REFUSALS_PER_S: f64 = 2.0;
pub const REFUSAL_BURST: f64 = 20.0;
pub const MAX_TOPICS: usize = 1024;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish the `ok:false` result.
    Answer,
    /// The first refusal silenced on this topic: no result; log once.
    StartSilence,
    /// No result, no log line.
    Silent,
}

#[derive(Default)]
pub struct Refusals {
    topics: HashMap<String, (TokenBucket, bool)>,
    overflow: Option<(TokenBucket, bool)>,
}

impl Refusals {
    pub fn judge(&mut self, device: &str, now: Instant) -> Verdict {
        let fresh = || (TokenBucket::new(REFUSALS_PER_S, REFUSAL_BURST, now), false);
        let (bucket, silenced) =
            if self.topics.contains_key(device) || self.topics.len() < MAX_TOPICS {
                self.topics.entry(device.to_string()).or_insert_with(fresh)
            } else {
                self.overflow.get_or_insert_with(fresh)
            };
        match (bucket.take(now).is_ok(), *silenced) {
            (true, _) => {
                *silenced = false;
                Verdict::Answer
            }
            (false, false) => {
                *silenced = true;
                Verdict::StartSilence
            }
            (false, true) => Verdict::Silent,
        }
    }
}

#[cfg(test)]
mod tests {
    //! A burst is answered, then silenced once per topic, and answered again after a pause;
    //! one topic's flood does not silence another; the topic map stays bounded.
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_on_one_topic_is_answered_up_to_the_burst_then_silenced_until_it_refills() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        let v: Vec<Verdict> = (0..25).map(|_| r.judge("lamp-1", t0)).collect();
        assert!(v[..20].iter().all(|v| *v == Verdict::Answer));
        assert_eq!(v[20], Verdict::StartSilence);
        assert!(v[21..].iter().all(|v| *v == Verdict::Silent));
        assert_eq!(
            r.judge("lamp-2", t0),
            Verdict::Answer,
            "other topics unaffected"
        );
        assert_eq!(
            r.judge("lamp-1", t0 + Duration::from_secs(2)),
            Verdict::Answer
        );
    }

    #[test]
    fn random_topics_beyond_the_bound_share_one_bucket() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        for i in 0..MAX_TOPICS + 500 {
            r.judge(&format!("x-{i}"), t0);
        }
        assert_eq!(r.topics.len(), MAX_TOPICS);
        let v: Vec<Verdict> = (0..40).map(|i| r.judge(&format!("y-{i}"), t0)).collect();
        assert!(
            v.contains(&Verdict::Silent),
            "the overflow bucket is limited too"
        );
    }
}
