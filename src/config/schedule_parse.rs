//! The small grammars of SPEC §10, pure: a step's `at` (`22:30`, `05:30:15`,
//! `sunset-10m`, `sunrise+1h30m`), and a date of an exception (`12-24`, `2027-07-14`,
//! `12-01..12-06`). Each returns the validated form or a message saying what is expected.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SunEvent {
    Sunrise,
    Sunset,
    CivilDawn,
    CivilDusk,
}

impl SunEvent {
    pub const ALL: [SunEvent; 4] = [
        SunEvent::CivilDawn,
        SunEvent::Sunrise,
        SunEvent::Sunset,
        SunEvent::CivilDusk,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SunEvent::Sunrise => "sunrise",
            SunEvent::Sunset => "sunset",
            SunEvent::CivilDawn => "civil_dawn",
            SunEvent::CivilDusk => "civil_dusk",
        }
    }
}

/// When a step happens on a given date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Seconds after local midnight (wall clock).
    Local(u32),
    /// A sun event plus an offset in seconds.
    Sun { event: SunEvent, offset_s: i32 },
}

/// The dates of an exception: a day or a range, every year or of one year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpec {
    /// (month, day) to (month, day), inclusive.
    Yearly { from: (i8, i8), to: (i8, i8) },
    Fixed {
        from: jiff::civil::Date,
        to: jiff::civil::Date,
    },
}

/// Longest offset from a sun event (a step a day away is written as a local time).
pub const MAX_OFFSET_S: i32 = 12 * 3600;

/// `HH:MM` or `HH:MM:SS` → seconds of the day.
pub fn local_time(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let mut n = [0u32; 3];
    for (i, p) in parts.iter().enumerate() {
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n[i] = p.parse().ok()?;
    }
    (n[0] < 24 && n[1] < 60 && n[2] < 60).then_some(n[0] * 3600 + n[1] * 60 + n[2])
}

/// A duration of `h`, `m`, `s` parts in that order, each at most once: `1h30m`, `10m`, `45s`.
pub fn duration(s: &str) -> Option<i32> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut last_unit = 0u8; // 0 none, 1 h, 2 m, 3 s: units must come in order, once
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            if num.len() > 6 {
                return None;
            }
            continue;
        }
        let (rank, mult) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if num.is_empty() || rank <= last_unit {
            return None;
        }
        total += num.parse::<i64>().ok()? * mult;
        num.clear();
        last_unit = rank;
    }
    if !num.is_empty() || total > i64::from(MAX_OFFSET_S) {
        return None;
    }
    i32::try_from(total).ok()
}

/// A step's `at`.
pub fn at(s: &str) -> Result<At, String> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return local_time(s).map(At::Local).ok_or_else(|| {
            format!("'{s}' is not a local time: expected HH:MM or HH:MM:SS (00:00 to 23:59:59)")
        });
    }
    let split = s.find(['+', '-']).unwrap_or(s.len());
    let (name, rest) = s.split_at(split);
    let event = match name {
        "sunrise" => SunEvent::Sunrise,
        "sunset" => SunEvent::Sunset,
        "civil_dawn" => SunEvent::CivilDawn,
        "civil_dusk" => SunEvent::CivilDusk,
        _ => {
            return Err(format!(
                "'{s}' is not a time: expected HH:MM, HH:MM:SS, or sunrise, sunset, civil_dawn, civil_dusk with an optional offset such as sunset-10m"
            ));
        }
    };
    let offset_s = match rest.chars().next() {
        None => 0,
        Some(sign) => {
            let d = duration(&rest[1..]).ok_or_else(|| {
                format!(
                    "'{s}': the offset '{}' is not a duration: expected h, m, s parts in that order such as 1h30m or 10m, at most 12h",
                    &rest[1..]
                )
            })?;
            if sign == '-' { -d } else { d }
        }
    };
    Ok(At::Sun { event, offset_s })
}

