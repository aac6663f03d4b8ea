//! The checks of `[[program]]` that need the profiles (SPEC §10 "check"): every point a
//! step sets exists on every device of the program, is writable and takes the value —
//! the command validation of SPEC §8, so `check` refuses what a write would refuse.

use crate::config::Config;
use crate::model::FileError;
use crate::profile::Registry;

pub fn cross(cfg: &Config, profiles: &Registry) -> Vec<FileError> {
    let Some(s) = &cfg.schedule else {
        return vec![];
    };
    let mut errors = Vec::new();
    for (i, p) in s.programs.iter().enumerate() {
        let lists = std::iter::once((format!("program[{i}].steps"), &p.steps)).chain(
            p.exceptions
                .iter()
                .enumerate()
                .map(|(e, x)| (format!("program[{i}].exception[{e}].steps"), &x.steps)),
        );
        for (key, steps) in lists {
            for (j, step) in steps.iter().enumerate() {
                for (point, value) in &step.set {
                    // One error per point and profile, naming the first device that has it.
                    let mut seen = Vec::new();
                    for d in cfg.devices.iter().filter(|d| p.covers(&d.id)) {
                        let Some(profile) = profiles.get(&d.profile) else {
                            continue; // reported as a missing profile
                        };
                        if seen.contains(&d.profile) {
                            continue;
                        }
                        seen.push(d.profile.clone());
                        let one = [(point.clone(), value.clone())];
                        if let Err(m) = crate::commands::validate::validate(profile, &one) {
                            errors.push(FileError {
                                file: cfg.path.clone(),
                                key: format!("{key}[{j}].set.{point}"),
                                message: format!(
                                    "device '{}' (profile '{}'): {m}",
                                    d.id, d.profile
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    errors
}
