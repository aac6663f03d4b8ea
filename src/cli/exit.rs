//! Exit codes of every subcommand (SPEC §1).

pub const EXIT_OK: i32 = 0;
/// Invalid configuration or profile, or a missing or unreadable config file.
pub const EXIT_CONFIG: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// A fatal runtime error (the daemon could not run, or no daemon answered).
pub const EXIT_RUNTIME: i32 = 3;
