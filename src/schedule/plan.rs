//! The sans-IO core of SPEC §10: given the configuration, a date and an instant, which
//! step of a program is current, when the next one is, and when each step of a day falls.
//! No clock is read here: every function takes the instant it reasons about.
//!
//! Sun events come from the `solar-positioning` crate (SPA positions searched for the
//! horizon crossing: −0.833° for sunrise/sunset, −6° for civil dawn/dusk, the first
//! crossing between the date's local midnights); zones, DST gaps and folds from the system's
//! tz database through `jiff`. A local time in a spring-forward gap means the first
//! instant after the gap; one that occurs twice means its first occurrence; a sun event
//! that does not happen that day (polar day or night) is skipped.

use crate::config::schedule::{At, ProgramCfg, ScheduleCfg, StepCfg, SunEvent};
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How far the current step is looked for before and the next one after `now`: a program
/// with only sun steps in a polar night may have none for months.
pub const SEARCH_DAYS: i64 = 370;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("schedule.timezone: unknown time zone '{0}'")]
    Zone(String),
    #[error("the system's local time zone cannot be read ({0}): set schedule.timezone")]
    SystemZone(String),
    #[error("schedule.latitude/longitude: {0} is not a place on Earth")]
    Place(String),
}

/// The Julian date of the Unix epoch.
const UNIX_EPOCH_JD: f64 = 2_440_587.5;

/// The (UT) Julian date of an instant.
fn julian(t: Timestamp) -> f64 {
    UNIX_EPOCH_JD + t.as_millisecond() as f64 / 86_400_000.0
}

/// One step of one day: when, which (index in the day's list) and from which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub instant: Timestamp,
    /// Index in the program's `steps`, or in the exception's `steps` when `exception` is set.
    pub index: usize,
    /// The exception (index in the program's `exception` list) whose steps these are.
    pub exception: Option<usize>,
}

/// The schedule ready to be asked questions.
#[derive(Debug, Clone)]
pub struct Plan {
    tz: TimeZone,
    place: Option<solar_positioning::Location>,
    pub programs: Vec<ProgramCfg>,
    /// Sun events already computed (an SPA crossing search costs milliseconds on a
    /// cabinet CPU, and every wake asks for the same few days).
    suns: Arc<Mutex<SunCache>>,
}

/// (date, event) → instant (None: it does not happen that day).
type SunCache = HashMap<(Date, SunEvent), Option<Timestamp>>;

/// Sun events kept; a few days of four events suffice, the map is cleared beyond.
const SUN_CACHE: usize = 64;

impl Plan {
    pub fn new(cfg: &ScheduleCfg) -> Result<Plan, PlanError> {
        let tz = match &cfg.timezone {
            Some(name) => TimeZone::get(name).map_err(|_| PlanError::Zone(name.clone()))?,
            None => TimeZone::try_system().map_err(|e| PlanError::SystemZone(e.to_string()))?,
        };
        Plan::with_zone(cfg, tz)
    }

    /// With an explicit zone (tests, `polegate schedule`).
    pub fn with_zone(cfg: &ScheduleCfg, tz: TimeZone) -> Result<Plan, PlanError> {
        let place = match (cfg.latitude, cfg.longitude) {
            (Some(latitude), Some(longitude))
                if (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude) =>
            {
                Some(solar_positioning::Location {
                    latitude,
                    longitude,
                })
            }
            (Some(lat), Some(lon)) => return Err(PlanError::Place(format!("{lat}, {lon}"))),
            _ => None,
        };
        Ok(Plan {
            tz,
            place,
            programs: cfg.programs.clone(),
            suns: Default::default(),
        })
    }

    pub fn zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The zone's name (`Europe/Paris`), or `local` when the system's has none.
    pub fn zone_name(&self) -> String {
        self.tz.iana_name().unwrap_or("local").to_string()
    }

