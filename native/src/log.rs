//! The partition log: one topic-partition directory of segments (docs/partition-log.md).
//!
//! State lives in `Inner` behind one mutex; the segments are sorted by base offset and the last
//! one is active. Other processes (and other log objects in this one) append, roll and repair the
//! same files, so an operation first catches up with them. What it looks at is decided by the
//! shared coordination page `.pylog.shm` (shared_state.rs; Linux only):
//! - the **layout generation**: when it equals the even value this object cached, the segment
//!   set it holds is the directory's (no system call). Otherwise (changed, odd = a change in
//!   progress or a writer that died mid-change, or a page that fails its magic check) the
//!   segment set is refreshed from a directory listing, reusing segments whose `.log` still has
//!   the same inode and reopening the others: a replaced middle segment (a compaction swap) is
//!   noticed before the next read;
//! - the **tail**: the active `.log`'s length (`fstat`) and a CRC-checked scan of complete
//!   batches past the known size. A random `read` below the known end skips this too: bytes
//!   appended since cannot change what it returns, and no process ever cuts a batch that another
//!   could have accepted (complete and CRC-valid).
//!
//! Writers hold the writer lock (lock.rs: flock plus a fair handoff) and repair what a dead
//! writer left: a page left inconsistent is rebuilt from the files, a torn tail is truncated
//! (only ever in the last segment, after checking nobody rolled past it: a sealed segment is
//! never cut), missing index entries are appended. A tail is torn only at or above the recovery
//! point: bytes that do not frame below it were synced whole, so they are corruption
//! (`CorruptBatch`, nothing cut; see `check_tail`). Readers never take the writer lock and just
//! ignore a torn tail.
//!
//! The **log start offset** is `max(first segment base, log-start-offset-checkpoint)` (the
//! checkpoint clamped to the end), re-read at every refresh of the segment set; every reader
//! check uses it (`check_offset`, `offset_for_timestamp`). Moving it (`delete_before`) and
//! deleting or swapping segments (retention.rs, the cleaner's `replace_segments`) are layout
//! changes (`change_layout`): writer lock held, generation odd, so every process re-lists before
//! its next read. A reader that finds the generation odd waits for it to become even (bounded,
//! `GENERATION_WAIT_MAX_MS`: a swap briefly has neither the old nor the new segment under its
//! final name), then lists; a writer (or a later opener) that finds it left odd by a dead
//! process first runs recovery's temp-file steps (`recovery::remove_temp_files`), then re-lists.
//! The cleaner's interface (`cleaner_view`, `cleaner_lock`, `replace_segments`, the cleaner
//! checkpoint, `apply_retention_locked`) is here; the pass itself is cleaner.rs.
//!
//! Lock order: the cleaner lock (lock.rs; compaction, retention) → `writer` (this object's
//! writing threads) → the writer lock (other processes) → `inner`. `inner` is never held while waiting for the writer lock, so reads in this process
//! never wait for another process's writer; a reader waits at most for one batch's `pwrite`.
//!
//! Appends: one encode into a reusable buffer (before any lock but `writer`), one positional
//! `write` at the tail, O(1) index work, then the tail is published on the page and waiters are
//! woken (futex); the flush policy (`flush.messages`, `flush.ms`) may then `sync()` (the active
//! `.log` and the segments sealed since the last sync; the recovery point goes to the page, the
//! checkpoint file only every `RECOVERY_POINT_CHECKPOINT_INTERVAL_MS` and at the last close). Reads return
//! whole batches: a range of an `Arc<Mmap>` for a sealed segment, a `pread` copy for the active
//! one. `wait_for` sleeps on the page's futex word (no polling), looking at the files at least
//! every `WAKE_FALLBACK_MS` (writers that do not speak the protocol, a writer that died between
//! its write and its wake-up).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::columns::ColumnsBuilder;
use crate::compression::Codec;
use crate::config::LogConfig;
use crate::error::{CorruptKind, Error, IoContext, Result};
use crate::lock::{CleanerLockGuard, LockFile, WriterLock, OPEN_LOCK_FILE, WRITER_LOCK_FILE};
use crate::record::{RecordSpec, RecordView};
use crate::recovery;
use crate::retention::{self, RetentionStats};
use crate::segment::{
    ScanEnd, Segment, SegmentBytes, LOG_SUFFIX, LOOKUP_CHUNK_BYTES, SCAN_CHUNK_BYTES,
};
use crate::segment::{INDEX_SUFFIX, TIME_INDEX_SUFFIX};
use crate::segments::{file_name, Segments, CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX};
use crate::shared_state::{SharedState, Tail, GENERATION_WAIT_MAX_MS, WAKE_FALLBACK_MS};
use crate::validator;

/// Longest `wait_for` timeout honoured (ten years).
pub const MAX_WAIT_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// Smallest `pread` window of a `read` in the active segment (covers an index gap of
/// `index.interval.bytes` plus the batch in the common case).
const READ_WINDOW_MIN_BYTES: usize = 4 << 10;
/// Room past the index gap for the batch itself.
const READ_WINDOW_SLACK_BYTES: usize = 2 << 10;
/// Bytes of batches decoded per planning step of `read_columns`.
const COLUMNS_CHUNK_BYTES: u64 = 4 << 20;
/// Least time between two writes of `recovery-point-offset-checkpoint` by a `sync()` (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default, LogManager's checkpoint timer): the
/// checkpoint only bounds how much recovery rescans, so a sync need not write it (see
/// `sync_locked`). The last closer always writes it.
pub const RECOVERY_POINT_CHECKPOINT_INTERVAL_MS: u64 = 60_000;

/// Test hook of the crash tests (tests/test_coordination.py): with `PYLOG_TEST_PAUSE=POINT:N`
/// in the environment at open, the N-th time this log reaches `POINT` (`locked`: writer lock
/// held before the write; `written`: batch written, not yet published; `publishing`: the page's
/// tail half-updated; `rolling`: layout generation odd) it prints `pause POINT` on stdout and
/// stops its process with SIGSTOP, so a test can look at the others and then SIGKILL it there.
#[derive(Debug)]
struct PauseHook {
    point: String,
    remaining: std::sync::atomic::AtomicU64,
}

impl PauseHook {
    fn from_env() -> Option<PauseHook> {
        let spec = std::env::var("PYLOG_TEST_PAUSE").ok()?;
        let (point, n) = spec.split_once(':').unwrap_or((&spec, "1"));
        Some(PauseHook {
            point: point.to_owned(),
            remaining: std::sync::atomic::AtomicU64::new(n.parse().unwrap_or(1)),
        })
    }

