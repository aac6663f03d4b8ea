//! The bus scheduler, pure (time is passed in): earliest deadline first across every
//! device sharing one connection or serial line. Shared by the Modbus links
//! (`modbus::link`) and the serial line-protocol buses (`serial::bus`).
//!
//! Invariants:
//! - A healthy device is polled on a fixed grid (`start + k * poll_ms`): deadlines never
//!   drift; a slot that is already past when the previous cycle ends is skipped and
//!   counted as an overrun (returned by [`Schedule::done`]), never silently stretched.
//! - A failing device is retried at its poll rate until it has failed
//!   [`BACKOFF_AFTER_FAILURES`] cycles in a row (it is then offline); from then on it is
//!   probed no more often than keeps its share of the bus at
//!   [`FAILING_SHARE_PCT`] percent: after a failed cycle that occupied the line for `t`,
//!   its next probe is at least `t * 100 / share` later (not `t * (100 / share - 1)`:
//!   the margin pays for the drain and pacing a timeout adds to the next transaction), and the interval doubles
//!   (from `poll_ms`, up to [`PROBE_MAX`]) while it keeps failing. The first good cycle
//!   puts it back on its grid.
//! - Ties go to the lower index (configuration order), so the order is deterministic.

use std::time::Duration;
use tokio::time::Instant;

/// Most of the bus time a failing device may take, in percent.
pub const FAILING_SHARE_PCT: u32 = 10;
/// Failed cycles at the normal poll rate before backing off: as many as it takes to
/// declare the device offline (SPEC §8), so offline is reported promptly.
pub const BACKOFF_AFTER_FAILURES: u32 = 3;
/// Longest interval between two probes of a failing device.
pub const PROBE_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Slot {
    poll: Duration,
    next: Instant,
    /// Consecutive failed cycles.
    failures: u32,
    /// Current probe interval while failing.
    probe: Duration,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    slots: Vec<Slot>,
}

impl Schedule {
    /// Every device is due at `start`.
    pub fn new(polls: &[Duration], start: Instant) -> Schedule {
        Schedule {
            slots: polls
                .iter()
                .map(|&poll| Slot {
                    poll: poll.max(Duration::from_millis(1)),
                    next: start,
                    failures: 0,
                    probe: poll,
                })
                .collect(),
        }
    }

    /// The device with the earliest deadline, and that deadline.
    pub fn next(&self) -> Option<(usize, Instant)> {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(i, s)| (s.next, *i))
            .map(|(i, s)| (i, s.next))
    }

    /// Records a cycle of device `i` that ran from `started` to `now`. Returns the
    /// number of grid slots skipped (overruns) for a good cycle.
    pub fn done(&mut self, i: usize, started: Instant, now: Instant, ok: bool) -> u64 {
        let Some(s) = self.slots.get_mut(i) else {
            return 0;
        };
        if ok {
            let was_failing = s.failures > 0;
            s.failures = 0;
            s.probe = s.poll;
            if was_failing {
                // Back on a grid anchored at this good read.
                s.next = now + s.poll;
                return 0;
            }
            s.next += s.poll;
            if s.next > now {
                return 0;
            }
            let behind = (now.duration_since(s.next).as_nanos() / s.poll.as_nanos()) as u64 + 1;
            s.next += s.poll * behind as u32;
            return behind;
        }
        s.failures += 1;
        if s.failures < BACKOFF_AFTER_FAILURES {
            s.next = now + s.poll;
            return 0;
        }
        let spent = now.saturating_duration_since(started);
        let fair = spent * (100 / FAILING_SHARE_PCT);
        if s.failures > BACKOFF_AFTER_FAILURES {
            s.probe = (s.probe * 2).min(PROBE_MAX);
        }
        s.probe = s.probe.max(s.poll);
        s.next = now + s.probe.max(fair);
        0
    }

    /// Every device whose deadline is at or before `now`, in index order (agents that
    /// read several devices in one request, SNMP).
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].next <= now)
            .collect()
    }

    pub fn failures(&self, i: usize) -> u32 {
        self.slots.get(i).map_or(0, |s| s.failures)
    }
}