    /// The local date of `t`.
    pub fn date_of(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    /// When `event` happens on local date `date` (the first such crossing between that
    /// day's local midnights); None in polar day or night.
    pub fn sun(&self, date: Date, event: SunEvent) -> Option<Timestamp> {
        let mut suns = self.suns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = suns.get(&(date, event)) {
            return *t;
        }
        let t = self.compute_sun(date, event);
        if suns.len() >= SUN_CACHE {
            suns.clear();
        }
        suns.insert((date, event), t);
        t
    }

    fn compute_sun(&self, date: Date, event: SunEvent) -> Option<Timestamp> {
        let place = self.place?;
        let start = julian(self.local(date, 0)?);
        let end = julian(self.local(date.tomorrow().ok()?, 0)?);
        let year = f64::from(date.year()) + (f64::from(date.day_of_year()) - 0.5) / 365.25;
        let delta_t = solar_positioning::delta_t::estimate(year).ok()?;
        let sun = solar_positioning::SolarEvents::new();
        use solar_positioning::Horizon;
        let found = match event {
            SunEvent::Sunrise => {
                sun.next_rise_from_julian(start, end, place, delta_t, Horizon::SunriseSunset)
            }
            SunEvent::Sunset => {
                sun.next_set_from_julian(start, end, place, delta_t, Horizon::SunriseSunset)
            }
            SunEvent::CivilDawn => {
                sun.next_rise_from_julian(start, end, place, delta_t, Horizon::CivilTwilight)
            }
            SunEvent::CivilDusk => {
                sun.next_set_from_julian(start, end, place, delta_t, Horizon::CivilTwilight)
            }
        };
        let jd = found.ok().flatten()?;
        Timestamp::from_millisecond(((jd - UNIX_EPOCH_JD) * 86_400_000.0).round() as i64).ok()
    }

    /// The instant of a local wall-clock time on `date` (gap: the first instant after it;
    /// fold: the first occurrence).
    pub fn local(&self, date: Date, seconds: u32) -> Option<Timestamp> {
        let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        let dt = date.at(h as i8, m as i8, s as i8, 0);
        let amb = self.tz.to_ambiguous_timestamp(dt);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
            AmbiguousOffset::Gap { after, .. } => {
                // Read with the offset after the gap, the wall time lies before the
                // transition; the transition itself is the first instant after the gap.
                let early = after.to_timestamp(dt).ok()?;
                let t = self.tz.following(early).next()?;
                Some(t.timestamp())
            }
        }
    }

    /// When step `at` falls on `date`, or None (no such sun event that day).
    pub fn instant(&self, date: Date, at: At) -> Option<Timestamp> {
        match at {
            At::Local(s) => self.local(date, s),
            At::Sun { event, offset_s } => self
                .sun(date, event)?
                .checked_add(i64::from(offset_s).seconds())
                .ok(),
        }
    }

    /// The exception that applies to `date`, if any (the first that lists it).
    pub fn exception_on(&self, program: usize, date: Date) -> Option<usize> {
        self.programs[program]
            .exceptions
            .iter()
            .position(|e| e.dates.iter().any(|d| d.contains(date)))
    }

    /// The steps of `date` (the exception's when one lists it), in time order.
    pub fn day(&self, program: usize, date: Date) -> Vec<Occurrence> {
        let exception = self.exception_on(program, date);
        let p = &self.programs[program];
        let steps = match exception {
            Some(e) => &p.exceptions[e].steps,
            None => &p.steps,
        };
        let mut out: Vec<Occurrence> = steps
            .iter()
            .enumerate()
            .filter_map(|(index, s)| {
                Some(Occurrence {
                    instant: self.instant(date, s.at)?,
                    index,
                    exception,
                })
            })
            .collect();
        out.sort_by_key(|o| (o.instant, o.index));
        out
    }

    /// The step of an occurrence.
    pub fn step(&self, program: usize, o: &Occurrence) -> &StepCfg {
        let p = &self.programs[program];
        match o.exception {
            Some(e) => &p.exceptions[e].steps[o.index],
            None => &p.steps[o.index],
        }
    }

    /// The step whose instant is the latest at or before `now`, looking back over previous
    /// days as far as needed (up to [`SEARCH_DAYS`]). A sun step with a large offset may
    /// cross midnight, so each day is compared with its neighbours.
    pub fn current(&self, program: usize, now: Timestamp) -> Option<Occurrence> {
        let today = self.date_of(now);
        let mut best: Option<Occurrence> = None;
        for back in -1..SEARCH_DAYS {
            let date = today.checked_sub(back.days()).ok()?;
            let found = self
                .day(program, date)
                .into_iter()
                .filter(|o| o.instant <= now)
                .max_by_key(|o| o.instant);
            best = best.max_by_instant(found);
            // One more day after the first hit: yesterday's late step may beat today's.
            if best.is_some() && back >= 1 {
                break;
            }
        }
        best
    }

    /// The first step instant after `now` (up to [`SEARCH_DAYS`] ahead).
    pub fn next(&self, program: usize, now: Timestamp) -> Option<Occurrence> {
        let today = self.date_of(now);
        let mut best: Option<Occurrence> = None;
        for ahead in -1..SEARCH_DAYS {
            let date = today.checked_add(ahead.days()).ok()?;
            let found = self
                .day(program, date)
                .into_iter()
                .find(|o| o.instant > now);
            best = match (best, found) {
                (Some(a), Some(b)) if b.instant < a.instant => Some(b),
                (None, f) => f,
                (b, _) => b,
            };
            if best.is_some() && ahead >= 1 {
                break;
            }
        }
        best
    }
}

trait Latest {
    fn max_by_instant(self, other: Option<Occurrence>) -> Option<Occurrence>;
}

impl Latest for Option<Occurrence> {
    fn max_by_instant(self, other: Option<Occurrence>) -> Option<Occurrence> {
        match (self, other) {
            (Some(a), Some(b)) if b.instant > a.instant => Some(b),
            (None, b) => b,
            (a, _) => a,
        }
    }
}
