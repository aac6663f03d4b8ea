//! `polegate schedule` (SPEC §10 "Preview"): what the lighting programs do on a date.

use super::{EXIT_CONFIG, EXIT_OK, EXIT_USAGE, print_errors};
use crate::schedule::plan::Plan;
use crate::schedule::preview;
use std::path::Path;

pub fn schedule(path: &Path, date: Option<&str>, json: bool) -> i32 {
    let cfg = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let errors: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            print_errors("invalid configuration", &errors);
            return EXIT_CONFIG;
        }
    };
    let Some(sched) = &cfg.schedule else {
        eprintln!(
            "polegate: {} has no [schedule] or [[program]]",
            path.display()
        );
        return EXIT_CONFIG;
    };
    let plan = match Plan::new(sched) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("polegate: {e}");
            return EXIT_CONFIG;
        }
    };
    let date = match date {
        None => plan.date_of(jiff::Timestamp::now()),
        Some(d) => match d.parse::<jiff::civil::Date>() {
            Ok(d) => d,
            Err(_) => {
                eprintln!("polegate: --date {d:?} is not a date: expected YYYY-MM-DD");
                return EXIT_USAGE;
            }
        },
    };
    if json {
        println!("{}", preview::json(&plan, date));
    } else {
        print!("{}", preview::text(&plan, date));
    }
    EXIT_OK
}