/// A bus reports "keeping up again" after this long without an overrun.
pub const OVERRUN_QUIET: Duration = Duration::from_secs(30);

/// Counts skipped poll slots into `poll_overrun` and logs one line when a bus starts
/// falling behind its configured poll rates and one when it keeps up again.
#[derive(Debug, Default)]
pub struct OverrunLog {
    last: Option<Instant>,
}

impl OverrunLog {
    pub fn record(
        &mut self,
        overruns: u64,
        now: Instant,
        bus_id: &str,
        device_id: &str,
        counters: &crate::ops::counters::Counters,
    ) {
        if overruns > 0 {
            crate::ops::counters::Counters::add(&counters.poll_overrun, overruns);
            if self.last.is_none() {
                tracing::warn!(bus_id = %bus_id, device_id = %device_id, skipped = overruns,
                    "bus cannot keep up with the configured poll_ms; poll slots skipped (see stats.errors.poll_overrun)");
            }
            self.last = Some(now);
        } else if self
            .last
            .is_some_and(|t| now.duration_since(t) > OVERRUN_QUIET)
        {
            self.last = None;
            tracing::info!(bus_id = %bus_id, "bus keeping up with its poll rates again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn devices_are_served_earliest_deadline_first_on_a_fixed_grid() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(100), ms(30)], t0);
        assert_eq!(s.next(), Some((0, t0)));
        assert_eq!(s.done(0, t0, t0 + ms(5), true), 0);
        assert_eq!(s.next(), Some((1, t0)));
        assert_eq!(s.done(1, t0 + ms(5), t0 + ms(10), true), 0);
        assert_eq!(s.next(), Some((1, t0 + ms(30))));
        // A cycle finishing late does not drift the grid.
        assert_eq!(s.done(1, t0 + ms(30), t0 + ms(37), true), 0);
        assert_eq!(s.next(), Some((1, t0 + ms(60))));
    }

    #[test]
    fn skipped_slots_are_reported_as_overruns_instead_of_drift() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(10)], t0);
        assert_eq!(s.done(0, t0, t0 + ms(35), true), 3);
        assert_eq!(s.next(), Some((0, t0 + ms(40))));
    }

    #[test]
    fn a_dead_device_costs_at_most_a_tenth_of_the_bus() {
        let t0 = Instant::now();
        // Dead device: every probe burns a 500 ms timeout; healthy one polls at 100 ms
        // and takes 10 ms.
        let mut s = Schedule::new(&[ms(100), ms(100)], t0);
        let mut now = t0;
        let (mut dead_busy, mut live_polls) = (Duration::ZERO, 0);
        let end = t0 + Duration::from_secs(600);
        while now < end {
            let (i, due) = s.next().expect("devices");
            now = now.max(due);
            let started = now;
            if i == 0 {
                now += ms(500);
                dead_busy += ms(500);
                s.done(0, started, now, false);
            } else {
                now += ms(10);
                live_polls += 1;
                s.done(1, started, now, true);
            }
        }
        let share = dead_busy.as_secs_f64() / 600.0;
        assert!(
            share <= 0.10,
            "dead device took {:.1}% of the bus",
            share * 100.0
        );
        assert!(s.failures(0) > 3);
        // The live device still gets nearly all of its 6000 slots.
        assert!(live_polls > 5000, "live polls {live_polls}");
    }

    #[test]
    fn a_recovered_device_returns_to_its_poll_rate() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(100)], t0);
        let mut now = t0;
        for k in 1..=BACKOFF_AFTER_FAILURES {
            let (_, due) = s.next().expect("device");
            if k > 1 {
                // Retried at the poll rate until offline.
                assert_eq!(due, now + ms(100));
            }
            now = due + ms(500);
            s.done(0, due, now, false);
        }
        let (_, due) = s.next().expect("device");
        assert!(due >= now + ms(4500));
        s.done(0, due, due + ms(10), true);
        assert_eq!(s.failures(0), 0);
        assert_eq!(s.next(), Some((0, due + ms(110))));
    }
}
