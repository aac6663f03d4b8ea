//! Generations of the queue's database, so that its disk use can come back (sled 0.34
//! never shrinks its files): the live database is `<dir>` itself (generation 0, the
//! layout before generations) or a sibling `<dir>.gen-N`; the pointer file `<dir>.gen`
//! (one line, `generation=N`, replaced atomically) names it. Compaction (`space.rs`)
//! writes generation N+1 beside the live one, syncs it, switches the pointer, then
//! deletes the old one; open follows the pointer and deletes every other generation it
//! finds (what a crash during compaction leaves). One process owns all of it through an
//! exclusive lock on `<dir>.lock`, taken before anything is opened or deleted.

use super::seqfile;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POINTER_KEY: &str = "generation=";

/// The live generation and its database directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) path: PathBuf,
}

impl Live {
    /// The live generation of the queue at `dir`, as its pointer file names it. A pointer
    /// naming a generation whose directory is missing is refused (`Err(n)`): starting an
    /// empty database there would make open delete the real one as a stray.
    pub(crate) fn current(dir: &Path) -> Result<Live, u64> {
        let generation = current(dir);
        let path = gen_dir(dir, generation);
        if generation > 0 && !path.is_dir() {
            return Err(generation);
        }
        Ok(Live { generation, path })
    }
}

/// `<parent>/<name><suffix>` for the queue directory `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "buffer".into());
    name.push(suffix);
    dir.with_file_name(name)
}

pub(crate) fn pointer_path(dir: &Path) -> PathBuf {
    sibling(dir, ".gen")
}

pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    sibling(dir, ".lock")
}

/// The database directory of generation `n`.
pub(crate) fn gen_dir(dir: &Path, n: u64) -> PathBuf {
    if n == 0 {
        dir.to_path_buf()
    } else {
        sibling(dir, &format!(".gen-{n}"))
    }
}

/// The generation a directory name denotes (`<name>` is 0, `<name>.gen-N` is N).
fn generation_of(dir: &Path, file_name: &str) -> Option<u64> {
    let base = dir.file_name()?.to_str()?;
    if file_name == base {
        return Some(0);
    }
    let n = file_name.strip_prefix(base)?.strip_prefix(".gen-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The live generation: the pointer's, or 0 when there is none. A malformed pointer (it
/// is replaced atomically, so only outside damage makes one) falls back on the newest
/// generation directory present, and says so.
pub(crate) fn current(dir: &Path) -> u64 {
    let path = pointer_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
        Err(e) => {
            let newest = newest_present(dir);
            tracing::error!(path = %path.display(), error = %e, generation = newest,
                "buffer generation pointer unreadable; using the newest generation present");
            return newest;
        }
    };
    match text
        .trim()
        .strip_prefix(POINTER_KEY)
        .and_then(|n| n.parse().ok())
    {
        Some(n) => n,
        None => {
            let newest = newest_present(dir);
            tracing::error!(path = %path.display(), generation = newest,
                "buffer generation pointer is malformed; using the newest generation present");
            newest
        }
    }
}

fn newest_present(dir: &Path) -> u64 {
    siblings(dir).into_iter().map(|(n, _)| n).max().unwrap_or(0)
}

/// Every generation directory beside (and including) `dir`.
fn siblings(dir: &Path) -> Vec<(u64, PathBuf)> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let Ok(entries) = fs::read_dir(parent.unwrap_or(Path::new("."))) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name();
            generation_of(dir, name.to_str()?).map(|n| (n, e.path()))
        })
        .collect()
}

/// Makes generation `n` the live one (the commit point of a compaction).
pub(crate) fn switch_to(dir: &Path, n: u64) -> io::Result<()> {
    seqfile::replace_file(&pointer_path(dir), format!("{POINTER_KEY}{n}\n").as_bytes())
}

/// Deletes every generation but `live` (and a pointer temp file); returns how many.
pub(crate) fn remove_strays(dir: &Path, live: u64) -> usize {
    let mut tmp = pointer_path(dir).into_os_string();
    tmp.push(".tmp");
    let _ = fs::remove_file(PathBuf::from(tmp));
    let mut removed = 0;
    for (n, path) in siblings(dir) {
        if n == live {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                tracing::info!(path = %path.display(), "removed a stale buffer generation");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale buffer generation")
            }
        }
    }
    removed
}

/// fsyncs a directory and its subdirectories (sled syncs its files, not their names).
pub(crate) fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&e.path())?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// Takes the queue's exclusive lock (`<dir>.lock`, holding the owner's pid), waiting up
/// to `wait` for a previous owner that is still exiting. `Err(holder)` when another
/// process keeps it.
pub(crate) fn lock(dir: &Path, wait: Duration) -> io::Result<Result<fs::File, String>> {
    let path = lock_path(dir);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let deadline = Instant::now() + wait;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(|| "an unknown pid".to_owned(), |pid| format!("pid {pid}"));
                return Ok(Err(holder));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    f.set_len(0)?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    Ok(Ok(f))
}

#[cfg(test)]
mod tests {
    //! Proves the names: which directories are generations, where the pointer lives.
    use super::*;

    #[test]
    fn generation_names_sit_beside_the_queue_directory() {
        let dir = Path::new("/var/lib/polegate/buffer");
        assert_eq!(gen_dir(dir, 0), dir);
        assert_eq!(gen_dir(dir, 7), Path::new("/var/lib/polegate/buffer.gen-7"));
        assert_eq!(pointer_path(dir), Path::new("/var/lib/polegate/buffer.gen"));
        assert_eq!(generation_of(dir, "buffer"), Some(0));
        assert_eq!(generation_of(dir, "buffer.gen-12"), Some(12));
        for other in [
            "buffer.gen",
            "buffer.gen-",
            "buffer.gen-3.corrupt-x",
            "buffer.seq",
            "b",
        ] {
            assert_eq!(generation_of(dir, other), None, "{other}");
        }
    }

    #[test]
    fn the_pointer_names_the_live_generation_and_strays_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        assert_eq!(current(&dir), 0, "no pointer: the directory itself");
        for n in [0, 1, 2] {
            fs::create_dir_all(gen_dir(&dir, n).join("blobs")).expect("mkdir");
        }
        fs::create_dir_all(tmp.path().join("buffer.gen-1.corrupt-20260101T000000Z"))
            .expect("mkdir");
        switch_to(&dir, 2).expect("switch");
        assert_eq!(current(&dir), 2);
        assert_eq!(remove_strays(&dir, 2), 2);
        assert!(gen_dir(&dir, 2).exists() && !dir.exists() && !gen_dir(&dir, 1).exists());
        assert!(
            tmp.path()
                .join("buffer.gen-1.corrupt-20260101T000000Z")
                .exists(),
            "kept"
        );
        fs::write(pointer_path(&dir), "garbage").expect("write");
        assert_eq!(current(&dir), 2, "malformed: the newest present");
    }
}