    fn reached(hook: &Option<PauseHook>, point: &str) {
        let Some(h) = hook else { return };
        if h.point != point || h.remaining.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let line = format!("pause {point}\n");
        // SAFETY: plain write(2) of a live buffer to stdout, then raise(3).
        unsafe {
            libc::write(1, line.as_ptr().cast(), line.len());
            libc::raise(libc::SIGSTOP);
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whole batches from one segment, with where they came from (for error positions).
#[derive(Debug, Clone)]
pub struct Piece {
    pub bytes: SegmentBytes,
    pub path: PathBuf,
    pub file_position: u64,
}

/// A planned chunk of `records()`: the batches to decode and the offset to continue from.
#[derive(Debug, Clone)]
pub struct RecordsChunk {
    pub pieces: Vec<Piece>,
    pub start: i64,
    pub end: i64,
    pub next: i64,
}

impl RecordsChunk {
    /// Decode (CRC-checked) and visit the records with offset in `[start, end)`.
    pub fn decode<F>(&self, scratch: &mut Vec<u8>, mut visit: F) -> Result<()>
    where
        F: FnMut(RecordView<'_>) -> Result<()>,
    {
        let (start, end) = (self.start, self.end);
        for piece in &self.pieces {
            batch::decode_batches(piece.bytes.as_slice(), scratch, |rv| {
                if rv.offset >= start && rv.offset < end {
                    visit(rv)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| e.shifted(piece.file_position).in_file(&piece.path))?;
        }
        Ok(())
    }
}

struct Inner {
    segments: Segments,
    /// `log-start-offset-checkpoint` as last read (0 when absent): the log start is
    /// `max(first base, this clamped to the end)` (`start_of`).
    log_start_checkpoint: i64,
    /// An odd layout generation this reader already waited for in vain (its changer died).
    waited_out_generation: Option<u32>,
    /// The layout generation the segment set was last refreshed at (None: refresh next time).
    known_generation: Option<u32>,
    open_lock: Option<LockFile>,
    /// The end offset this object's last sync covered (every byte below it fsynced), or the
    /// one open derived; others' syncs are on the page (`SharedState::recovery_point`).
    recovery_point: i64,
    last_sync: Instant,
    /// When this object last wrote `recovery-point-offset-checkpoint` (or opened).
    last_checkpoint: Instant,
    /// Files were created, deleted or renamed since the last sync.
    dir_dirty: bool,
    scratch: Vec<u8>,
}

/// Buffers of this object's writing threads (guarded by `PartitionLog::writer`).
#[derive(Default)]
struct WriterScratch {
    encode_buf: Vec<u8>,
    scratch: Vec<u8>,
}

pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// `.pylog.shm`, mapped (shared with `writer_lock`).
    shared: Arc<SharedState>,
    /// `.pylog.lock` with the fair handoff; outside the mutexes so its guard borrows no state.
    writer_lock: WriterLock,
    /// Serialises this object's writers (flock is per open file: two threads of one object
    /// would both "hold" it) and owns their buffers; taken before the writer lock.
    writer: Mutex<WriterScratch>,
    inner: Mutex<Inner>,
    /// Set once by `close`. why outside the mutexes: `closed` and the Python boundary's checks
    /// must not wait behind an append that waits for another process's lock.
    closed: AtomicBool,
    pause: Option<PauseHook>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        // why read_dir: it fails with the OS's own ENOTDIR (errno and all) for a file.
        Ok(_) => match fs::read_dir(dir) {
            Err(e) => {
                Err(e).io_context(|| format!("opening partition directory {}", dir.display()))
            }
            Ok(_) => Err(std::io::Error::from(ErrorKind::NotADirectory))
                .io_context(|| format!("opening partition directory {}", dir.display())),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => fs::create_dir_all(dir)
            .io_context(|| format!("creating partition directory {}", dir.display())),
        Err(e) => Err(e).io_context(|| format!("opening partition directory {}", dir.display())),
    }
}

/// `access(dir, W_OK | X_OK)` as the reference engine checks it (std has no access(2)): with
/// the real uid/gid and groups of this process from `/proc/self/status`, root always may, else
/// the owner, group or other permission bits decide. Without `/proc` the check is skipped (the
/// first file creation fails with the same PermissionError then).
fn check_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (Some(&uid), Some(&gid)) = (field("Uid:").first(), field("Gid:").first()) else {
        return Ok(());
    };
    if uid == 0 {
        return Ok(());
    }
    let meta = fs::metadata(dir).io_context(|| format!("stat {}", dir.display()))?;
    let mode = meta.permissions().mode();
    let bits = if meta.uid() == uid {
        mode >> 6
    } else if meta.gid() == gid || field("Groups:").contains(&meta.gid()) {
        mode >> 3
    } else {
        mode
    } & 0o3;
    if bits == 0o3 {
        return Ok(());
    }
    Err(std::io::Error::from_raw_os_error(EACCES))
        .io_context(|| format!("opening partition directory {}", dir.display()))
}

/// Linux's EACCES (std::io has no constant for it).
const EACCES: i32 = 13;

/// Data below the recovery point is never cut (docs/partition-log.md, "Durability").
///
/// `end` is how a scan of the active segment stopped (at `seg.size`). Bytes there that do not
/// frame are a torn tail only at or above the recovery point: a writer cuts it, a reader ignores
/// it. Below it they were synced whole, so they are corrupt: `CorruptBatch`, nothing is cut.
/// The recovery point used is the largest of `recovery_point` (the one this process knows), the
/// page's (how far any process's sync got) and the checkpoint file's, re-read (only on this rare
/// path): another process may have advanced them (as log.py `_check_tail`).
///
/// Returns true when the writer found that another process has rolled past this segment (a
/// later `.log` exists): then nothing is cut, because the segment is sealed and others may have
/// it mapped (cutting it would be their SIGBUS); the caller refreshes its segment set.
fn check_tail(
    dir: &Path,
    config: &LogConfig,
    shared: &SharedState,
    seg: &mut Segment,
    end: ScanEnd,
    recovery_point: i64,
    writer: bool,
) -> Result<bool> {
    if end == ScanEnd::Clean {
        return Ok(false);
    }
    let synced = recovery_point
        .max(shared.recovery_point())
        .max(checkpoint::read_recovery_point(dir)?.unwrap_or(0));
    if seg.next_offset < synced {
        // why look again: a reader's scan may have raced a write that has since completed, been
        // synced and checkpointed; everything below a checkpoint read before this second scan
        // is whole on disk.
        let len = seg
            .file
            .metadata()
            .io_context(|| format!("stat {}", seg.log_path.display()))?
            .len();
        if seg.scan_tail(config, len)? == ScanEnd::Clean {
            return Ok(false);
        }
    }
    if writer
        && recovery::segment_bases(dir)?
            .iter()
            .any(|&b| b > seg.base_offset)
    {
        return Ok(true);
    }
    if seg.next_offset < synced {
        return Err(Error::CorruptBatch {
            kind: CorruptKind::Framing,
            reason: format!(
                "batch at offset {} does not frame, below the recovery point {synced}",
                seg.next_offset
            ),
            path: Some(seg.log_path.clone()),
            position: seg.size,
        });
    }
    if writer {
        seg.truncate_to_size()?;
    }
    Ok(false)
}

fn end_of(inner: &Inner) -> i64 {
    inner.segments.active().next_offset
}

/// The log start offset: `max(first segment base, log-start-offset-checkpoint)`, the
/// checkpoint clamped to the log end (Kafka's LogLoader: `max(logStartOffsetCheckpoint,
/// firstSegment.baseOffset)`).
fn start_of(inner: &Inner) -> i64 {
    let first = inner.segments[0].base_offset;
    first.max(inner.log_start_checkpoint.min(end_of(inner)))
}

/// Files of a sealed segment that a swap or a deletion renames, in the order renamed: the
/// derived files first, the `.log` last (a crash in between leaves the segment listed, with
/// its indexes rebuilt on load, never an index without its `.log`).
const SEGMENT_FILE_SUFFIXES: [&str; 5] = [
    INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    ".txnindex",
    ".snapshot",
    LOG_SUFFIX,
];

/// Rename the existing files of segment `base` to `<name><suffix>` (`SEGMENT_FILE_SUFFIXES`
/// order); returns the new paths. Writer lock held, layout generation odd.
pub(crate) fn rename_segment_files(dir: &Path, base: i64, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut renamed = Vec::new();
    for file_suffix in SEGMENT_FILE_SUFFIXES {
        let from = dir.join(file_name(base, file_suffix));
        let to = dir.join(format!("{}{suffix}", file_name(base, file_suffix)));
        match fs::rename(&from, &to) {
            Ok(()) => renamed.push(to),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .io_context(|| format!("renaming {} to {}", from.display(), to.display()))
            }
        }
    }
    Ok(renamed)
}

/// Unlink files renamed `.deleted` (after the layout change: a reader that has one mapped or
/// open keeps a valid view, the inode lives on). Best effort: a file already gone is fine, and
/// one left over is removed by the next cleaner or recovery.
pub(crate) fn unlink_deleted(paths: &[PathBuf]) {
    for p in paths {
        let _ = fs::remove_file(p);
    }
}

/// One sealed segment as the cleaner and retention see it (`PartitionLog::cleaner_view`).
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base: i64,
    /// The next segment's base offset.
    pub next_offset: i64,
    /// Bytes of the `.log`.
    pub size: u64,
    pub log_path: PathBuf,
    /// The whole `.log`, mapped (empty for an empty segment); stays valid after a swap or a
    /// deletion (the old inode lives on while mapped).
    pub bytes: SegmentBytes,
    /// Bytes of the offset index and the time index (whole entries).
    pub offset_index_bytes: u64,
    pub time_index_bytes: u64,
    /// The last time-index entry's timestamp, else the `.log`'s mtime in ms (Kafka's
    /// LogSegment.largestTimestamp).
    pub largest_timestamp: i64,
    /// maxTimestamp of the first batch, -1 when unknown or empty.
    pub first_batch_max_timestamp: i64,
    pub mtime: SystemTime,
    /// `(st_dev, st_ino)` of the `.log`: a swap checks the segment is still the directory's.
    pub file_id: (u64, u64),
}

/// The partition as the cleaner sees it: the log start, the end, the active segment's base and
/// the sealed segments in base order.
#[derive(Debug, Clone)]
pub struct CleanerView {
    pub log_start: i64,
    pub end_offset: i64,
    pub active_base: i64,
    pub sealed: Vec<SealedSegment>,
}

/// What retention looks at for one sealed segment (no mapping: a retention run over a long
/// log must not map every segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base: i64,
    /// The next segment's base offset.
    pub next_offset: i64,
    pub size: u64,
    /// `(st_dev, st_ino)` of the `.log` (the deletion checks it is still the directory's).
    pub file_id: (u64, u64),
    /// As `SealedSegment::largest_timestamp` (-1 when not asked for).
    pub largest_timestamp: i64,
}

/// A sealed segment's largest timestamp (Kafka's LogSegment.largestTimestamp): its last
/// time-index entry's, else the `.log`'s mtime in ms; and that mtime.
fn largest_timestamp_of(seg: &mut Segment) -> Result<(i64, SystemTime)> {
    let meta = seg
        .file
        .metadata()
        .io_context(|| format!("stat {}", seg.log_path.display()))?;
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let idx = seg.index()?;
    let last_time_entry = idx.times.last().map(|t| t.timestamp);
    let largest_timestamp = last_time_entry.unwrap_or_else(|| {
        mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
    });
    Ok((largest_timestamp, mtime))
}

fn sealed_segment(seg: &mut Segment) -> Result<SealedSegment> {
    let (largest_timestamp, mtime) = largest_timestamp_of(seg)?;
    let idx = seg.index()?;
    let bytes = match seg.mmap()? {
        Some(m) => {
            let len = (seg.size as usize).min(m.len());
            SegmentBytes::Mapped(m, 0..len)
        }
        None => SegmentBytes::empty(),
    };
    Ok(SealedSegment {
        base: seg.base_offset,
        next_offset: seg.next_offset,
        size: seg.size,
        log_path: seg.log_path.clone(),
        bytes,
        offset_index_bytes: idx.offsets.len() as u64 * crate::index::OFFSET_ENTRY_BYTES,
        time_index_bytes: idx.times.len() as u64 * crate::index::TIME_ENTRY_BYTES,
        largest_timestamp,
        first_batch_max_timestamp: seg.first_batch_max_ts()?.unwrap_or(-1),
        mtime,
        file_id: seg.file_id,
    })
}

/// What a layout change (`PartitionLog::change_layout`: retention's deletion, a compaction
/// swap) sees and may do: the writer lock is held and the layout generation is odd.
pub struct LayoutChange<'a> {
    log: &'a PartitionLog,
    inner: &'a mut Inner,
}

