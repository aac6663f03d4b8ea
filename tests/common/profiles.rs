//! The shipped profiles, for every test binary: also `tests/fuzz.rs`, which builds
//! without the `demo` feature the rest of this harness needs, includes this file alone.

use polegate::profile::{ProfileRef, Registry};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")
}

/// The profiles shipped in `plugins/`, loaded once per test binary; every one must load.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let (registry, errors) = Registry::load(&[plugins_dir()]);
        assert!(errors.is_empty(), "{errors:#?}");
        registry
    })
}

/// A shipped profile by name.
pub fn profile(name: &str) -> ProfileRef {
    registry()
        .get(name)
        .unwrap_or_else(|| panic!("profile {name} is not shipped"))
        .clone()
}
