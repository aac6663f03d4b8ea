//! The demo's lighting program (SPEC §10): lamp-018 on at 100 % since an hour ago, and a
//! step to 60 % a few seconds after the demo starts, so the story shows the gateway
//! writing a step by itself. Times are UTC wall-clock times computed at start.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

/// Seconds after the configuration is written until the demo's step.
pub const STEP_AFTER_S: i64 = 7;

fn utc(offset_s: i64) -> String {
    let t = Timestamp::now() + SignedDuration::from_secs(offset_s);
    TimeZone::UTC
        .to_datetime(t)
        .strftime("%H:%M:%S")
        .to_string()
}

/// The `[schedule]` and `[[program]]` tables of the demo configuration.
pub fn tables() -> String {
    format!(
        "\n[schedule]\ntimezone = \"UTC\"\nclock = \"rtc\"\n\n\
         [[program]]\nid = \"evening\"\ndevices = [\"lamp-018\"]\nsteps = [\n\
         {{ at = \"{}\", set = {{ on = true, dim_level = 100 }} }},\n\
         {{ at = \"{}\", set = {{ dim_level = 60 }} }},\n]\n",
        utc(-3600),
        utc(STEP_AFTER_S)
    )
}
