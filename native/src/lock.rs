//! Advisory `flock(2)` locks shared by every process (native or reference engine) that opens a
//! partition directory. `std::fs::File::{lock, lock_shared, try_lock, unlock}` are flock(2) on
//! Linux, so they interoperate with Python's `fcntl.flock`.
//!
//! - `.pylog.lock`: the **writer lock**, held exclusively for one append / roll / sync / open /
//!   close. Readers never take it. flock is what detects a dead writer (the kernel drops its
//!   lock with its last descriptor); `WriterLock` layers a fair handoff over it, because flock
//!   wakes its waiters without order and a writer in a tight loop re-takes the lock before the
//!   woken waiter runs (one writer could starve another for seconds). The handoff, all in
//!   `.pylog.shm` (shared_state.rs) plus a flock on that file:
//!   1. an acquirer first tries `LOCK_EX | LOCK_NB`; if that fails it registers as waiting (a
//!      *shared* flock on `.pylog.shm`, dropped by the kernel if it dies, and the
//!      `waiting_hint` word), then blocks in `LOCK_EX`; whoever gets the lock bumps `grants`;
//!   2. a releaser that finds the hint set tests for registered waiters (`LOCK_EX | LOCK_NB` on
//!      `.pylog.shm` fails while one holds it shared); if there is one, its next acquire first
//!      sleeps on `grants` (futex) until another writer took the lock, at most `YIELD_MAX`.
//!
//!   The hint is cleared before the test and set again when waiters remain, so a waiter that
//!   registers concurrently is at worst missed for one round (fairness only, never safety: the
//!   flock alone provides mutual exclusion, and a dead waiter's registration vanishes with it).
//! - `.pylog.open`: the **open registration**. Every open log holds a shared lock on it. Under the
//!   writer lock, a successful non-blocking exclusive lock means "no other process has this
//!   directory open": the first opener (who recovers) or the last closer (who writes the marker).
//!
//! - `.pylog.cleaner`: the **cleaner lock**, held exclusively for a whole `compact()` /
//!   `apply_retention()` call and for `delete_before`'s segment deletion: one process at a time
//!   changes the sealed segments (a compaction swap, retention). Each acquisition opens the file
//!   afresh (its own open file description), so two threads of one process contend like two
//!   processes. Lock order: cleaner lock → writer lock (a swap or a deletion takes the writer
//!   lock while holding the cleaner lock; the reverse is only ever tried with `LOCK_NB`).
//!
//! why: flock locks belong to the open file description, so two `PartitionLog`s on one directory
//! in one process contend exactly like two processes (that is how the tests simulate processes).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};
use crate::shared_state::SharedState;

/// Longest a releasing writer leaves the lock to a registered waiter before taking it again
/// (a waiter that is slow to be scheduled, or dead, must not stall writers).
pub const YIELD_MAX: Duration = Duration::from_millis(5);

pub const WRITER_LOCK_FILE: &str = ".pylog.lock";
pub const OPEN_LOCK_FILE: &str = ".pylog.open";
pub const CLEANER_LOCK_FILE: &str = ".pylog.cleaner";

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

/// The cleaner lock of a directory (module header), held until dropped.
#[derive(Debug)]
pub struct CleanerLockGuard {
    file: File,
}

impl CleanerLockGuard {
    /// Take the cleaner lock of `dir`: blocking when `wait`, else `LOCK_NB` (`None` = another
    /// holder, in this process or another).
    pub fn acquire(dir: &Path, wait: bool) -> Result<Option<CleanerLockGuard>> {
        let lock = LockFile::open(dir, CLEANER_LOCK_FILE)?;
        if wait {
            lock.file
                .lock()
                .io_context(|| format!("locking {}", lock.path.display()))?;
        } else if !lock.try_exclusive()? {
            return Ok(None);
        }
        Ok(Some(CleanerLockGuard { file: lock.file }))
    }
}

impl Drop for CleanerLockGuard {
    fn drop(&mut self) {
        // why ignored: closing the file (right after) releases the lock anyway.
        let _ = self.file.unlock();
    }
}

/// The writer lock with the fair handoff described in the module header. One per log object;
/// callers serialise their own threads (log.rs holds a mutex around it).
#[derive(Debug)]
pub struct WriterLock {
    file: LockFile,
    shared: Arc<SharedState>,
    /// `grants` seen at a release that left the lock to a waiter (`NO_YIELD`: none).
    yield_at: AtomicU64,
    /// Longest `acquire` so far (yielding to a waiter included), in nanoseconds: the fairness
    /// figure, measured here because a caller's timing also holds its own preemptions.
    longest_wait_ns: AtomicU64,
}

const NO_YIELD: u64 = u64::MAX;

impl WriterLock {
    pub fn new(file: LockFile, shared: Arc<SharedState>) -> WriterLock {
        WriterLock {
            file,
            shared,
            yield_at: AtomicU64::new(NO_YIELD),
            longest_wait_ns: AtomicU64::new(0),
        }
    }

    /// Block until the writer lock is held (after yielding to a waiter if the last release
    /// found one); released when the guard drops.
    pub fn acquire(&self) -> Result<WriterGuard<'_>> {
        let started = Instant::now();
        let seen = self.yield_at.swap(NO_YIELD, Ordering::AcqRel);
        if seen != NO_YIELD {
            let seen = seen as u32;
            let deadline = Instant::now() + YIELD_MAX;
            while self.shared.grants() == seen {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                self.shared.wait_for_grant(seen, deadline - now);
            }
        }
        if !self.file.try_exclusive()? {
            let shm = self.shared.file();
            shm.lock_shared()
                .io_context(|| "registering as a waiting writer".to_owned())?;
            self.shared.set_waiting_hint(true);
            let locked = self.file.file.lock();
            let _ = shm.unlock();
            locked.io_context(|| format!("locking {}", self.file.path.display()))?;
        }
        self.shared.note_grant();
        let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.longest_wait_ns.fetch_max(waited, Ordering::Relaxed);
        Ok(WriterGuard { lock: self })
    }

    /// The longest `acquire` of this object since the last call, in nanoseconds (a diagnostic).
    pub fn take_longest_wait_ns(&self) -> u64 {
        self.longest_wait_ns.swap(0, Ordering::Relaxed)
    }

    fn release(&self) {
        if self.shared.take_waiting_hint() {
            match self.shared.file().try_lock() {
                Ok(()) => {
                    let _ = self.shared.file().unlock();
                }
                Err(TryLockError::WouldBlock) => {
                    self.shared.set_waiting_hint(true);
                    self.yield_at
                        .store(u64::from(self.shared.grants()), Ordering::Release);
                }
                Err(TryLockError::Error(_)) => {}
            }
        }
        // why ignored: an unlock failure cannot be reported from drop; closing the file
        // releases the lock anyway.
        let _ = self.file.unlock();
    }
}

/// Holds the writer lock until dropped.
#[derive(Debug)]
pub struct WriterGuard<'a> {
    lock: &'a WriterLock,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
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
        let c1 = CleanerLockGuard::acquire(&dir, false).unwrap();
        assert!(c1.is_some());
        assert!(CleanerLockGuard::acquire(&dir, false).unwrap().is_none());
        drop(c1);
        assert!(CleanerLockGuard::acquire(&dir, true).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
