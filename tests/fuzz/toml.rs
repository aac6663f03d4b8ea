//! Profile and config TOML: arbitrary text and mutations of the shipped `plugins/*.toml`
//! and `config/example.toml`. A file loads or is refused with every problem as a typed
//! `FileError` (file, key path, message); the list and each message stay bounded: a
//! message shows a value shortened, never a whole hostile line.

use super::support;
use polegate::config::load::load_with_env;
use polegate::model::file_error::FileError;
use polegate::profile::load::parse;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Longest message a technician should have to read for one problem.
const MAX_MESSAGE: usize = 400;

fn shipped_profiles() -> &'static [(PathBuf, String)] {
    static P: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    P.get_or_init(|| {
        let mut v = Vec::new();
        for dir in ["eastron", "generic"] {
            let d = support::plugins_dir().join(dir);
            for e in std::fs::read_dir(&d).expect("plugins dir") {
                let p = e.expect("entry").path();
                if p.extension().is_some_and(|x| x == "toml") {
                    let text = std::fs::read_to_string(&p).expect("profile");
                    v.push((p, text));
                }
            }
        }
        v.sort();
        assert!(v.len() >= 8, "{} shipped profiles", v.len());
        v
    })
}

fn check_errors(errors: &[FileError], text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "refused without a reason");
    prop_assert!(
        errors.len() <= 32 + text.lines().count() * 2,
        "{} errors",
        errors.len()
    );
    for e in errors {
        prop_assert!(!e.message.is_empty());
        prop_assert!(
            e.message.chars().count() <= MAX_MESSAGE,
            "{} chars: {}",
            e.message.chars().count(),
            e.message
        );
        prop_assert!(e.key.chars().count() <= MAX_MESSAGE, "key {}", e.key);
    }
    Ok(())
}

/// A directory holding `config/` (where the config is written) and `plugins/` (a link to
/// the shipped ones, so `plugins_dirs = ["../plugins"]` resolves as in the repository).
fn config_dir() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("config")).expect("config dir");
        std::os::unix::fs::symlink(support::plugins_dir(), d.path().join("plugins")).expect("link");
        d
    })
    .path()
}

fn example() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"))
            .expect("example config")
    })
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn a_mutated_shipped_profile_loads_or_names_each_problem_briefly(
        seed in any::<proptest::sample::Index>(),
        ops in support::ops(),
    ) {
        let shipped = shipped_profiles();
        let (path, text) = &shipped[seed.index(shipped.len())];
        let donors: Vec<&str> = shipped.iter().map(|(_, t)| t.as_str()).collect();
        let bent = support::mutate_text(text, &ops, &donors);
        match parse(path, &bent) {
            // A LoRa profile gains the radio points `rssi` and `snr` if it lacks them.
            Ok(p) => prop_assert!(p.points.len() <= bent.matches("[[point]]").count() + 2),
            Err(errors) => check_errors(&errors, &bent)?,
        }
        if ops.is_empty() {
            prop_assert!(parse(path, text).is_ok());
        }
    }

    #[test]
    fn arbitrary_text_as_a_profile_is_refused_with_reasons(text in "\\PC{0,200}") {
        let path = support::plugins_dir().join("generic/fuzz.toml");
        if let Err(errors) = parse(&path, &text) {
            check_errors(&errors, &text)?;
        }
    }

    #[test]
    fn a_mutated_example_config_loads_or_names_each_problem_briefly(ops in support::ops()) {
        let dir = config_dir();
        let file = dir.join("config").join(format!("fuzz-{:?}.toml", std::thread::current().id()));
        let bent = support::mutate_text(example(), &ops, &[example(), "= 1\n[[device]]\n", "\"\u{7f}\""]);
        std::fs::write(&file, &bent).expect("write config");
        let env = [("STATE_DIRECTORY".to_string(), dir.join("state").display().to_string())];
        let r = load_with_env(&file, &env);
        let _ = std::fs::remove_file(&file);
        match r {
            Ok(cfg) => prop_assert!(cfg.devices.len() <= bent.matches("[[device]]").count()),
            Err(e) => check_errors(&e.0, &bent)?,
        }
    }
}
