//! `.pylog.shm`: the partition's shared-memory coordination page (Linux only: futex(2)).
//!
//! Every process (native or reference engine) that opens a partition maps this one page,
//! `MAP_SHARED`. Like SQLite's WAL-index it holds only *derived* state: the segment files stay the
//! only source of truth, and every field can be rebuilt from them. The first opener rebuilds it
//! (under the writer lock, around recovery); a writer that finds it inconsistent repairs it.
//!
//! Layout (native-endian, little-endian on every supported target; fields naturally aligned):
//!
//! | offset | type | field | meaning |
//! |-------:|------|-------|---------|
//! | 0  | u32 | magic        | `SHARED_STATE_MAGIC` once initialised |
//! | 4  | u32 | version      | `SHARED_STATE_VERSION` (a different layout is rebuilt, never read) |
//! | 8  | u32 | generation   | layout generation, a seqlock: odd while a writer changes the segment set |
//! | 12 | u32 | tail_seq     | futex word: odd while a writer publishes the tail, +2 per append |
//! | 16 | u32 | grants       | futex word: +1 by every writer that acquires the writer lock |
//! | 20 | u32 | waiting_hint | 1: some writer may be blocked on the writer lock (fair handoff) |
//! | 24 | u32 | yielding     | 1: a writer that left the lock to a waiter sleeps on `grants` at its next acquire |
//! | 32 | i64 | end_offset   | the log end offset published by the last append |
//! | 40 | i64 | active_base  | base offset of the active segment at that append |
//! | 48 | u64 | active_size  | its size in bytes after that append |
//! | 56 | i64 | recovery_point | the highest end offset a `sync()` fsynced (any process; log.rs) |
//!
//! Protocol (every store to the page is made with the writer lock held, except `waiting_hint`
//! and `yielding`, which are hints only ever costing fairness, never correctness):
//! - a roll (any change of the segment set: roll, recovery, later retention or a compaction swap)
//!   makes `generation` odd, changes the files, then makes it even again. A reader whose cached
//!   generation equals the current even one knows the segment set it holds is the directory's,
//!   without a system call; any other value (odd, changed, or a page that fails the magic check)
//!   sends it to the files (a directory listing compared by inode).
//!   A reader that finds the generation odd waits for it to become even (futex on the word,
//!   woken by `end_change`; at most `GENERATION_WAIT_MAX_MS`) before it lists the directory.
//! - an append writes its batch, then makes `tail_seq` odd, stores the end / active size, makes
//!   `tail_seq` even, and once it has released its locks `FUTEX_WAKE`s every waiter on it. `wait_for` reads `tail_seq` before
//!   looking at the files and sleeps in `FUTEX_WAIT` on that value, so an append that lands after
//!   the look changes the word and the sleep returns at once (no lost wake-up).
//!
//! - a sync, after its fsyncs, raises `recovery_point` to the end it covered (never lowers it);
//!   the first opener (or a writer rebuilding the page) sets it to the recovery point it derived.
//!   why here: `recovery-point-offset-checkpoint` is written only now and then (log.rs), so
//!   this is where processes learn how far another one synced, for the torn-tail-or-corruption
//!   decision (`check_tail`). Losing it (a damaged page, a power loss) only makes that decision
//!   fall back to the checkpoint file, as recovery does.
//!
//! Crash argument: a process killed at any instant leaves at worst (a) `generation` odd: the
//! next writer runs recovery's temp-file steps, re-reads the segment set from the directory and
//! makes it even; readers meanwhile go to the files on every call, after waiting once per odd
//! value for at most `GENERATION_WAIT_MAX_MS` (log.rs remembers a value it waited out); (b) `tail_seq` odd or a stale end:
//! the next writer re-derives the tail from the files (as it always does) and republishes; a
//! waiter sleeping on the old value is woken by that next append, or by its fallback timeout
//! (`wait_for` never sleeps longer than `WAKE_FALLBACK_MS` without looking at the files, which
//! also covers writers that do not speak this protocol). A deleted or damaged page is rebuilt by
//! the next first opener or writer. Nothing here is needed to read the files, so nothing here
//! can lose an acknowledged record.
//!
//! Waiting on many partitions at once (a consumer's `poll` over its assignment): `wait_any`
//! sleeps in `futex_waitv(2)` (Linux 5.16+) on the `tail_seq` words of several pages plus a
//! process-local `WakeWord` (the consumer's "come back now", rung by another thread), each with
//! the value read before the caller looked at the files, so no append (and no ring) is lost
//! between the look and the sleep. At most `WAIT_ANY_MAX_WORDS` words (the kernel's
//! FUTEX_WAITV_MAX): callers with more partitions watch the first ones and bound their sleep by
//! `WAKE_FALLBACK_MS` for the rest. A kernel without `futex_waitv` (ENOSYS) gets a short sleep on
//! the wake word alone (`WAIT_ANY_ENOSYS_SLEEP_MS`), a slow poll rather than a lost wake-up.
//!
//! Thread-safety: the mapping is shared by threads and processes; all accesses are atomics.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use memmap2::MmapRaw;

