//! Profile discovery and validation.

use super::Profile;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A problem in a profile file: `file: key: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileError {
    pub file: PathBuf,
    /// Key path inside the file, e.g. `point[2].type`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every valid profile found, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    profiles: BTreeMap<String, Arc<Profile>>,
}

impl Registry {
    /// Loads every `*.toml` under each of `dirs` (recursively). Invalid files are
    /// reported and left out; the valid ones are returned.
    pub fn load(_dirs: &[PathBuf]) -> (Registry, Vec<ProfileError>) {
        unimplemented!()
    }
    pub fn load_file(_path: &Path) -> Result<Profile, Vec<ProfileError>> {
        unimplemented!()
    }
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles.values()
    }
    pub fn len(&self) -> usize {
        self.profiles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }
    pub fn insert(&mut self, p: Profile) {
        self.profiles.insert(p.name.clone(), Arc::new(p));
    }
}
