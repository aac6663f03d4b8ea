//! The seq floor kept *outside* the sled directory (`<dir>.seq`, e.g.
//! `<state_dir>/buffer.seq`), so that moving a corrupt database aside does not lose it.
//!
//! The file holds one line, `reserved_until=<u64>`, and is replaced atomically (write a
//! temp file, fsync it, rename over, fsync the directory): after a crash it holds either
//! the old bound or the new one, never a torn mix.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const KEY: &str = "reserved_until=";

/// The side file of the queue directory `dir`: `<parent>/<name>.seq`.
pub(crate) fn path_for(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "buffer".into());
    name.push(".seq");
    match dir.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

/// Reads the bound; `Ok(None)` when the file does not exist, `Err` when it is unreadable or
/// malformed (the caller logs it and falls back on the database's own bound).
pub(crate) fn read(path: &Path) -> io::Result<Option<u64>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim()
        .strip_prefix(KEY)
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected `{KEY}<number>`, found {:?}", truncate(&text)),
            )
        })
}

/// The line, fixed-width so that an in-place rewrite never grows the file.
fn line(reserved_until: u64) -> String {
    format!("{KEY}{reserved_until:020}\n")
}

/// Atomically replaces the file with `reserved_until`; when that fails (a full disk has
/// no room for the temp file) rewrites the existing file in place, which needs no new
/// blocks: the line is one fixed-width sector, so it is the old bound or the new one.
pub(crate) fn write(path: &Path, reserved_until: u64) -> io::Result<()> {
    match replace(path, reserved_until) {
        Ok(()) => Ok(()),
        Err(e) => overwrite(path, reserved_until).map_err(|_| e),
    }
}

fn overwrite(path: &Path, reserved_until: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(line(reserved_until).as_bytes())?;
    f.sync_data()
}

fn replace(path: &Path, reserved_until: u64) -> io::Result<()> {
    replace_file(path, line(reserved_until).as_bytes())
}

/// Atomically replaces `path` with `contents`: a temp file beside it (`<path>.tmp`),
/// fsync, rename over, fsync of the directory. After a crash the file is old or new.
pub(crate) fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename itself must be durable before anything relies on the new contents.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    //! Proves the side file round-trips, is absent-tolerant and rejects garbage.
    use super::*;

    #[test]
    fn the_side_file_sits_beside_the_queue_directory() {
        assert_eq!(
            path_for(Path::new("/var/lib/polegate/buffer")),
            PathBuf::from("/var/lib/polegate/buffer.seq")
        );
    }

    #[test]
    fn a_written_bound_reads_back_and_a_missing_file_is_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("buffer.seq");
        assert_eq!(read(&p).expect("read"), None);
        write(&p, 2049).expect("write");
        assert_eq!(read(&p).expect("read"), Some(2049));
        write(&p, 3073).expect("write");
        assert_eq!(read(&p).expect("read"), Some(3073));
    }

    #[test]
    fn an_in_place_rewrite_replaces_the_bound_without_a_temp_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("buffer.seq");
        write(&p, 2049).expect("write");
        let len = fs::metadata(&p).expect("meta").len();
        overwrite(&p, 99_999).expect("overwrite");
        assert_eq!(read(&p).expect("read"), Some(99_999));
        assert_eq!(fs::metadata(&p).expect("meta").len(), len, "same size");
    }

    #[test]
    fn a_garbage_side_file_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("buffer.seq");
        fs::write(&p, b"\xff\x00garbage").expect("write");
        assert!(read(&p).is_err());
    }
}
