//! The lock of an atlas output directory: `DIR/.lock`, held (an exclusive
//! advisory `flock`) by `atlas run` for its whole run and by `atlas report`
//! while it merges. Two runs into one directory never write at once (the second
//! waits, then skips what the first finished), and a report never rewrites
//! `results.jsonl` while a run may be appending to it. The lock ends with the
//! process, so a killed run leaves no stale lock behind. (On systems without
//! `flock` the lock is a no-op.)

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A held lock; released on drop (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// The lock file of `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

fn open(dir: &Path) -> Result<File> {
    let path = lock_path(dir);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))
}

/// Takes the lock of `dir` if it is free (`None` when another process holds it).
pub fn try_lock(dir: &Path) -> Result<Option<DirLock>> {
    let file = open(dir)?;
    if flock(&file, false)? {
        Ok(Some(DirLock { _file: file }))
    } else {
        Ok(None)
    }
}

/// Takes the lock of `dir`, waiting for the process that holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let file = open(dir)?;
    flock(&file, true)?;
    Ok(DirLock { _file: file })
}

#[cfg(unix)]
fn flock(file: &File, wait: bool) -> Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a file descriptor this process owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(Error::io("atlas lock", err)),
        }
    }
}

#[cfg(not(unix))]
fn flock(_file: &File, _wait: bool) -> Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_not_free_until_dropped() {
        let dir = std::env::temp_dir().join(format!("fc-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = try_lock(&dir).unwrap().expect("free at first");
        // flock locks belong to the open file description: a second open conflicts
        assert!(try_lock(&dir).unwrap().is_none());
        drop(held);
        assert!(try_lock(&dir).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