impl LayoutChange<'_> {
    pub fn dir(&self) -> &Path {
        &self.log.dir
    }

    pub fn start_offset(&self) -> i64 {
        start_of(self.inner)
    }

    pub fn active_base(&self) -> i64 {
        self.inner.segments.active().base_offset
    }

    pub fn end_offset(&self) -> i64 {
        end_of(self.inner)
    }

    /// `(base, (st_dev, st_ino), size)` of the sealed segments now, in base order.
    pub fn sealed(&self) -> Vec<(i64, (u64, u64), u64)> {
        let n = self.inner.segments.len();
        self.inner.segments[..n - 1]
            .iter()
            .map(|s| (s.base_offset, s.file_id, s.size))
            .collect()
    }

    /// Rename a `log-start-offset-checkpoint` prepared before the writer lock was taken into
    /// place (durable once the change's directory fsync is done).
    pub fn commit_log_start(&mut self, prepared: checkpoint::PreparedCheckpoint) -> Result<()> {
        let offset = prepared.offset;
        prepared.commit()?;
        self.inner.log_start_checkpoint = offset;
        Ok(())
    }

    /// Write `log-start-offset-checkpoint` (durable when this returns).
    pub fn set_log_start(&mut self, offset: i64) -> Result<()> {
        checkpoint::write_offset_checkpoint(
            &self.log.dir,
            checkpoint::LOG_START_OFFSET_FILE,
            offset,
        )?;
        self.inner.log_start_checkpoint = offset;
        Ok(())
    }

    pub fn pause_point(&self, point: &str) {
        self.log.pause_point(point);
    }
}

fn tail_of(inner: &Inner) -> Tail {
    let active = inner.segments.active();
    Tail {
        end_offset: active.next_offset,
        active_base: active.base_offset,
        active_size: active.size,
    }
}

/// Make `inner.segments` the directory's segment set: segments whose `.log` still has the same
/// inode are kept (an active one that another process sealed takes in its last batches and is
/// sealed here too), the others are (re)opened: sealed ones as they are, the last one derived
/// from its bytes (framing only; a torn tail is left for the next writer's tail sync, bytes that
/// do not frame below the recovery point are `CorruptBatch`). A writer creates segment 0 in an
/// empty directory; a reader that finds no segment keeps what it has and returns false.
///
/// The generation is read before and after the listing: if it was not stable, or moved, the
/// result is not cached (`known_generation = None`) and the segments opened meanwhile are
/// marked for reopening, since they may be half of another process's change.
fn refresh_segments(
    dir: &Path,
    config: &LogConfig,
    shared: &SharedState,
    inner: &mut Inner,
    writer: bool,
) -> Result<bool> {
    if !writer {
        // why: a listing made while another process changes the segment set may hold neither
        // the old nor the new segment under its final name (a swap in progress). A changer
        // that died leaves it odd: then list anyway (the next writer repairs), and do not wait
        // for that same odd value again (every read would pay the bound until a writer came).
        let odd = shared.generation().filter(|g| g % 2 == 1);
        if odd.is_some()
            && inner.waited_out_generation != odd
            && !shared.wait_while_changing(Duration::from_millis(GENERATION_WAIT_MAX_MS))
        {
            inner.waited_out_generation = shared.generation();
        }
    }
    let before = shared.stable_generation();
    inner.log_start_checkpoint =
        checkpoint::read_offset_checkpoint(dir, checkpoint::LOG_START_OFFSET_FILE)?.unwrap_or(0);
    let mut bases = recovery::segment_bases(dir)?;
    if bases.is_empty() {
        if !writer {
            inner.known_generation = None;
            return Ok(false);
        }
        shared.begin_change();
        // why end the change on failure too: a generation left odd would stall every reader
        // until the next writer's repair; readers re-list after an even bump either way.
        let created = Segment::create(dir, 0, config);
        if created.is_err() {
            shared.end_change();
        }
        let seg = created?;
        inner.segments.clear();
        inner.segments.push(seg);
        inner.dir_dirty = true;
        shared.end_change();
        bases.push(0);
    }
    let mut old = inner.segments.take();
    let mut segments = Vec::with_capacity(bases.len());
    let result = (|| {
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = Segment::path_for(dir, base, LOG_SUFFIX);
            let id = match fs::metadata(&path) {
                Ok(m) => Some((m.dev(), m.ino())),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e).io_context(|| format!("stat {}", path.display())),
            };
            let reuse = old
                .iter()
                .position(|s| s.base_offset == base && Some(s.file_id) == id && s.opened_stable);
            let mut seg = match reuse {
                Some(j) if !(last && old[j].sealed) => {
                    let mut seg = old.swap_remove(j);
                    if !last && !seg.sealed {
                        // another process rolled past our active segment: its last batches
                        // first (framing and CRC, as any tail sync), then seal it
                        let len = seg
                            .file
                            .metadata()
                            .io_context(|| format!("stat {}", seg.log_path.display()))?
                            .len();
                        seg.scan_tail(config, len)?;
                        seg.seal(writer)?;
                    }
                    seg
                }
                _ => {
                    let mut seg = match Segment::open(dir, base, !last, config) {
                        Ok(seg) => seg,
                        // raced a change of the directory: the next refresh sees the result
                        Err(Error::Io { source, .. })
                            if source.kind() == ErrorKind::NotFound && !writer =>
                        {
                            inner.known_generation = None;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if last {
                        let end = seg.derive_active(config)?;
                        check_tail(
                            dir,
                            config,
                            shared,
                            &mut seg,
                            end,
                            inner.recovery_point,
                            false,
                        )?;
                    }
                    seg.opened_stable = false; // decided below
                    seg
                }
            };
            if !last {
                seg.next_offset = bases[i + 1];
            }
            segments.push(seg);
        }
        Ok(())
    })();
    if let Err(e) = result {
        // keep a usable state: what we had, to be refreshed again next time
        if inner.segments.is_empty() {
            inner
                .segments
                .replace(if segments.is_empty() { old } else { segments });
        }
        inner.known_generation = None;
        return Err(e);
    }
    if segments.is_empty() {
        inner.segments.replace(old);
        inner.known_generation = None;
        return Ok(false);
    }
    let after = shared.stable_generation();
    let stable = before.is_some() && before == after;
    for seg in &mut segments {
        if !seg.opened_stable {
            seg.opened_stable = stable || writer;
        }
    }
    inner.segments.replace(segments);
    inner.dir_dirty = true;
    inner.known_generation = if stable { after } else { None };
    let end = end_of(inner);
    inner.recovery_point = recovery::recovery_point_within(inner.recovery_point, end);
    Ok(true)
}