/// `MM-DD` (checked against a leap year: `02-29` is a date).
fn month_day(s: &str) -> Option<(i8, i8)> {
    let (m, d) = s.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d): (i8, i8) = (m.parse().ok()?, d.parse().ok()?);
    jiff::civil::Date::new(2000, m, d).ok()?;
    Some((m, d))
}

/// `YYYY-MM-DD`.
fn full_date(s: &str) -> Option<jiff::civil::Date> {
    if s.len() != 10 {
        return None;
    }
    s.parse::<jiff::civil::Date>().ok()
}

/// One entry of an exception's `dates`.
pub fn date_spec(s: &str) -> Result<DateSpec, String> {
    let bad = || {
        format!(
            "'{s}' is not a date: expected MM-DD (every year), YYYY-MM-DD, or a range A..B of either form"
        )
    };
    let (a, b) = s.split_once("..").unwrap_or((s, s));
    if let (Some(from), Some(to)) = (month_day(a), month_day(b)) {
        return Ok(DateSpec::Yearly { from, to });
    }
    match (full_date(a), full_date(b)) {
        (Some(from), Some(to)) if from <= to => Ok(DateSpec::Fixed { from, to }),
        (Some(_), Some(_)) => Err(format!("'{s}': the range ends before it starts")),
        _ => Err(bad()),
    }
}

impl DateSpec {
    /// Whether `date` is listed. A yearly range may wrap the new year (`12-24..01-02`).
    pub fn contains(&self, date: jiff::civil::Date) -> bool {
        match *self {
            DateSpec::Fixed { from, to } => from <= date && date <= to,
            DateSpec::Yearly { from, to } => {
                let md = (date.month(), date.day());
                if from <= to {
                    from <= md && md <= to
                } else {
                    md >= from || md <= to
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every form of SPEC §10's `at` and `dates` parses to what it says, and the near
    //! misses a technician types are refused.
    use super::*;

    #[test]
    fn local_times_and_sun_events_with_offsets_parse() {
        assert_eq!(at("22:30"), Ok(At::Local(22 * 3600 + 30 * 60)));
        assert_eq!(at("05:30:15"), Ok(At::Local(5 * 3600 + 30 * 60 + 15)));
        assert_eq!(at("00:00"), Ok(At::Local(0)));
        assert_eq!(
            at("sunset-10m"),
            Ok(At::Sun {
                event: SunEvent::Sunset,
                offset_s: -600
            })
        );
        assert_eq!(
            at("sunrise+1h30m"),
            Ok(At::Sun {
                event: SunEvent::Sunrise,
                offset_s: 5400
            })
        );
        assert_eq!(
            at("civil_dusk"),
            Ok(At::Sun {
                event: SunEvent::CivilDusk,
                offset_s: 0
            })
        );
        for bad in [
            "24:00",
            "7:30",
            "22:60",
            "22:30:60",
            "sunset-",
            "sunset-10",
            "sunset-10x",
            "sunset+1m1h",
            "sunset+13h",
            "noon",
            "sunset-1h-1m",
            "22h30",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_every_year_fixed_and_ranges_parse_and_a_yearly_range_wraps_the_new_year() {
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let xmas = date_spec("12-24").unwrap();
        assert!(xmas.contains(d("2026-12-24")) && xmas.contains(d("2031-12-24")));
        assert!(!xmas.contains(d("2026-12-25")));
        let fete = date_spec("2027-07-14").unwrap();
        assert!(fete.contains(d("2027-07-14")) && !fete.contains(d("2028-07-14")));
        let lights = date_spec("12-01..12-06").unwrap();
        assert!(lights.contains(d("2026-12-03")) && !lights.contains(d("2026-12-07")));
        let wrap = date_spec("12-24..01-02").unwrap();
        assert!(wrap.contains(d("2026-12-31")) && wrap.contains(d("2027-01-02")));
        assert!(!wrap.contains(d("2027-01-03")));
        assert!(date_spec("02-29").is_ok());
        for bad in [
            "02-30",
            "2027-02-29",
            "12-1",
            "2027-07-14..2027-07-01",
            "xmas",
            "12-24..",
        ] {
            assert!(date_spec(bad).is_err(), "{bad}");
        }
    }
}
