//! The rate limit of refusals (SPEC §5, §7): every refused command is counted
//! (`stats.errors.command_rejected`), but past [`REFUSALS_PER_S`] (burst
//! [`REFUSAL_BURST`]) on one `cmd` topic further refusals get no `cmd/result`, so a
//! misbehaving client cannot push telemetry out of a full buffer or flood the journal.
//! Topics are chosen by the sender, so only the topics of configured devices get a bucket
//! of their own; every topic naming no configured device shares one bucket (a sender
//! inventing names gets no more results than one topic), and the map never holds more
//! than [`MAX_TOPICS`] entries (a reload that renames devices: quiet entries are dropped
//! first, then the rest share the overflow bucket). The warning that a topic is being silenced is logged once per
//! flood: a token refilled mid-flood answers one more refusal without logging again, and
//! only a topic quiet for [`QUIET_ENDS_FLOOD`] starts a new episode. Pure, time injected.

use crate::ops::bucket::TokenBucket;
use std::collections::HashMap;
use tokio::time::Instant;

pub const REFUSALS_PER_S: f64 = 2.0;
pub const REFUSAL_BURST: f64 = 20.0;
pub const MAX_TOPICS: usize = 1024;
/// A topic without refusals this long (the bucket's full refill) ends its flood.
pub const QUIET_ENDS_FLOOD: std::time::Duration = std::time::Duration::from_secs(10);

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

/// A topic's bucket, whether its flood was logged, and its last refusal.
type Topic = (TokenBucket, bool, Instant);

#[derive(Default)]
pub struct Refusals {
    topics: HashMap<String, Topic>,
    /// Every topic naming no configured device, and configured ones past the bound.
    overflow: Option<Topic>,
}

impl Refusals {
    /// `known`: whether `device` is a configured device (else the shared bucket).
    pub fn judge(&mut self, device: &str, known: bool, now: Instant) -> Verdict {
        let fresh = || {
            (
                TokenBucket::new(REFUSALS_PER_S, REFUSAL_BURST, now),
                false,
                now,
            )
        };
        if known && !self.topics.contains_key(device) && self.topics.len() >= MAX_TOPICS {
            self.topics
                .retain(|_, t| now.saturating_duration_since(t.2) < QUIET_ENDS_FLOOD);
        }
        let own = known && (self.topics.contains_key(device) || self.topics.len() < MAX_TOPICS);
        let (bucket, silenced, last) = if own {
            self.topics.entry(device.to_string()).or_insert_with(fresh)
        } else {
            self.overflow.get_or_insert_with(fresh)
        };
        if now.saturating_duration_since(*last) >= QUIET_ENDS_FLOOD {
            *silenced = false;
        }
        *last = now;
        match (bucket.take(now).is_ok(), *silenced) {
            (true, _) => Verdict::Answer,
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
        let v: Vec<Verdict> = (0..25).map(|_| r.judge("lamp-1", true, t0)).collect();
        assert!(v[..20].iter().all(|v| *v == Verdict::Answer));
        assert_eq!(v[20], Verdict::StartSilence);
        assert!(v[21..].iter().all(|v| *v == Verdict::Silent));
        assert_eq!(
            r.judge("lamp-2", true, t0),
            Verdict::Answer,
            "other topics unaffected"
        );
        assert_eq!(
            r.judge("lamp-1", true, t0 + Duration::from_secs(2)),
            Verdict::Answer
        );
    }

    #[test]
    fn a_sustained_flood_is_logged_once_and_a_new_flood_after_a_quiet_spell_again() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        let mut flood = |from: Duration, secs: u64| {
            let (mut answered, mut logged) = (0, 0);
            for i in 0..secs * 100 {
                match r.judge("lamp-1", true, t0 + from + Duration::from_millis(i * 10)) {
                    Verdict::Answer => answered += 1,
                    Verdict::StartSilence => logged += 1,
                    Verdict::Silent => {}
                }
            }
            (answered, logged)
        };
        // 100 refusals/s for a minute: the burst and 2/s are answered, one warning.
        let (answered, logged) = flood(Duration::ZERO, 60);
        assert_eq!(logged, 1);
        assert!((135..=142).contains(&answered), "{answered}");
        // Quiet for the refill time, then a new flood: a new warning.
        let (_, logged) = flood(Duration::from_secs(75), 5);
        assert_eq!(logged, 1);
    }

    #[test]
    fn random_topics_beyond_the_bound_share_one_bucket() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        for i in 0..MAX_TOPICS + 500 {
            r.judge(&format!("x-{i}"), true, t0);
        }
        assert_eq!(r.topics.len(), MAX_TOPICS);
        let v: Vec<Verdict> = (0..40)
            .map(|i| r.judge(&format!("y-{i}"), true, t0))
            .collect();
        assert!(
            v.contains(&Verdict::Silent),
            "the overflow bucket is limited too"
        );
    }

    #[test]
    fn invented_device_names_share_one_bucket_and_take_no_memory() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        let answered = (0..5000)
            .filter(|i| r.judge(&"z".repeat(1000 + i), false, t0) == Verdict::Answer)
            .count();
        assert_eq!(
            answered, REFUSAL_BURST as usize,
            "one burst for all of them"
        );
        assert!(r.topics.is_empty(), "no entry per invented name");
        assert_eq!(
            r.judge("lamp-1", true, t0),
            Verdict::Answer,
            "configured devices keep theirs"
        );
    }

    #[test]
    fn quiet_entries_make_room_for_configured_devices_once_the_map_is_full() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        for i in 0..MAX_TOPICS {
            r.judge(&format!("old-{i}"), true, t0);
        }
        let later = t0 + QUIET_ENDS_FLOOD;
        assert_eq!(r.judge("new-lamp", true, later), Verdict::Answer);
        assert_eq!(r.topics.len(), 1, "the quiet ones were dropped");
    }
}