/// `PartitionLog::remove_dead_changers_files` for a directory (writer lock held).
fn remove_dead_changers_files(dir: &Path) -> Result<()> {
    let cleaner_idle = CleanerLockGuard::acquire(dir, false)?;
    if recovery::remove_temp_files(dir, cleaner_idle.is_some())? > 0 {
        checkpoint::sync_dir(dir)?;
    }
    Ok(())
}

impl PartitionLog {
    /// Open (creating if needed) the partition directory; the first opener recovers.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        Self::open_interruptible(dir, config, &|| false)
    }

    /// `open`, with recovery asking `interrupted` between segments (see
    /// `recovery::recover_interruptible`); an interrupted open leaves no log open.
    pub fn open_interruptible(
        dir: impl AsRef<Path>,
        config: LogConfig,
        interrupted: &(dyn Fn() -> bool + Sync),
    ) -> Result<PartitionLog> {
        let dir = dir.as_ref().to_path_buf();
        ensure_dir(&dir)?;
        check_writable(&dir)?;
        let lock_file = LockFile::open(&dir, WRITER_LOCK_FILE)?;
        let guard = lock_file.exclusive()?;
        let shared = Arc::new(SharedState::open(&dir)?);
        let open_lock = LockFile::open(&dir, OPEN_LOCK_FILE)?;
        let first = open_lock.try_exclusive()?;
        // why: the first opener's page describes files recovery may change; a page another
        // process left half-changed (it died) or damaged is rebuilt from the files too.
        let rebuild = first || !shared.is_consistent();
        // read before the rebuild makes the page valid (0 from a damaged one); a first opener
        // does not use it: after a power loss the page may claim what the disk lost
        let page_recovery_point = shared.recovery_point();
        if rebuild {
            shared.begin_rebuild();
            // why at once: the load below decides torn tail or corruption by it
            shared.set_recovery_point(if first { 0 } else { page_recovery_point });
        }
        if rebuild && !first {
            // a process died mid-change while others have the directory open: recovery does
            // not run, so its temp-file steps do (as a writer's repair, `writer_resync`)
            remove_dead_changers_files(&dir)?;
        }
        let checkpointed = checkpoint::read_recovery_point(&dir)?;
        let mut recovery_point = None;
        let clean = first && checkpoint::clean_shutdown_exists(&dir);
        if first && !clean {
            recovery_point =
                Some(recovery::recover_interruptible(&dir, &config, interrupted)?.recovery_point);
        } else if !first {
            recovery_point = Some(checkpointed.unwrap_or(0).max(page_recovery_point));
        }
        open_lock.shared()?;
        let mut inner = Inner {
            segments: Segments::new(),
            log_start_checkpoint: 0,
            waited_out_generation: None,
            known_generation: None,
            open_lock: Some(open_lock),
            // (torn-tail checks re-read the checkpoint, so 0 is fine as what we know here)
            recovery_point: 0,
            last_sync: Instant::now(),
            last_checkpoint: Instant::now(),
            dir_dirty: first,
            scratch: Vec::new(),
        };
        refresh_segments(&dir, &config, &shared, &mut inner, true)?;
        if clean {
            // why after the load: if the bytes are corrupt below the recovery point, open fails
            // and the marker stays, so the next open does not run a recovery that cuts synced data
            checkpoint::remove_clean_shutdown(&dir)?;
        }
        let end = end_of(&inner);
        inner.recovery_point = recovery::recovery_point_within(recovery_point.unwrap_or(end), end);
        if first && !clean && checkpointed.is_some_and(|c| c > inner.recovery_point) {
            // why: recovery cut below the checkpoint; the file must not claim offsets that are
            // gone, or a later torn tail there could never be cut (`check_tail`).
            checkpoint::write_recovery_point(&dir, inner.recovery_point)?;
        }
        if rebuild {
            shared.set_recovery_point(inner.recovery_point);
            shared.publish(tail_of(&inner));
            shared.end_change();
        }
        inner.known_generation = shared.stable_generation();
        drop(guard);
        Ok(PartitionLog {
            dir,
            config,
            writer_lock: WriterLock::new(lock_file, shared.clone()),
            shared,
            writer: Mutex::new(WriterScratch::default()),
            inner: Mutex::new(inner),
            closed: AtomicBool::new(false),
            pause: PauseHook::from_env(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The mapped coordination page (`shared_state::wait_any` sleeps on several at once).
    pub fn shared_state(&self) -> &Arc<SharedState> {
        &self.shared
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed(self.dir.clone()));
        }
        Ok(g)
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, WriterScratch>> {
        let g = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed(self.dir.clone()));
        }
        Ok(g)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    // ---- re-sync with the disk -------------------------------------------------------------

    /// Reopen every segment from the directory (the active one shrank or was unlinked); false
    /// when a reader found no segment there (it never creates files, so it keeps what it has).
    fn reload(&self, inner: &mut Inner, writer: bool) -> Result<bool> {
        // why list first: a directory removed under an open handle fails here, before anything
        // is dropped, so the handle keeps answering with the OS's error (never an empty log).
        if !writer && recovery::segment_bases(&self.dir)?.is_empty() {
            return Ok(false);
        }
        let old = inner.segments.take();
        let result = refresh_segments(&self.dir, &self.config, &self.shared, inner, writer);
        if result.is_err() && inner.segments.is_empty() {
            inner.segments.replace(old);
            inner.known_generation = None;
        }
        result
    }

    /// Writer lock held: repair a page a dead writer left half-changed (or that is damaged)
    /// from the files, then catch up like any operation.
    fn writer_resync(&self, inner: &mut Inner) -> Result<()> {
        if !self.shared.is_consistent() {
            let page_recovery_point = self.shared.recovery_point(); // before: 0 if damaged
            self.shared.begin_rebuild();
            // why at once: the tail sync below decides torn tail or corruption by it
            self.shared.set_recovery_point(page_recovery_point);
            self.remove_dead_changers_files()?;
            self.reload(inner, true)?;
            self.tail_sync(inner, true, false)?;
            let end = end_of(inner);
            self.shared
                .set_recovery_point(recovery::recovery_point_within(
                    inner.recovery_point.max(page_recovery_point),
                    end,
                ));
            self.shared.publish(tail_of(inner));
            self.shared.end_change();
            inner.known_generation = self.shared.stable_generation();
            return Ok(());
        }
        self.resync(inner, true)
    }

    /// Writer lock held, page inconsistent (a process may have died mid-change): recovery's
    /// temp-file steps (`recovery::remove_temp_files`: delete `.deleted`, finish or drop
    /// `.swap`), so the listing that follows sees the old or the new segment set, never half a
    /// swap. `.cleaned` files are deleted too unless a live cleaner holds the cleaner lock (it
    /// writes them outside the writer lock).
    fn remove_dead_changers_files(&self) -> Result<()> {
        remove_dead_changers_files(&self.dir)
    }

    /// Catch up with the files (see the module comment). `writer`: the writer lock is held.
    fn resync(&self, inner: &mut Inner, writer: bool) -> Result<()> {
        let generation = self.shared.stable_generation();
        if (generation.is_none() || generation != inner.known_generation)
            && !refresh_segments(&self.dir, &self.config, &self.shared, inner, writer)?
        {
            return Ok(());
        }
        // why the directory checks without a usable generation: then nothing tells us of
        // another process's roll or unlink but the files themselves.
        self.tail_sync(inner, writer, inner.known_generation.is_none())
    }

    /// The active segment's tail: its length, complete batches past the known size, a torn
    /// tail (cut by a writer). `look_around`: also check the head's link count and for a
    /// `{end:020}.log` (another process rolled), as without a usable layout generation.
    fn tail_sync(&self, inner: &mut Inner, writer: bool, look_around: bool) -> Result<()> {
        if look_around && !writer && inner.segments.len() > 1 {
            let head = &inner.segments[0];
            let meta = head
                .file
                .metadata()
                .io_context(|| format!("stat {}", head.log_path.display()))?;
            if meta.nlink() == 0 && !self.reload(inner, writer)? {
                return Ok(()); // the head went away (retention by another process)
            }
        }
        // why bounded: every round either takes in a roll or reloads; a runaway loop is a bug.
        for _ in 0..1_000_000 {
            let active = inner.segments.active_mut();
            let meta = active
                .file
                .metadata()
                .io_context(|| format!("stat {}", active.log_path.display()))?;
            let len = meta.len();
            if meta.nlink() == 0 || len < active.size {
                if !self.reload(inner, writer)? {
                    return Ok(());
                }
                continue;
            }
            if len > active.size {
                let end = active.scan_tail(&self.config, len)?;
                let rolled_past = check_tail(
                    &self.dir,
                    &self.config,
                    &self.shared,
                    active,
                    end,
                    inner.recovery_point,
                    writer,
                )?;
                if rolled_past {
                    // another process sealed this segment (the page did not say so: it was
                    // damaged or the roller does not speak the protocol): never cut it
                    inner.known_generation = None;
                    refresh_segments(&self.dir, &self.config, &self.shared, inner, writer)?;
                    continue;
                }
            }
            let active = inner.segments.active_mut();
            if writer {
                active.persist_index()?;
            }
            // why writers always look: appending at `{end}` when `{end:020}.log` exists would
            // write into a sealed segment; one path lookup per append buys that certainty even
            // against a roller that does not speak the protocol
            if (look_around || writer) && active.next_offset > active.base_offset {
                let next_path = Segment::path_for(&self.dir, active.next_offset, LOG_SUFFIX);
                if next_path.exists() {
                    inner.known_generation = None;
                    refresh_segments(&self.dir, &self.config, &self.shared, inner, writer)?;
                    continue;
                }
            }
            return Ok(());
        }
        Err(Error::Internal(
            "re-sync with the disk did not settle".into(),
        ))
    }

    pub fn start_offset(&self) -> Result<i64> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Ok(start_of(&inner))
    }

    pub fn end_offset(&self) -> Result<i64> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Ok(end_of(&inner))
    }

    // ---- retention and compaction: the cleaner's interface ---------------------------------

    /// The partition as the cleaner sees it (re-synced with the disk first).
    pub fn cleaner_view(&self) -> Result<CleanerView> {
        Ok(self.view()?.0)
    }

    /// Retention's look (re-synced first): the log start, the sealed segments (with their
    /// largest timestamps when `timestamps`) and the active segment's size.
    pub(crate) fn retention_view(&self, timestamps: bool) -> Result<(i64, Vec<SegmentInfo>, u64)> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        let log_start = start_of(&inner);
        let n = inner.segments.len();
        let mut sealed = Vec::with_capacity(n - 1);
        for seg in inner.segments[..n - 1].iter_mut() {
            let largest_timestamp = if timestamps {
                largest_timestamp_of(seg)?.0
            } else {
                -1
            };
            sealed.push(SegmentInfo {
                base: seg.base_offset,
                next_offset: seg.next_offset,
                size: seg.size,
                file_id: seg.file_id,
                largest_timestamp,
            });
        }
        Ok((log_start, sealed, inner.segments.active().size))
    }

    /// `cleaner_view` and the active segment's size.
    fn view(&self) -> Result<(CleanerView, u64)> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        let log_start = start_of(&inner);
        let end_offset = end_of(&inner);
        let n = inner.segments.len();
        let mut sealed = Vec::with_capacity(n - 1);
        for seg in inner.segments[..n - 1].iter_mut() {
            sealed.push(sealed_segment(seg)?);
        }
        let active = inner.segments.active();
        Ok((
            CleanerView {
                log_start,
                end_offset,
                active_base: active.base_offset,
                sealed,
            },
            active.size,
        ))
    }

    /// The cleaner lock (`.pylog.cleaner`, lock.rs): blocking when `wait`; `None` = busy.
    pub fn cleaner_lock(&self, wait: bool) -> Result<Option<CleanerLockGuard>> {
        if self.is_closed() {
            return Err(Error::Closed(self.dir.clone()));
        }
        CleanerLockGuard::acquire(&self.dir, wait)
    }

    /// Cleaner lock held by the caller: delete the `.cleaned` and `.deleted` files a dead
    /// cleaner left, and finish or drop its `.swap` files (recovery's rules, logged as
    /// recovery logs them); returns how many files it changed.
    pub fn remove_stale_cleaner_files(&self) -> Result<usize> {
        let stale = recovery::list_names(&self.dir)?.iter().any(|n| {
            n.ends_with(CLEANED_SUFFIX) || n.ends_with(DELETED_SUFFIX) || n.ends_with(SWAP_SUFFIX)
        });
        if !stale {
            return Ok(0);
        }
        // why under the writer lock with the generation odd: finishing a swap changes the
        // segment set, and no swap or deletion of a live process is half-done meanwhile
        self.change_layout(|c| recovery::remove_temp_files(c.dir(), true))
    }

    /// Swap the written group `new_base.{log,index,timeindex}.cleaned` in for `old` (whose
    /// first base is `new_base`): under the writer lock, generation odd, check `old` are still
    /// the directory's segments (same `.log` inodes), rename `.cleaned` → `.swap`
    /// [`clean-swapping`], every old segment's files → `.deleted` [`clean-deleting`], `.swap`
    /// → final [`clean-swapped`], fsync the directory, end the change; then unlink the
    /// `.deleted` files. Each step is within recovery's rules, so a crash anywhere recovers to
    /// the old or the new set. `Ok(false)`: the directory changed under us (the `.cleaned`
    /// files are removed, nothing swapped). (Kafka's LocalLog.replaceSegments order.)
    pub fn replace_segments(&self, old: &[SealedSegment], new_base: i64) -> Result<bool> {
        if old.first().map(|s| s.base) != Some(new_base) {
            return Err(Error::Internal(format!(
                "a cleaned group at {new_base} must replace segments starting there"
            )));
        }
        let dir = self.dir.clone();
        let with =
            |suffix: &str, temp: &str| dir.join(format!("{}{temp}", file_name(new_base, suffix)));
        let remove_cleaned = || {
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let _ = fs::remove_file(with(suffix, CLEANED_SUFFIX));
            }
        };
        let outcome = self.change_layout(|c| {
            let sealed = c.sealed();
            let current = old.iter().all(|o| {
                sealed
                    .iter()
                    .any(|&(b, id, _)| b == o.base && id == o.file_id)
            });
            if !current || !with(LOG_SUFFIX, CLEANED_SUFFIX).exists() {
                remove_cleaned();
                return Ok(None);
            }
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                let (from, to) = (with(suffix, CLEANED_SUFFIX), with(suffix, SWAP_SUFFIX));
                match fs::rename(&from, &to) {
                    Ok(()) => {}
                    // an index the cleaner did not write is rebuilt on load
                    Err(e) if e.kind() == ErrorKind::NotFound && suffix != LOG_SUFFIX => {}
                    Err(e) => return Err(e).io_context(|| format!("renaming {}", from.display())),
                }
            }
            c.pause_point("clean-swapping");
            let mut deleted = Vec::new();
            for o in old {
                deleted.extend(rename_segment_files(c.dir(), o.base, DELETED_SUFFIX)?);
            }
            c.pause_point("clean-deleting");
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                let (from, to) = (with(suffix, SWAP_SUFFIX), with(suffix, ""));
                match fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound && suffix != LOG_SUFFIX => {}
                    Err(e) => return Err(e).io_context(|| format!("renaming {}", from.display())),
                }
            }
            c.pause_point("clean-swapped");
            Ok(Some(deleted))
        })?;
        match outcome {
            None => Ok(false),
            Some(deleted) => {
                unlink_deleted(&deleted);
                Ok(true)
            }
        }
    }

    /// Run `f` as one change of the segment set: this object's writer mutex, the writer lock
    /// and the state mutex held, re-synced, layout generation odd. Afterwards the directory is
    /// fsynced, this object's segment set refreshed and the generation made even. If `f`
    /// fails half-way, recovery's temp-file steps run first (as a writer finding a dead
    /// changer's odd generation would), so the directory holds the old or the new set.
    pub fn change_layout<T>(
        &self,
        f: impl FnOnce(&mut LayoutChange<'_>) -> Result<T>,
    ) -> Result<T> {
        let (result, finished) = {
            let _w = self.lock_writer()?;
            let _guard = self.writer_lock.acquire()?;
            let mut inner = self.lock()?;
            self.writer_resync(&mut inner)?;
            self.shared.begin_change();
            let result = f(&mut LayoutChange {
                log: self,
                inner: &mut inner,
            });
            let finished = (|| {
                if result.is_err() {
                    self.remove_dead_changers_files()?;
                }
                inner.known_generation = None;
                refresh_segments(&self.dir, &self.config, &self.shared, &mut inner, true)?;
                Ok(())
            })();
            self.shared.end_change();
            inner.known_generation = self.shared.stable_generation();
            (result, finished)
        };
        // why after the locks: the directory fsync takes milliseconds on a VM, and every
        // append of every process waits for the writer lock; the renames are what the others
        // must see atomically, their durability only has to come before this call returns
        // (before `.deleted` files are unlinked or a cleaner checkpoint claims the change).
        let synced = checkpoint::sync_dir(&self.dir);
        let value = result?;
        finished?;
        synced?;
        Ok(value)
    }

    /// `delete_before`'s change (retention.rs decides): under the writer lock, re-synced,
    /// `decide(start, end)` says whether to move the log start to the offset it was given
    /// (or fails); if so, `log-start-offset-checkpoint` is written with the generation odd.
    /// Returns the new start, `None` when nothing moved.
    pub(crate) fn move_log_start(
        &self,
        offset: i64,
        decide: impl FnOnce(i64, i64) -> Result<bool>,
    ) -> Result<Option<i64>> {
        let _w = self.lock_writer()?;
        let _guard = self.writer_lock.acquire()?;
        let mut inner = self.lock()?;
        self.writer_resync(&mut inner)?;
        if !decide(start_of(&inner), end_of(&inner))? {
            return Ok(None);
        }
        self.shared.begin_change();
        let written = checkpoint::write_offset_checkpoint(
            &self.dir,
            checkpoint::LOG_START_OFFSET_FILE,
            offset,
        );
        if written.is_ok() {
            inner.log_start_checkpoint = offset;
        }
        self.shared.end_change();
        inner.known_generation = self.shared.stable_generation();
        written?;
        Ok(Some(start_of(&inner)))
    }

    /// The test hook (`PYLOG_TEST_PAUSE=POINT:N`, see `PauseHook`).
    pub fn pause_point(&self, point: &str) {
        PauseHook::reached(&self.pause, point);
    }

    pub fn read_cleaner_checkpoint(&self) -> Result<Option<i64>> {
        checkpoint::read_offset_checkpoint(&self.dir, checkpoint::CLEANER_OFFSET_FILE)
    }

    pub fn write_cleaner_checkpoint(&self, offset: i64) -> Result<()> {
        checkpoint::write_offset_checkpoint(&self.dir, checkpoint::CLEANER_OFFSET_FILE, offset)
    }

    /// Retention's passes (retention.rs) with the cleaner lock already held by the caller.
    pub fn apply_retention_locked(&self, now_ms: i64) -> Result<RetentionStats> {
        retention::apply(self, now_ms)
    }

    /// Kafka's `deleteOldSegments` (retention.rs) under the cleaner lock: waited for when `wait`,
    /// else `None` when another cleaner holds it (the background cleaner must not queue behind
    /// another process's long compaction, or `Log.close()` would wait for it).
    pub fn apply_retention(&self, now_ms: i64, wait: bool) -> Result<Option<RetentionStats>> {
        let Some(_cleaner) = self.cleaner_lock(wait)? else {
            if wait {
                return Err(Error::Internal(
                    "a blocking cleaner lock came back busy".into(),
                ));
            }
            return Ok(None);
        };
        self.apply_retention_locked(now_ms).map(Some)
    }

    /// Kafka's DeleteRecords: move the log start to `offset` (retention.rs).
    pub fn delete_before(&self, offset: i64) -> Result<RetentionStats> {
        retention::delete_before(self, offset)
    }

    /// The policy includes `compact` (append refuses records without a key).
    pub fn is_compacted(&self) -> bool {
        retention::policy_has(&self.config.cleanup_policy, "compact")
    }

    // ---- writing ----------------------------------------------------------------------------

    fn check_size(&self, size: usize) -> Result<()> {
        if size as u64 > u64::from(self.config.max_message_bytes) {
            return Err(Error::RecordTooLarge(format!(
                "the batch is {size} bytes, larger than max.message.bytes = {}",
                self.config.max_message_bytes
            )));
        }
        if size as u64 > u64::from(self.config.segment_bytes) {
            return Err(Error::RecordTooLarge(format!(
                "the batch is {size} bytes, larger than segment.bytes = {}",
                self.config.segment_bytes
            )));
        }
        Ok(())
    }

    /// Seal the active segment and start `{end:020}` (writer lock held, re-synced). The layout
    /// generation is odd meanwhile; a crash leaves it odd and the next writer repairs.
    fn roll_locked(&self, inner: &mut Inner) -> Result<()> {
        let active = inner.segments.active_mut();
        if active.is_empty() {
            return Ok(());
        }
        self.shared.begin_change();
        active.seal(true)?;
        PauseHook::reached(&self.pause, "rolling");
        let next = active.next_offset;
        let seg = Segment::create(&self.dir, next, &self.config)?;
        inner.segments.push(seg);
        inner.dir_dirty = true;
        self.shared.publish(tail_of(inner));
        self.shared.end_change();
        inner.known_generation = self.shared.stable_generation();
        Ok(())
    }

    /// Write the batch in `batch` (base offset not yet assigned) at the end. Writer lock held.
    fn append_encoded(
        &self,
        inner: &mut Inner,
        batch: &mut [u8],
        rewrite_append_time: Option<i64>,
    ) -> Result<i64> {
        self.writer_resync(inner)?;
        let base = end_of(inner);
        batch::set_base_offset(batch, base);
        batch::set_partition_leader_epoch(batch, 0);
        if let Some(t) = rewrite_append_time {
            batch::set_log_append_time(batch, t);
        }
        let header = BatchHeader::parse(batch)
            .ok_or_else(|| Error::Internal("encoded batch too short".into()))?;
        assert_eq!(
            header.size_bytes(),
            batch.len(),
            "encoded batch length field"
        );
        assert_eq!(header.base_offset, base);
        let active = inner.segments.active_mut();
        if active.should_roll(
            &self.config,
            batch.len() as u64,
            header.last_offset(),
            header.max_timestamp,
        )? {
            self.roll_locked(inner)?;
        }
        PauseHook::reached(&self.pause, "locked");
        let active = inner.segments.active_mut();
        active.append(batch, &header, &self.config)?;
        active.persist_index()?;
        let end = header.next_offset();
        debug_assert_eq!(end_of(inner), end);
        PauseHook::reached(&self.pause, "written");
        self.shared.publish_with(tail_of(inner), || {
            PauseHook::reached(&self.pause, "publishing")
        });
        let now = Instant::now();
        let since_sync_ms = now
            .duration_since(inner.last_sync)
            .as_millis()
            .min(i64::MAX as u128) as i64;
        if end.saturating_sub(inner.recovery_point) >= self.config.flush_messages
            || since_sync_ms >= self.config.flush_ms
        {
            self.sync_locked(inner, false)?;
        }
        Ok(base)
    }

    /// Encode `records` as one batch and append it; returns its base offset.
    pub fn append(&self, records: &[RecordSpec<'_>], codec: Codec) -> Result<i64> {
        self.append_at(records, codec, now_ms())
    }

    /// `append` with the call's wall-clock time given (`now_ms` is also the LogAppendTime, so
    /// one clock reading serves the default timestamps and the append time).
    pub fn append_at(&self, records: &[RecordSpec<'_>], codec: Codec, now_ms: i64) -> Result<i64> {
        if records.is_empty() {
            return Err(Error::InvalidRecord(
                "append needs at least one record".into(),
            ));
        }
        if self.is_compacted() {
            if let Some(i) = records.iter().position(|r| r.key.is_none()) {
                return Err(Error::InvalidRecord(format!(
                    "record {i} has no key; a partition with cleanup.policy={} needs a key on \
                     every record",
                    self.config.cleanup_policy
                )));
            }
        }
        let mut w = self.lock_writer()?;
        let w = &mut *w;
        let append_time = self.config.log_append_time.then_some(now_ms);
        w.encode_buf.clear();
        batch::encode_batch(
            &mut w.encode_buf,
            &mut w.scratch,
            0,
            records,
            codec,
            append_time,
        )?;
        self.check_size(w.encode_buf.len())?;
        let base = {
            let _guard = self.writer_lock.acquire()?;
            let mut inner = self.lock()?;
            self.append_encoded(&mut inner, &mut w.encode_buf, None)?
        };
        self.shared.wake_waiters();
        Ok(base)
    }

    /// Append one pre-encoded v2 batch (validated); returns its assigned base offset.
    pub fn append_raw(&self, batch: &[u8]) -> Result<i64> {
        // why first: Kafka refuses an oversized batch before validating it, and decoding a huge
        // one only to refuse it would be wasted work.
        self.check_size(batch.len())?;
        let mut w = self.lock_writer()?;
        let w = &mut *w;
        // why validate the copy: these are the bytes that get written, whatever the caller's
        // buffer does meanwhile. why only this object's writer mutex held: decoding every
        // record (and decompressing) must not hold up this process's readers.
        w.encode_buf.clear();
        w.encode_buf.extend_from_slice(batch);
        let keys_required = self
            .is_compacted()
            .then_some(self.config.cleanup_policy.as_str());
        validator::validate_for_append(&w.encode_buf, &mut w.scratch, keys_required)?;
        let rewrite = self.config.log_append_time.then(now_ms);
        let base = {
            let _guard = self.writer_lock.acquire()?;
            let mut inner = self.lock()?;
            self.append_encoded(&mut inner, &mut w.encode_buf, rewrite)?
        };
        self.shared.wake_waiters();
        Ok(base)
    }

    pub fn roll(&self) -> Result<()> {
        let _w = self.lock_writer()?;
        let _guard = self.writer_lock.acquire()?;
        let mut inner = self.lock()?;
        self.writer_resync(&mut inner)?;
        self.roll_locked(&mut inner)
    }

    /// Nothing is buffered in memory for the log: checks the log is open.
    pub fn flush(&self) -> Result<()> {
        let _inner = self.lock()?;
        Ok(())
    }

    /// fsync what the recovery point about to be written covers. `closing`: the last closer,
    /// whose clean-shutdown marker makes the next open trust every file as it is.
    fn sync_locked(&self, inner: &mut Inner, closing: bool) -> Result<()> {
        let rp = inner.recovery_point;
        // why the segment holding `rp - 1`: a roll at the recovery point wrote the old
        // segment's final time-index entry after the last sync
        let from = inner.segments.floor_index(rp.saturating_sub(1));
        let active = inner.segments.len() - 1;
        for (i, seg) in inner.segments[from..].iter().enumerate() {
            if from + i == active && !closing {
                // why only the `.log`: every checkpoint lies at or below the end, so in or below
                // the active segment, and recovery rescans the segment holding it and all later
                // ones from their bases, rewriting both index files from the bytes (recovery.rs
                // step 5); this segment's index files are fsynced once it is sealed (the next
                // sync starts at the segment holding `rp - 1`, this one) or by the last closer,
                // before the marker
                seg.sync_log()?;
            } else {
                seg.sync()?;
            }
        }
        if inner.dir_dirty {
            checkpoint::sync_dir(&self.dir)?;
            inner.dir_dirty = false;
        }
        let end = end_of(inner);
        self.shared.advance_recovery_point(end);
        inner.recovery_point = end;
        let now = Instant::now();
        inner.last_sync = now;
        // why not at every sync: every byte below `end` is on disk now, and the checkpoint only
        // says where recovery starts its rescan (the segment holding it, from its base), so a
        // stale one costs a longer rescan, never a synced record (Kafka's LogManager writes it
        // on a timer, not at each flush). Below `end` every sealed segment has its index files
        // fsynced too (above), so `end` is a safe value whenever it is written.
        let due = now.duration_since(inner.last_checkpoint)
            >= Duration::from_millis(RECOVERY_POINT_CHECKPOINT_INTERVAL_MS);
        if closing || due {
            checkpoint::write_recovery_point(&self.dir, end)?;
            inner.last_checkpoint = now;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        let _w = self.lock_writer()?;
        let _guard = self.writer_lock.acquire()?;
        let mut inner = self.lock()?;
        self.writer_resync(&mut inner)?;
        self.sync_locked(&mut inner, false)
    }

    /// Close; the last process to close syncs and writes the clean-shutdown marker. Idempotent.
    pub fn close(&self) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // why: this object's own `wait_for`s return (with `Closed`) now.
        self.shared.wake_waiters();
        let result = (|| {
            let _guard = self.writer_lock.acquire()?;
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let inner = &mut *inner;
            // why: the open lock is dropped while the writer lock is still held, so the next
            // opener (waiting for the writer lock) sees that this process is gone.
            let Some(open_lock) = inner.open_lock.take() else {
                return Ok(());
            };
            let r = (|| {
                if open_lock.try_exclusive()? {
                    self.writer_resync(inner)?;
                    // Kafka's close-time time-index entry (docs/partition-log.md "Index rules")
                    inner.segments.active_mut().append_final_time_entry()?;
                    self.sync_locked(inner, true)?;
                    checkpoint::write_clean_shutdown(&self.dir)?;
                }
                Ok(())
            })();
            drop(open_lock);
            inner.segments.clear();
            r
        })();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.open_lock = None;
        inner.segments.clear();
        result
    }

    // ---- reading ----------------------------------------------------------------------------

    fn check_offset(inner: &Inner, offset: i64) -> Result<()> {
        let (start, end) = (start_of(inner), end_of(inner));
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange(format!(
                "offset {offset} is outside the log [{start}, {end}]"
            )));
        }
        Ok(())
    }

    /// Segment index and position of the first batch with `lastOffset >= offset`, from the
    /// floor segment onwards.
    fn locate(inner: &mut Inner, offset: i64) -> Result<Option<(usize, u64, BatchHeader)>> {
        let first = inner.segments.floor_index(offset);
        for i in first..inner.segments.len() {
            if let Some((pos, h)) = inner.segments[i].find_batch(offset)? {
                return Ok(Some((i, pos, h)));
            }
        }
        Ok(None)
    }

    /// Whole batches of one segment from the batch holding `offset`, up to `max_bytes` (at
    /// least one). Framing only.
    pub fn read(&self, offset: i64, max_bytes: u64) -> Result<SegmentBytes> {
        let mut inner = self.lock()?;
        // why no look at the files below the known end while the layout generation is the one
        // we hold: see the module comment (the random-read path makes no system call).
        let generation = self.shared.stable_generation();
        if generation.is_none() || generation != inner.known_generation || offset >= end_of(&inner)
        {
            self.resync(&mut inner, false)?;
        }
        Self::check_offset(&inner, offset)?;
        if offset == end_of(&inner) {
            return Ok(SegmentBytes::empty());
        }
        let window_bytes = self.read_window_bytes(max_bytes);
        let first = inner.segments.floor_index(offset);
        for seg in &mut inner.segments[first..] {
            if let Some(bytes) = seg.read_batches(offset, max_bytes, window_bytes)? {
                return Ok(bytes);
            }
        }
        Ok(SegmentBytes::empty())
    }

    /// The longest wait of this object for the writer lock since the last call, in
    /// nanoseconds (a diagnostic for the fairness benchmark; lock.rs).
    pub fn take_longest_writer_lock_wait_ns(&self) -> u64 {
        self.writer_lock.take_longest_wait_ns()
    }

    /// Bytes a `read` scans from its index entry: one index interval, slack for the batch that
    /// crosses it, and the result (a `pread` window for the active segment).
    fn read_window_bytes(&self, max_bytes: u64) -> usize {
        (self.config.index_interval_bytes as usize)
            .saturating_add(READ_WINDOW_SLACK_BYTES)
            .saturating_add(max_bytes.min(SCAN_CHUNK_BYTES as u64) as usize)
            .clamp(READ_WINDOW_MIN_BYTES, SCAN_CHUNK_BYTES)
    }

    /// Plan one chunk of `records(start, end)`: whole batches holding offsets `>= start`,
    /// totalling up to `max_bytes` (at least one batch), across segments.
    pub fn records_chunk(&self, start: i64, end: i64, max_bytes: u64) -> Result<RecordsChunk> {
        self.records_chunk_within(start, end, max_bytes, false)
    }

    /// `records_chunk`, with `one_segment`: only from the segment holding the first batch
    /// (the `records()` iterator's step, as the reference engine's: records a retention run
    /// deletes meanwhile are skipped from the next segment on, never yielded from a buffer
    /// that spans segments).
    pub fn records_chunk_within(
        &self,
        start: i64,
        end: i64,
        max_bytes: u64,
        one_segment: bool,
    ) -> Result<RecordsChunk> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Self::check_offset(&inner, start)?;
        let end = end.min(end_of(&inner));
        Self::plan(&mut inner, start, end, max_bytes, one_segment)
    }

    fn plan(
        inner: &mut Inner,
        start: i64,
        end: i64,
        max_bytes: u64,
        one_segment: bool,
    ) -> Result<RecordsChunk> {
        let mut chunk = RecordsChunk {
            pieces: Vec::new(),
            start,
            end,
            next: end,
        };
        if start >= end {
            return Ok(chunk);
        }
        let Some((mut i, mut pos, _)) = Self::locate(inner, start)? else {
            return Ok(chunk);
        };
        let mut total = 0u64;
        let mut position = start;
        loop {
            let seg = &mut inner.segments[i];
            let from = pos;
            let mut to = pos;
            let read_chunk = (max_bytes as usize).clamp(LOOKUP_CHUNK_BYTES, SCAN_CHUNK_BYTES);
            // why copy while scanning: the active segment is read with `pread`s, and the bytes
            // the scan read are the ones to decode (no second read); a sealed one is a range of
            // its mapping, taken after the scan.
            let sealed = seg.sealed;
            let mut copied: Vec<u8> = Vec::new();
            seg.for_each_batch(from, read_chunk, false, |p, h, batch| {
                let size = h.size_bytes() as u64;
                if h.base_offset >= end {
                    position = end; // nothing of [start, end) lies further on
                    return Ok(false);
                }
                if total > 0 && total + size > max_bytes {
                    return Ok(false);
                }
                total += size;
                to = p + size;
                if !sealed {
                    copied.extend_from_slice(batch);
                }
                position = position.max(h.next_offset());
                Ok(total < max_bytes && position < end)
            })?;
            if to > from {
                chunk.pieces.push(Piece {
                    bytes: if sealed {
                        seg.bytes(from, to)?
                    } else {
                        SegmentBytes::Owned(copied)
                    },
                    path: seg.log_path.clone(),
                    file_position: from,
                });
            }
            if position >= end || total >= max_bytes || (total > 0 && to < seg.size) || one_segment
            {
                break;
            }
            // This segment is exhausted: continue with the next one.
            i += 1;
            if i >= inner.segments.len() {
                position = end;
                break;
            }
            match inner.segments[i].find_batch(position)? {
                Some((p, _)) => pos = p,
                None => {
                    pos = inner.segments[i].size; // nothing here; the loop moves on
                }
            }
        }
        chunk.next = position.min(end).max(start);
        if position >= end {
            chunk.next = end;
        }
        Ok(chunk)
    }

    /// Up to `max_records` records from `offset` (same start rule as `read`), across segments,
    /// CRC-checked, as Arrow-layout columns.
    pub fn read_columns(&self, offset: i64, max_records: u64) -> Result<ColumnsBuilder> {
        let mut columns = ColumnsBuilder::new();
        let mut position = offset;
        let mut scratch = Vec::new();
        {
            let mut inner = self.lock()?;
            self.resync(&mut inner, false)?;
            Self::check_offset(&inner, offset)?;
        }
        while (columns.len() as u64) < max_records {
            let (wanted_end, chunk) = {
                let mut inner = self.lock()?;
                let end = end_of(&inner);
                if position >= end {
                    break;
                }
                if position < start_of(&inner) {
                    Self::check_offset(&inner, position)?;
                }
                // why the cap: offsets increase by at least one per record, so the records still
                // wanted have offsets below `position + remaining` unless there are gaps (then
                // the next round goes on); without it a small read decoded a whole 4 MiB chunk.
                let remaining = (max_records - columns.len() as u64).min(i64::MAX as u64) as i64;
                let wanted_end = end.min(position.saturating_add(remaining));
                let chunk =
                    Self::plan(&mut inner, position, wanted_end, COLUMNS_CHUNK_BYTES, false)?;
                (wanted_end, chunk)
            };
            let mut done = false;
            chunk.decode(&mut scratch, |rv| {
                if (columns.len() as u64) < max_records {
                    columns.push(&rv);
                } else {
                    done = true;
                }
                Ok(())
            })?;
            // a batch straddling `wanted_end` had its later records filtered out: go on there
            let next = chunk.next.min(wanted_end);
            if done || next <= position {
                break;
            }
            position = next;
        }
        Ok(columns)
    }

    /// First offset `>= start_offset` whose record timestamp is `>= ts_ms` (LogSegment.findOffsetByTimestamp), else None.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<i64>> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        let log_start = start_of(&inner);
        let inner = &mut *inner;
        for seg in inner.segments.iter_mut() {
            if seg.is_empty() || seg.largest_timestamp()? < ts_ms {
                continue;
            }
            let idx = seg.index()?;
            let te = idx.lookup_time(ts_ms);
            let pos = u64::from(idx.lookup_offset(te.offset.max(log_start)).position);
            let mut found = None;
            let mut batch_copy: Option<(u64, Vec<u8>)> = None;
            seg.for_each_batch(pos, LOOKUP_CHUNK_BYTES, false, |p, h, bytes| {
                if h.max_timestamp >= ts_ms {
                    batch_copy = Some((p, bytes.to_vec()));
                    return Ok(false);
                }
                Ok(true)
            })?;
            let mut scan_from = batch_copy;
            while let Some((p, bytes)) = scan_from.take() {
                batch::decode_batch(&bytes, &mut inner.scratch, |rv| {
                    if found.is_none() && rv.timestamp >= ts_ms && rv.offset >= log_start {
                        found = Some(rv.offset);
                    }
                    Ok(())
                })
                .map_err(|e| e.shifted(p).in_file(&seg.log_path))?;
                if found.is_some() {
                    return Ok(found);
                }
                // No record of that batch qualifies (the max can be a record below log start):
                // keep scanning for the next batch with maxTimestamp >= ts_ms.
                let next_pos = p + bytes.len() as u64;
                seg.for_each_batch(next_pos, LOOKUP_CHUNK_BYTES, false, |p2, h, b| {
                    if h.max_timestamp >= ts_ms {
                        scan_from = Some((p2, b.to_vec()));
                        return Ok(false);
                    }
                    Ok(true)
                })?;
            }
        }
        Ok(None)
    }

    /// True as soon as `end_offset > offset`; false after `timeout_ms`. Sleeps on the shared
    /// page's futex word (woken by every append, in any process, and by `close`), looking at
    /// the files at least every `WAKE_FALLBACK_MS`.
    pub fn wait_for(&self, offset: i64, timeout_ms: u64) -> Result<bool> {
        // why the cap: `Instant + Duration` panics on overflow; ten years is "forever" here.
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.min(MAX_WAIT_MS));
        loop {
            // why read before looking: an append after the look changes the word, so the
            // sleep below returns at once instead of missing it
            let seen = self.shared.tail_seq();
            {
                let mut inner = self.lock()?;
                self.resync(&mut inner, false)?;
                if end_of(&inner) > offset {
                    return Ok(true);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let sleep = (deadline - now).min(Duration::from_millis(WAKE_FALLBACK_MS));
            self.shared.wait_tail(seen, sleep);
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed(self.dir.clone()));
            }
        }
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // why: dropping without close() is an unclean shutdown of this process (no marker);
        // the locks go with the files.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pylog-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("t-0")
    }

    #[test]
    fn a_reader_waits_out_a_dead_changers_odd_generation_once() {
        let dir = temp_dir("odd");
        let writer = PartitionLog::open(&dir, LogConfig::default()).unwrap();
        let spec = [RecordSpec {
            timestamp: 1,
            key: Some(b"k"),
            value: Some(b"v"),
            headers: &[],
        }];
        writer.append(&spec, Codec::None).unwrap();
        writer.roll().unwrap();
        let reader = PartitionLog::open(&dir, LogConfig::default()).unwrap();
        assert_eq!(reader.end_offset().unwrap(), 1);
        writer.shared.begin_change(); // as a changer that then died
        let odd = writer.shared.generation().unwrap();
        assert_eq!(odd % 2, 1);
        assert_eq!(
            reader.end_offset().unwrap(),
            1,
            "lists after the bounded wait"
        );
        assert_eq!(reader.lock().unwrap().waited_out_generation, Some(odd));
        assert_eq!(
            reader.start_offset().unwrap(),
            0,
            "and goes on without waiting again"
        );
        // a writer repairs; the next odd value is waited for again (not remembered)
        writer.append(&spec, Codec::None).unwrap();
        assert_eq!(writer.shared.generation().unwrap() % 2, 0);
        assert_eq!(reader.end_offset().unwrap(), 2);
        writer.close().unwrap();
        reader.close().unwrap();
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
