//! "Log once on failure, summarize at most every few minutes, once on recovery."
//! Pure state machine, time injected, so every driver logs the same way.

use std::time::{Duration, Instant};

/// How often a persisting failure is summarized in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// What the caller should log now.
#[derive(Debug, PartialEq, Eq)]
pub enum LogAction {
    Nothing,
    /// First failure after health: log it.
    Failed,
    /// Still failing: log a summary with `count` failures since the last line.
    Summary {
        count: u64,
    },
    /// Healthy again after `count` failures.
    Recovered {
        count: u64,
    },
}

#[derive(Debug, Default)]
pub struct FailureLog {
    failing_since: Option<Instant>,
    last_line: Option<Instant>,
    since_line: u64,
    total: u64,
}

impl FailureLog {
    pub fn failure(&mut self, now: Instant) -> LogAction {
        self.total += 1;
        self.since_line += 1;
        match self.last_line {
            None => {
                self.failing_since = Some(now);
                self.last_line = Some(now);
                self.since_line = 0;
                LogAction::Failed
            }
            Some(t) if now.duration_since(t) >= SUMMARY_EVERY => {
                let count = self.since_line;
                self.last_line = Some(now);
                self.since_line = 0;
                LogAction::Summary { count }
            }
            Some(_) => LogAction::Nothing,
        }
    }

    /// [`FailureLog::failure`] for a site that logs the same line for the first failure
    /// and for a summary: `Some(failures)` when a line is due, with `failures` `None` on
    /// the first (a tracing field left out) and the count since the last line on a
    /// summary.
    pub fn due(&mut self, now: Instant) -> Option<Option<u64>> {
        match self.failure(now) {
            LogAction::Failed => Some(None),
            LogAction::Summary { count } => Some(Some(count)),
            LogAction::Nothing | LogAction::Recovered { .. } => None,
        }
    }

    /// [`FailureLog::failure`] for a site whose first line and summary differ: runs
    /// `first` on the first failure of a run, `summary` with the failures since the last
    /// line when a summary is due, nothing otherwise.
    pub fn on_failure(&mut self, now: Instant, first: impl FnOnce(), summary: impl FnOnce(u64)) {
        match self.failure(now) {
            LogAction::Failed => first(),
            LogAction::Summary { count } => summary(count),
            LogAction::Nothing | LogAction::Recovered { .. } => {}
        }
    }

    pub fn success(&mut self) -> LogAction {
        if self.failing_since.take().is_some() {
            let count = self.total;
            *self = FailureLog::default();
            LogAction::Recovered { count }
        } else {
            LogAction::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    //! The failure log speaks once on failure, every SUMMARY_EVERY while failing, once on recovery.
    use super::*;

    #[test]
    fn a_failing_device_is_logged_once_then_summarized_then_once_on_recovery() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.success(), LogAction::Nothing);
        assert_eq!(log.failure(t0), LogAction::Failed);
        for i in 1..100 {
            assert_eq!(log.failure(t0 + Duration::from_secs(i)), LogAction::Nothing);
        }
        assert_eq!(
            log.failure(t0 + SUMMARY_EVERY),
            LogAction::Summary { count: 100 }
        );
        assert_eq!(log.success(), LogAction::Recovered { count: 101 });
        assert_eq!(log.success(), LogAction::Nothing);
    }

    #[test]
    fn due_gives_one_line_on_failure_then_summaries_with_their_count() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.due(t0), Some(None));
        assert_eq!(log.due(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.due(t0 + SUMMARY_EVERY), Some(Some(2)));
        assert_eq!(log.success(), LogAction::Recovered { count: 3 });
    }

    #[test]
    fn on_failure_runs_the_first_line_once_then_the_summary_with_its_count() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        let mut lines = Vec::new();
        for t in [t0, t0 + Duration::from_secs(1), t0 + SUMMARY_EVERY] {
            // (None: no line; Some(None): the first line; Some(Some(n)): a summary.)
            let line = std::cell::Cell::new(None);
            log.on_failure(t, || line.set(Some(None)), |n| line.set(Some(Some(n))));
            lines.push(line.get());
        }
        assert_eq!(lines, [Some(None), None, Some(Some(2))]);
    }
}