use crate::error::{IoContext, Result};

pub const SHARED_STATE_FILE: &str = ".pylog.shm";
/// "PLSH" read as a little-endian u32.
pub const SHARED_STATE_MAGIC: u32 = u32::from_le_bytes(*b"PLSH");
/// 2: `recovery_point` added at 56 (a version-1 page is rebuilt, never read).
pub const SHARED_STATE_VERSION: u32 = 2;
/// Bytes of the file (one page; only the first 64 are used).
pub const SHARED_STATE_BYTES: u64 = 4096;
/// Longest sleep of `wait_for` between looks at the files (see the crash argument).
pub const WAKE_FALLBACK_MS: u64 = 500;

const MAGIC: usize = 0;
const VERSION: usize = 4;
const GENERATION: usize = 8;
const TAIL_SEQ: usize = 12;
const GRANTS: usize = 16;
const WAITING_HINT: usize = 20;
const YIELDING: usize = 24;
const END_OFFSET: usize = 32;
const ACTIVE_BASE: usize = 40;
const ACTIVE_SIZE: usize = 48;
const RECOVERY_POINT: usize = 56;

/// Longest a reader waits for an odd layout generation to become even before it lists the
/// directory anyway (the changer died), and the slice of each sleep.
pub const GENERATION_WAIT_MAX_MS: u64 = 200;
const GENERATION_WAIT_SLICE_MS: u64 = 5;

/// Most futex words one `futex_waitv` takes (the kernel's FUTEX_WAITV_MAX).
pub const WAIT_ANY_MAX_WORDS: usize = 128;
/// Longest sleep of `wait_any` on a kernel without `futex_waitv` (then it cannot sleep on the
/// pages, only on the wake word, so it looks again this often).
pub const WAIT_ANY_ENOSYS_SLEEP_MS: u64 = 2;

/// The published tail: what the last append left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    pub end_offset: i64,
    pub active_base: i64,
    pub active_size: u64,
}

/// One process's mapping of `.pylog.shm` (and the open file, whose flock marks waiting writers).
#[derive(Debug)]
pub struct SharedState {
    map: MmapRaw,
    file: File,
}

