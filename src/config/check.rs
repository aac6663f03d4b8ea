//! Summary printed by `polegate check` (placeholder until the config module lands).
use super::Config;
use crate::profile::Registry;
pub fn summary(_cfg: &Config, _reg: &Registry) -> String {
    String::new()
}
