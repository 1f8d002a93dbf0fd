//! Advisory `flock(2)` locks shared by every process (native or reference engine) that opens a
//! partition directory. `std::fs::File::{lock, lock_shared, try_lock, unlock}` are flock(2) on
//! Linux, so they interoperate with Python's `fcntl.flock`.
//!
//! - `.pylog.lock`: the **writer lock**, held exclusively for one append / roll / sync / open /
//!   close. Readers never take it.
//! - `.pylog.open`: the **open registration**. Every open log holds a shared lock on it. Under the
//!   writer lock, a successful non-blocking exclusive lock means "no other process has this
//!   directory open": the first opener (who recovers) or the last closer (who writes the marker).
//!
//! why: flock locks belong to the open file description, so two `PartitionLog`s on one directory
//! in one process contend exactly like two processes (that is how the tests simulate processes).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub const WRITER_LOCK_FILE: &str = ".pylog.lock";
pub const OPEN_LOCK_FILE: &str = ".pylog.open";

/// An open lock file (created empty when missing).
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    pub fn open(dir: &Path, name: &str) -> Result<LockFile> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .io_context(|| format!("opening lock file {}", path.display()))?;
        Ok(LockFile { file, path })
    }

    /// Block until the exclusive lock is held; released when the guard drops.
    pub fn exclusive(&self) -> Result<LockGuard<'_>> {
        self.file
            .lock()
            .io_context(|| format!("locking {}", self.path.display()))?;
        Ok(LockGuard { lock: self })
    }

    /// `LOCK_EX | LOCK_NB`: true when the exclusive lock is now held (converting a shared lock
    /// this file holds). why: Linux drops a converted lock when the conversion fails, so only use
    /// this where losing the shared lock does not matter (first opener / last closer).
    pub fn try_exclusive(&self) -> Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => {
                Err(e).io_context(|| format!("locking {}", self.path.display()))
            }
        }
    }

    /// `LOCK_SH` (converts an exclusive lock held through this file).
    pub fn shared(&self) -> Result<()> {
        self.file
            .lock_shared()
            .io_context(|| format!("locking {} shared", self.path.display()))
    }

    pub fn unlock(&self) -> Result<()> {
        self.file
            .unlock()
            .io_context(|| format!("unlocking {}", self.path.display()))
    }
}

/// Holds an exclusive lock until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a LockFile,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // why: an unlock failure cannot be reported from drop; closing the file releases it anyway.
        let _ = self.lock.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_registration_detects_first_and_last() {
        let dir = std::env::temp_dir().join(format!("pylog-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = LockFile::open(&dir, OPEN_LOCK_FILE).unwrap();
        let b = LockFile::open(&dir, OPEN_LOCK_FILE).unwrap();
        assert!(a.try_exclusive().unwrap(), "a is the first opener");
        a.shared().unwrap();
        assert!(!b.try_exclusive().unwrap(), "a still holds it shared");
        b.shared().unwrap();
        assert!(!a.try_exclusive().unwrap(), "b holds it: a is not the last");
        a.unlock().unwrap();
        assert!(b.try_exclusive().unwrap(), "b is the last");
        b.unlock().unwrap();
        let w1 = LockFile::open(&dir, WRITER_LOCK_FILE).unwrap();
        let w2 = LockFile::open(&dir, WRITER_LOCK_FILE).unwrap();
        {
            let _g = w1.exclusive().unwrap();
            assert!(!w2.try_exclusive().unwrap());
        }
        assert!(w2.try_exclusive().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