impl SharedState {
    /// Open (creating, growing to one page) and map the file. Callers hold the writer lock, so
    /// growing never races another opener's `set_len`.
    pub fn open(dir: &Path) -> Result<SharedState> {
        let path = dir.join(SHARED_STATE_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .io_context(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .io_context(|| format!("stat {}", path.display()))?
            .len();
        if len < SHARED_STATE_BYTES {
            file.set_len(SHARED_STATE_BYTES)
                .io_context(|| format!("sizing {}", path.display()))?;
        }
        let map = memmap2::MmapOptions::new()
            .len(SHARED_STATE_BYTES as usize)
            .map_raw(&file)
            .io_context(|| format!("mapping {}", path.display()))?;
        Ok(SharedState { map, file })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= SHARED_STATE_BYTES as usize);
        // SAFETY: the mapping is one page, aligned, alive as long as `self`; every access to it
        // (in any process) is atomic, so shared references to atomics over it are sound.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }

    fn i64_at(&self, offset: usize) -> &AtomicI64 {
        debug_assert!(offset.is_multiple_of(8));
        // SAFETY: as `u32_at`.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicI64) }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8));
        // SAFETY: as `u32_at`.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    /// Magic and version match: the other fields mean what this module says.
    pub fn is_valid(&self) -> bool {
        self.u32_at(MAGIC).load(Ordering::Acquire) == SHARED_STATE_MAGIC
            && self.u32_at(VERSION).load(Ordering::Acquire) == SHARED_STATE_VERSION
    }

    /// The current generation when it is usable for caching (valid page, even = stable).
    pub fn stable_generation(&self) -> Option<u32> {
        if !self.is_valid() {
            return None;
        }
        let g = self.u32_at(GENERATION).load(Ordering::Acquire);
        g.is_multiple_of(2).then_some(g)
    }

    /// The generation word as it is (odd included), if the page is valid.
    pub fn generation(&self) -> Option<u32> {
        self.is_valid()
            .then(|| self.u32_at(GENERATION).load(Ordering::Acquire))
    }

    /// Writer: the page is valid and no dead writer left a change half-done.
    pub fn is_consistent(&self) -> bool {
        self.is_valid()
            && self
                .u32_at(GENERATION)
                .load(Ordering::Acquire)
                .is_multiple_of(2)
            && self
                .u32_at(TAIL_SEQ)
                .load(Ordering::Acquire)
                .is_multiple_of(2)
    }

    /// Writer lock held: (re)initialise the page, with a generation no live reader has cached
    /// (the old word moved on to the next even value past it; left odd until `end_change`).
    pub fn begin_rebuild(&self) {
        let g = self.u32_at(GENERATION).load(Ordering::Acquire);
        self.u32_at(GENERATION)
            .store((g | 1).wrapping_add(2), Ordering::SeqCst);
        let t = self.u32_at(TAIL_SEQ).load(Ordering::Acquire);
        self.u32_at(TAIL_SEQ).store(t | 1, Ordering::SeqCst);
        self.u32_at(VERSION)
            .store(SHARED_STATE_VERSION, Ordering::SeqCst);
        self.u32_at(MAGIC)
            .store(SHARED_STATE_MAGIC, Ordering::SeqCst);
    }

    /// Writer lock held: the segment set is about to change (generation made odd).
    pub fn begin_change(&self) {
        let g = self.u32_at(GENERATION).load(Ordering::Acquire);
        if g.is_multiple_of(2) {
            self.u32_at(GENERATION)
                .store(g.wrapping_add(1), Ordering::SeqCst);
        }
    }

    /// Writer lock held: the change is complete (generation made even again); wakes the
    /// readers that wait for it (`wait_while_changing`).
    pub fn end_change(&self) {
        let g = self.u32_at(GENERATION).load(Ordering::Acquire);
        if g % 2 == 1 {
            self.u32_at(GENERATION)
                .store(g.wrapping_add(1), Ordering::SeqCst);
            futex_wake(self.u32_at(GENERATION), i32::MAX);
        }
    }

    /// Reader: while the page is valid and the generation odd (another process is changing the
    /// segment set: a compaction swap briefly has neither the old nor the new segment under its
    /// final name), sleep on the generation word, at most `max` in all. True when it is even (or
    /// the page unusable) at the end; false when it stayed odd (the changer died: the caller
    /// lists anyway). why a futex with short slices: `end_change` wakes it at once, a changer
    /// that does not wake (the reference engine) is seen within a slice.
    pub fn wait_while_changing(&self, max: Duration) -> bool {
        let deadline = std::time::Instant::now() + max;
        loop {
            if !self.is_valid() {
                return true;
            }
            let g = self.u32_at(GENERATION).load(Ordering::Acquire);
            if g.is_multiple_of(2) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(GENERATION_WAIT_SLICE_MS));
            futex_wait(self.u32_at(GENERATION), g, slice);
        }
    }

    /// The highest end offset some process's `sync()` fsynced (0 when the page is not valid:
    /// then the checkpoint file is all there is).
    pub fn recovery_point(&self) -> i64 {
        if !self.is_valid() {
            return 0;
        }
        self.i64_at(RECOVERY_POINT).load(Ordering::Acquire)
    }

    /// Writer lock held, after a sync's fsyncs: raise the shared recovery point to `offset`.
    pub fn advance_recovery_point(&self, offset: i64) {
        self.i64_at(RECOVERY_POINT)
            .fetch_max(offset, Ordering::SeqCst);
    }

    /// Writer lock held, rebuilding the page: the recovery point derived from the files.
    pub fn set_recovery_point(&self, offset: i64) {
        self.i64_at(RECOVERY_POINT).store(offset, Ordering::SeqCst);
    }

    /// The futex word of appends (read it before looking at the files, then `wait_tail`).
    pub fn tail_seq(&self) -> u32 {
        self.u32_at(TAIL_SEQ).load(Ordering::Acquire)
    }

    /// The published tail, if the page is valid and not being written.
    pub fn tail(&self) -> Option<Tail> {
        if !self.is_valid() {
            return None;
        }
        let seq = self.u32_at(TAIL_SEQ).load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        let tail = Tail {
            end_offset: self.i64_at(END_OFFSET).load(Ordering::Acquire),
            active_base: self.i64_at(ACTIVE_BASE).load(Ordering::Acquire),
            active_size: self.u64_at(ACTIVE_SIZE).load(Ordering::Acquire),
        };
        (self.u32_at(TAIL_SEQ).load(Ordering::Acquire) == seq).then_some(tail)
    }

    /// Writer lock held: publish the tail (the caller wakes the waiters once it has released
    /// its locks: `wake_waiters`).
    pub fn publish(&self, tail: Tail) {
        self.publish_with(tail, || {});
    }

    /// `publish`, calling `midway` while `tail_seq` is odd (the crash tests stop a process there).
    pub fn publish_with(&self, tail: Tail, midway: impl FnOnce()) {
        let seq = self.u32_at(TAIL_SEQ).load(Ordering::Acquire) | 1;
        self.u32_at(TAIL_SEQ).store(seq, Ordering::SeqCst);
        midway();
        self.i64_at(END_OFFSET)
            .store(tail.end_offset, Ordering::Release);
        self.i64_at(ACTIVE_BASE)
            .store(tail.active_base, Ordering::Release);
        self.u64_at(ACTIVE_SIZE)
            .store(tail.active_size, Ordering::Release);
        self.u32_at(TAIL_SEQ)
            .store(seq.wrapping_add(1), Ordering::SeqCst);
    }

    /// Wake every `wait_for` of this page, in any process (after an append, once the writer
    /// released its locks, so the woken do not run into them; and a closing log's own).
    pub fn wake_waiters(&self) {
        futex_wake(self.u32_at(TAIL_SEQ), i32::MAX);
    }

    /// The futex word of appends itself, for `wait_any` over several pages.
    pub fn tail_word(&self) -> &AtomicU32 {
        self.u32_at(TAIL_SEQ)
    }

    /// Sleep while `tail_seq == seen`, at most `timeout`.
    pub fn wait_tail(&self, seen: u32, timeout: Duration) {
        futex_wait(self.u32_at(TAIL_SEQ), seen, timeout);
    }

    // ---- fair handoff of the writer lock (lock.rs) --------------------------------------

    pub fn grants(&self) -> u32 {
        self.u32_at(GRANTS).load(Ordering::Acquire)
    }

    /// Writer lock just acquired: count the grant and wake a releaser that yields to us.
    pub fn note_grant(&self) {
        let g = self.u32_at(GRANTS).load(Ordering::Acquire);
        self.u32_at(GRANTS)
            .store(g.wrapping_add(1), Ordering::SeqCst);
        if self.u32_at(YIELDING).swap(0, Ordering::SeqCst) != 0 {
            futex_wake(self.u32_at(GRANTS), i32::MAX);
        }
    }

    pub fn set_waiting_hint(&self, on: bool) {
        self.u32_at(WAITING_HINT)
            .store(u32::from(on), Ordering::SeqCst);
    }

    /// Clear the hint and say whether it was set.
    pub fn take_waiting_hint(&self) -> bool {
        self.u32_at(WAITING_HINT).swap(0, Ordering::SeqCst) != 0
    }

    /// Sleep while `grants == seen` (another writer has not taken the lock yet), at most `timeout`.
    pub fn wait_for_grant(&self, seen: u32, timeout: Duration) {
        self.u32_at(YIELDING).store(1, Ordering::SeqCst);
        futex_wait(self.u32_at(GRANTS), seen, timeout);
    }
}

/// A process-local futex word: `ring` makes a `wait_any` that watches it (with the value read
/// before the ring) return at once. Thread-safe; `ring` takes no lock (callable from any thread).
#[derive(Debug, Default)]
pub struct WakeWord {
    word: AtomicU32,
}

impl WakeWord {
    pub fn new() -> WakeWord {
        WakeWord::default()
    }

    /// The current value (read it before looking, then pass it to `wait_any`).
    pub fn seq(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    /// Change the word and wake every waiter on it.
    pub fn ring(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the word lives as long as `self`; FUTEX_WAKE does not touch user memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }
}

/// `struct futex_waitv` of include/uapi/linux/futex.h.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;

/// Sleep until one of `pages`' `tail_seq` differs from its `seen` value (an append), `wake`
/// differs from `wake_seen` (a ring), or `timeout`; at most `WAIT_ANY_MAX_WORDS` words are
/// watched (`wake` first, then the first pages). Returns on a wake, a value change, a signal or
/// the timeout; callers re-check their condition.
pub fn wait_any(pages: &[(&SharedState, u32)], wake: &WakeWord, wake_seen: u32, timeout: Duration) {
    let mut waiters = Vec::with_capacity(pages.len().min(WAIT_ANY_MAX_WORDS - 1) + 1);
    waiters.push(FutexWaitv {
        val: u64::from(wake_seen),
        uaddr: wake.word.as_ptr() as u64,
        flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
        reserved: 0,
    });
    for (page, seen) in pages.iter().take(WAIT_ANY_MAX_WORDS - 1) {
        waiters.push(FutexWaitv {
            val: u64::from(*seen),
            uaddr: page.tail_word().as_ptr() as u64,
            // shared: the word is in a file mapping other processes wake with FUTEX_WAKE
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        });
    }
    // why absolute: futex_waitv takes a deadline on the given clock, not a duration
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let nanos = (now.tv_nsec as u64).saturating_add(u64::from(timeout.subsec_nanos()));
    let deadline = libc::timespec {
        tv_sec: now
            .tv_sec
            .saturating_add(timeout.as_secs().min(i32::MAX as u64) as libc::time_t)
            .saturating_add((nanos / 1_000_000_000) as libc::time_t),
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `waiters` points at `waiters.len()` initialised entries whose addresses are live
    // atomics (the pages are borrowed for the call, the wake word too); the kernel only reads
    // them and the timespec.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            &deadline as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        let sleep = timeout.min(Duration::from_millis(WAIT_ANY_ENOSYS_SLEEP_MS));
        futex_wait_flags(&wake.word, wake_seen, sleep, libc::FUTEX_PRIVATE_FLAG);
    }
}

/// `FUTEX_WAIT` (shared, not `_PRIVATE`: the word is in a file mapping other processes share).
/// Returns on a wake, a value change, a signal or the timeout; callers re-check their condition.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    futex_wait_flags(word, expected, timeout, 0);
}

/// `FUTEX_WAIT` with extra `flags` (`FUTEX_PRIVATE_FLAG` for a word of this process only).
fn futex_wait_flags(word: &AtomicU32, expected: u32, timeout: Duration, flags: libc::c_int) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live atomic (in a mapping or this process's memory); the kernel only
    // reads it and the timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | flags,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: `word` points into a live mapping; FUTEX_WAKE does not touch user memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_publish_and_generations() {
        let dir = std::env::temp_dir().join(format!("pylog-shm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = SharedState::open(&dir).unwrap();
        let b = SharedState::open(&dir).unwrap();
        assert!(!a.is_valid());
        a.begin_rebuild();
        assert_eq!(b.stable_generation(), None, "odd while rebuilding");
        a.publish(Tail {
            end_offset: 5,
            active_base: 0,
            active_size: 100,
        });
        a.end_change();
        let g = b.stable_generation().expect("stable");
        assert!(b.is_consistent());
        assert_eq!(b.tail().unwrap().end_offset, 5);
        b.begin_change();
        assert_eq!(a.stable_generation(), None);
        assert!(
            !a.wait_while_changing(Duration::from_millis(10)),
            "stays odd"
        );
        let waiter = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let c = SharedState::open(&dir).unwrap();
                c.wait_while_changing(Duration::from_secs(30))
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        b.end_change();
        assert!(waiter.join().unwrap(), "woken by end_change");
        assert_eq!(a.stable_generation(), Some(g.wrapping_add(2)));
        let seen = a.tail_seq();
        a.wait_tail(seen, Duration::from_millis(1)); // times out: nothing changed
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wait_any_wakes_on_an_append_or_a_ring_and_times_out_otherwise() {
        use std::sync::Arc;
        use std::time::Instant;
        let dirs: Vec<_> = (0..3)
            .map(|i| {
                let d =
                    std::env::temp_dir().join(format!("pylog-waitany-{}-{i}", std::process::id()));
                std::fs::create_dir_all(&d).unwrap();
                d
            })
            .collect();
        let pages: Vec<Arc<SharedState>> = dirs
            .iter()
            .map(|d| Arc::new(SharedState::open(d).unwrap()))
            .collect();
        for p in &pages {
            p.begin_rebuild();
            p.publish(Tail {
                end_offset: 0,
                active_base: 0,
                active_size: 0,
            });
            p.end_change();
        }
        let wake = Arc::new(WakeWord::new());
        let seen = |pages: &[Arc<SharedState>]| -> Vec<u32> {
            pages.iter().map(|p| p.tail_seq()).collect()
        };
        // nothing happens: the timeout
        let s = seen(&pages);
        let watched: Vec<_> = pages.iter().zip(&s).map(|(p, v)| (&**p, *v)).collect();
        let t = Instant::now();
        wait_any(&watched, &wake, wake.seq(), Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(25));
        // an append to the last page, from another thread, wakes the sleeper
        let s = seen(&pages);
        let writer = {
            let page = pages[2].clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                page.publish(Tail {
                    end_offset: 1,
                    active_base: 0,
                    active_size: 10,
                });
                page.wake_waiters();
            })
        };
        let watched: Vec<_> = pages.iter().zip(&s).map(|(p, v)| (&**p, *v)).collect();
        let t = Instant::now();
        wait_any(&watched, &wake, wake.seq(), Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_ne!(pages[2].tail_seq(), s[2]);
        writer.join().unwrap();
        // a ring wakes it
        let s = seen(&pages);
        let ringer = {
            let wake = wake.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                wake.ring();
            })
        };
        let watched: Vec<_> = pages.iter().zip(&s).map(|(p, v)| (&**p, *v)).collect();
        let t = Instant::now();
        wait_any(&watched, &wake, wake.seq(), Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        ringer.join().unwrap();
        // a stale seen value returns at once
        let stale = wake.seq().wrapping_sub(1);
        let t = Instant::now();
        wait_any(&watched, &wake, stale, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        for d in dirs {
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
}
