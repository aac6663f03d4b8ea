//! Files that hold secrets: every `password_file`, every TLS private key (`key_file` of
//! `[mqtt]`, `[lora.chirpstack]` and `[ocpp]`), and every configuration file that writes
//! a password or LoRa keys inline. Validation records them (with the key that names
//! them); `polegate check` and `polegate run` warn, once per file, when one is readable
//! by every user of the machine (mode & 0o004). Group read is left alone: a packaged
//! conffile is 0640 root:polegate so that the service's own group reads it.
//! Messages name the file, its mode and the fix; never the secret.

pub use super::ctx::SecretFile;
use super::ctx::{Ctx, resolve};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A secret file every user can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub path: PathBuf,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Every key that reads a secret from it, in the order validation met them.
    pub keys: Vec<String>,
}

impl fmt::Display for Exposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        write!(
            f,
            "{p} is readable by every user (mode {:04o}) and holds secrets ({}): run chmod o-r {p}",
            self.mode,
            self.keys.join(", ")
        )
    }
}

/// The secret files of `files` that others may read, one entry per file. A file that
/// cannot be examined (an environment override, a file gone since) is skipped: reading
/// it already failed validation or will fail at use.
pub fn exposed(files: &[SecretFile]) -> Vec<Exposed> {
    let mut out: Vec<Exposed> = Vec::new();
    for f in files {
        if let Some(e) = out.iter_mut().find(|e| e.path == f.path) {
            if !e.keys.contains(&f.key) {
                e.keys.push(f.key.clone());
            }
            continue;
        }
        let Ok(meta) = std::fs::metadata(&f.path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            out.push(Exposed {
                path: f.path.clone(),
                mode,
                keys: vec![f.key.clone()],
            });
        }
    }
    out
}

/// Secrets as validation reads them: each file recorded for [`exposed`]
/// (the permission check).
impl Ctx<'_> {
    /// Records that `path` holds the secret of `key`.
    pub fn secret(&mut self, key: &str, path: &Path) {
        self.secrets.push(SecretFile {
            path: path.to_path_buf(),
            key: key.to_string(),
        });
    }

    /// Reads the secret file at `path` that `key` (set in `file`) names, recorded for the
    /// permission check; the trailing line ending trimmed. None after an error at `key`.
    pub fn read_secret(&mut self, file: &Path, key: &str, path: &Path) -> Option<String> {
        self.secret(key, path);
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                self.at(file, key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// [`read_secret`](Self::read_secret) for a section key: `f` is resolved against the
    /// file that set `key`.
    pub fn section_secret(&mut self, key: &str, f: &str) -> Option<String> {
        let origin = self.merged.origin_of(key);
        self.read_secret(&origin.file, key, &resolve(&origin, f))
    }

    /// The password of `section`: `password` written inline or read from `password_file`
    /// (at most one of them), recorded for the permission check. None when neither is
    /// set, or after an error at the key.
    pub fn password(
        &mut self,
        section: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<String> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{section}.password_file"),
                    "password and password_file are mutually exclusive; keep one",
                );
                None
            }
            (Some(p), None) => {
                self.inline_secret(&format!("{section}.password"));
                Some(p)
            }
            (None, Some(f)) => self.section_secret(&format!("{section}.password_file"), &f),
            (None, None) => None,
        }
    }

    /// Records the file that sets `key` inline (a password written in the config).
    pub fn inline_secret(&mut self, key: &str) {
        let file = self.merged.origin_of(key).file;
        self.secret(key, &file);
    }
}

#[cfg(test)]
mod tests {
    //! Real files with real modes: world-readable warns, group-readable does not.
    use super::*;

    fn file(dir: &std::path::Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn only_files_others_can_read_are_reported_once_each_with_mode_keys_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let open = file(dir.path(), "open.pass", 0o644);
        let group = file(dir.path(), "group.pass", 0o640);
        let private = file(dir.path(), "private.key", 0o600);
        let s = |path: &PathBuf, key: &str| SecretFile {
            path: path.clone(),
            key: key.into(),
        };
        let found = exposed(&[
            s(&open, "mqtt.password_file"),
            s(&group, "http.password_file"),
            s(&private, "mqtt.key_file"),
            s(&open, "lora.chirpstack.password_file"),
            s(&dir.path().join("gone"), "ocpp.key_file"),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        let line = found[0].to_string();
        assert_eq!(
            line,
            format!(
                "{p} is readable by every user (mode 0644) and holds secrets (mqtt.password_file, lora.chirpstack.password_file): run chmod o-r {p}",
                p = open.display()
            )
        );
        assert!(!line.contains("s3cret"));
    }
}
