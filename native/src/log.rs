//! The partition log: one topic-partition directory of segments (docs/partition-log.md).
//!
//! State lives in `Inner` behind one mutex; the segments are sorted by base offset and the last
//! one is active. Every operation first re-syncs with the disk (another process may have
//! appended, rolled or replaced files): `fstat` of the active `.log` (link count 0 → reload
//! the directory), a CRC-checked scan of complete batches past the known size, and a check for
//! `{end:020}.log` (another process rolled). Writers do this under the writer lock
//! (`.pylog.lock`) and repair what a dead writer left (a torn tail is truncated, missing index
//! entries are appended); readers never take that lock and just ignore a torn tail. A tail is
//! torn only at or above the recovery point: bytes that do not frame below it were synced whole,
//! so they are corruption (`CorruptBatch`, nothing cut; see `check_tail`).
//!
//! Appends: one encode into a reusable buffer, one positional `write` at the tail, O(1) index
//! work; the flush policy (`flush.messages`, `flush.ms`) may then `sync()`. Reads return whole
//! batches: a range of an `Arc<Mmap>` for a sealed segment, a `pread` copy for the active one.

use std::fs;
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::columns::ColumnsBuilder;
use crate::compression::Codec;
use crate::config::LogConfig;
use crate::error::{CorruptKind, Error, IoContext, Result};
use crate::lock::{LockFile, OPEN_LOCK_FILE, WRITER_LOCK_FILE};
use crate::record::{RecordSpec, RecordView};
use crate::recovery;
use crate::segment::{
    ScanEnd, Segment, SegmentBytes, LOG_SUFFIX, LOOKUP_CHUNK_BYTES, MAX_RELATIVE_OFFSET,
    SCAN_CHUNK_BYTES,
};
use crate::validator;

/// How often `wait_for` re-checks the disk for other processes' appends.
pub const WAIT_POLL_MS: u64 = 2;
/// Longest `wait_for` timeout honoured (ten years).
pub const MAX_WAIT_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// Smallest `pread` window of a `read` in the active segment (covers an index gap of
/// `index.interval.bytes` plus the batch in the common case).
const READ_WINDOW_MIN_BYTES: usize = 4 << 10;
/// Room past the index gap for the batch itself.
const READ_WINDOW_SLACK_BYTES: usize = 2 << 10;
/// Bytes of batches decoded per planning step of `read_columns`.
const COLUMNS_CHUNK_BYTES: u64 = 4 << 20;

/// A directory mtime must be this much older than the wall clock before an unchanged mtime is
/// trusted to mean "nothing was created, removed or renamed since". why: file times come from
/// a coarse clock (a jiffy on ext4, xfs, btrfs, tmpfs), so a change right after a look can carry
/// the same mtime. A filesystem with whole-second times (ext3, FAT, some NFS) shows a zero
/// nanosecond part; such an mtime must be `DIR_MTIME_SETTLE_COARSE_NS` old instead.
const DIR_MTIME_SETTLE_NS: i128 = 100_000_000;
const DIR_MTIME_SETTLE_COARSE_NS: i128 = 2_100_000_000;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn dir_mtime_ns(dir: &fs::File) -> Result<i128> {
    let m = dir
        .metadata()
        .io_context(|| "stat of the partition directory".to_owned())?;
    Ok(i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()))
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
    segments: Vec<Segment>,
    /// Directory mtime (ns) at a look that found no `{end:020}.log` (see `resync`).
    dir_unchanged_since: Option<i128>,
    open_lock: Option<LockFile>,
    recovery_point: i64,
    last_sync: Instant,
    /// Files were created, deleted or renamed since the last sync.
    dir_dirty: bool,
    encode_buf: Vec<u8>,
    scratch: Vec<u8>,
}

pub struct PartitionLog {
    dir: PathBuf,
    /// The directory itself, for a cheap `fstat` of its mtime.
    dir_file: fs::File,
    config: LogConfig,
    /// `.pylog.lock`; outside the mutex so its guard does not borrow the state.
    writer_lock: LockFile,
    inner: Mutex<Inner>,
    appended: Condvar,
    /// Set once by `close` (with `inner` held). why outside the mutex: `closed` and the Python
    /// boundary's checks must not wait behind an append that waits for another process's lock.
    closed: AtomicBool,
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
/// The checkpoint file is re-read (only on this rare path): another process may have advanced
/// the recovery point beyond `recovery_point`, the one this process knows.
fn check_tail(
    dir: &Path,
    config: &LogConfig,
    seg: &mut Segment,
    end: ScanEnd,
    recovery_point: i64,
    writer: bool,
) -> Result<()> {
    if end == ScanEnd::Clean {
        return Ok(());
    }
    let synced = recovery_point.max(checkpoint::read_recovery_point(dir)?.unwrap_or(0));
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
            return Ok(());
        }
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
    Ok(())
}

/// Load the segments of `dir` (no recovery): all but the last sealed, the last derived from its
/// bytes (framing only; a torn tail is left for the next writer's tail sync, bytes that do not
/// frame below the recovery point are `CorruptBatch`). Creates segment 0 in an empty directory
/// (only ever with the writer lock held).
fn load_segments(
    dir: &Path,
    config: &LogConfig,
    recovery_point: i64,
) -> Result<(Vec<Segment>, bool)> {
    let bases = recovery::segment_bases(dir)?;
    let mut created = false;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let mut seg = Segment::open(dir, base, !last, config)?;
        if last {
            let end = seg.derive_active(config)?;
            check_tail(dir, config, &mut seg, end, recovery_point, false)?;
        } else {
            seg.next_offset = bases[i + 1];
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, 0)?);
        created = true;
    }
    Ok((segments, created))
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
        let writer_lock = LockFile::open(&dir, WRITER_LOCK_FILE)?;
        let guard = writer_lock.exclusive()?;
        let open_lock = LockFile::open(&dir, OPEN_LOCK_FILE)?;
        let first = open_lock.try_exclusive()?;
        let checkpointed = checkpoint::read_recovery_point(&dir)?;
        let mut recovery_point = None;
        let clean = first && checkpoint::clean_shutdown_exists(&dir);
        if first && !clean {
            recovery_point =
                Some(recovery::recover_interruptible(&dir, &config, interrupted)?.recovery_point);
        } else if !first {
            recovery_point = Some(checkpointed.unwrap_or(0));
        }
        open_lock.shared()?;
        // (torn-tail checks inside re-read the checkpoint, so 0 is fine as what we know here)
        let (segments, created) = load_segments(&dir, &config, 0)?;
        if clean {
            // why after the load: if the bytes are corrupt below the recovery point, open fails
            // and the marker stays, so the next open does not run a recovery that cuts synced data
            checkpoint::remove_clean_shutdown(&dir)?;
        }
        let end = segments.last().expect("at least one segment").next_offset;
        let recovery_point = recovery_point.unwrap_or(end).min(end);
        if first && !clean && checkpointed.is_some_and(|c| c > recovery_point) {
            // why: recovery cut below the checkpoint; the file must not claim offsets that are
            // gone, or a later torn tail there could never be cut (`check_tail`).
            checkpoint::write_recovery_point(&dir, recovery_point)?;
        }
        // why: the marker's removal or recovery changed the directory (or nothing did and one
        // extra directory fsync at the next sync is cheap).
        let dir_dirty = created || first;
        drop(guard);
        let writer_lock = writer_lock;
        let dir_file =
            fs::File::open(&dir).io_context(|| format!("opening directory {}", dir.display()))?;
        Ok(PartitionLog {
            dir,
            dir_file,
            config,
            writer_lock,
            inner: Mutex::new(Inner {
                segments,
                dir_unchanged_since: None,
                open_lock: Some(open_lock),
                recovery_point,
                last_sync: Instant::now(),
                dir_dirty,
                encode_buf: Vec::new(),
                scratch: Vec::new(),
            }),
            appended: Condvar::new(),
            closed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed(self.dir.clone()));
        }
        Ok(g)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    // ---- re-sync with the disk -------------------------------------------------------------

    /// Reload the segments from the directory; false when a reader found no segment there (it
    /// never creates files, so it keeps what it has and stops re-syncing for this call).
    fn reload(&self, inner: &mut Inner, writer: bool) -> Result<bool> {
        if !writer && recovery::segment_bases(&self.dir)?.is_empty() {
            return Ok(false);
        }
        let (segments, _) = load_segments(&self.dir, &self.config, inner.recovery_point)?;
        inner.segments = segments;
        inner.dir_unchanged_since = None;
        inner.dir_dirty = true;
        let end = inner.segments.last().expect("segment").next_offset;
        inner.recovery_point = inner.recovery_point.min(end);
        Ok(true)
    }

    /// Catch up with the files (see the module comment). `writer`: the writer lock is held.
    fn resync(&self, inner: &mut Inner, writer: bool) -> Result<()> {
        let dir_mtime = dir_mtime_ns(&self.dir_file)?;
        self.resync_seen(inner, writer, dir_mtime)
    }

    /// `resync` with the directory mtime already read (`resync_for_read` has it).
    fn resync_seen(&self, inner: &mut Inner, writer: bool, dir_mtime: i128) -> Result<()> {
        // why the directory mtime: every structural change by another process (a roll creates
        // `{end:020}.log`; retention or a swap unlinks or renames files) changes it. While it
        // equals the mtime of a full look that found nothing (and is old enough that a coarse
        // file-clock tick cannot hide a change), neither a roll nor an unlink happened since:
        // then the size of the active `.log` (one lseek) is all there is to check.
        let mut quiet = inner.dir_unchanged_since == Some(dir_mtime);
        if !quiet && !writer && inner.segments.len() > 1 {
            let head = &inner.segments[0];
            let meta = head
                .file
                .metadata()
                .io_context(|| format!("stat {}", head.log_path.display()))?;
            if meta.nlink() == 0 {
                // the head went away (retention by another process)
                if !self.reload(inner, writer)? {
                    return Ok(());
                }
            }
        }
        // why bounded: every round either takes in a roll or reloads; a runaway loop is a bug.
        for _ in 0..1_000_000 {
            let active = inner.segments.last_mut().expect("at least one segment");
            let len = if quiet {
                (&*active.file)
                    .seek(SeekFrom::End(0))
                    .io_context(|| format!("seek {}", active.log_path.display()))?
            } else {
                let meta = active
                    .file
                    .metadata()
                    .io_context(|| format!("stat {}", active.log_path.display()))?;
                if meta.nlink() == 0 {
                    if !self.reload(inner, writer)? {
                        return Ok(());
                    }
                    continue;
                }
                meta.len()
            };
            if len < active.size {
                quiet = false;
                if !self.reload(inner, writer)? {
                    return Ok(());
                }
                continue;
            }
            if len > active.size {
                let end = active.scan_tail(&self.config, len)?;
                check_tail(
                    &self.dir,
                    &self.config,
                    active,
                    end,
                    inner.recovery_point,
                    writer,
                )?;
            }
            if writer {
                active.persist_index()?;
            }
            if active.next_offset > active.base_offset && !quiet {
                let next_path = Segment::path_for(&self.dir, active.next_offset, LOG_SUFFIX);
                if !next_path.exists() {
                    let settle_ns = if dir_mtime % 1_000_000_000 == 0 {
                        DIR_MTIME_SETTLE_COARSE_NS
                    } else {
                        DIR_MTIME_SETTLE_NS
                    };
                    let settled = now_ns().saturating_sub(dir_mtime) > settle_ns;
                    inner.dir_unchanged_since = settled.then_some(dir_mtime);
                } else {
                    inner.dir_unchanged_since = None;
                    // Another process rolled: seal locally and move on to its new segment.
                    active.seal(writer)?;
                    let next = active.next_offset;
                    let seg = match Segment::open(&self.dir, next, false, &self.config) {
                        Ok(s) => s,
                        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                            if !self.reload(inner, writer)? {
                                return Ok(());
                            }
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let mut seg = seg;
                    seg.derive_active(&self.config)?;
                    inner.segments.push(seg);
                    inner.dir_dirty = true;
                    continue;
                }
            }
            return Ok(());
        }
        Err(Error::Internal(
            "re-sync with the disk did not settle".into(),
        ))
    }

    /// `resync` for a read at `offset`. Below the known end only a structural change (roll,
    /// unlink, swap: each changes the directory mtime) can alter what the read returns; bytes
    /// appended since cannot, and no process ever cuts a batch another one could have accepted
    /// (complete and CRC-valid). So a quiet directory needs no look at the tail: one `statx`
    /// instead of two or three syscalls on the random-read path.
    fn resync_for_read(&self, inner: &mut Inner, offset: i64) -> Result<()> {
        let dir_mtime = dir_mtime_ns(&self.dir_file)?;
        if offset < Self::end_of(inner) && inner.dir_unchanged_since == Some(dir_mtime) {
            return Ok(());
        }
        self.resync_seen(inner, false, dir_mtime)
    }

    fn end_of(inner: &Inner) -> i64 {
        inner.segments.last().expect("segment").next_offset
    }

    fn start_of(inner: &Inner) -> i64 {
        inner.segments[0].base_offset
    }

    pub fn start_offset(&self) -> Result<i64> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Ok(Self::start_of(&inner))
    }

    pub fn end_offset(&self) -> Result<i64> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Ok(Self::end_of(&inner))
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

    /// Roll rules §2.7 for an incoming batch.
    fn should_roll(
        &self,
        active: &mut Segment,
        size: u64,
        last_offset: i64,
        incoming_max_ts: i64,
    ) -> Result<bool> {
        if active.is_empty() {
            return Ok(false);
        }
        if active.size + size > u64::from(self.config.segment_bytes) {
            return Ok(true);
        }
        if let Some(first_ts) = active.first_batch_max_ts()? {
            if first_ts >= 0 && incoming_max_ts.saturating_sub(first_ts) > self.config.segment_ms {
                return Ok(true);
            }
        }
        let idx = active.index()?;
        if idx.is_full(self.config.segment_index_bytes) {
            return Ok(true);
        }
        Ok(last_offset - active.base_offset > MAX_RELATIVE_OFFSET)
    }

    /// Seal the active segment and start `{end:020}` (writer lock held, re-synced).
    fn roll_locked(&self, inner: &mut Inner) -> Result<()> {
        let active = inner.segments.last_mut().expect("segment");
        if active.is_empty() {
            return Ok(());
        }
        active.seal(true)?;
        let next = active.next_offset;
        let seg = Segment::create(&self.dir, next)?;
        inner.segments.push(seg);
        inner.dir_dirty = true;
        Ok(())
    }

    /// Write the batch in `inner.encode_buf` (base offset not yet assigned) at the end.
    fn append_encoded(&self, inner: &mut Inner, rewrite_append_time: Option<i64>) -> Result<i64> {
        let _guard = self.writer_lock.exclusive()?;
        self.resync(inner, true)?;
        let base = Self::end_of(inner);
        let Inner {
            encode_buf,
            segments,
            ..
        } = inner;
        batch::set_base_offset(encode_buf, base);
        batch::set_partition_leader_epoch(encode_buf, 0);
        if let Some(t) = rewrite_append_time {
            batch::set_log_append_time(encode_buf, t);
        }
        let header = BatchHeader::parse(encode_buf)
            .ok_or_else(|| Error::Internal("encoded batch too short".into()))?;
        assert_eq!(
            header.size_bytes(),
            encode_buf.len(),
            "encoded batch length field"
        );
        assert_eq!(header.base_offset, base);
        let active = segments.last_mut().expect("segment");
        if self.should_roll(
            active,
            encode_buf.len() as u64,
            header.last_offset(),
            header.max_timestamp,
        )? {
            self.roll_locked(inner)?;
        }
        let Inner {
            encode_buf,
            segments,
            ..
        } = inner;
        let active = segments.last_mut().expect("segment");
        active.append(encode_buf, &header, &self.config)?;
        active.persist_index()?;
        let end = header.next_offset();
        debug_assert_eq!(Self::end_of(inner), end);
        let now = Instant::now();
        let since_sync_ms = now
            .duration_since(inner.last_sync)
            .as_millis()
            .min(i64::MAX as u128) as i64;
        if end.saturating_sub(inner.recovery_point) >= self.config.flush_messages
            || since_sync_ms >= self.config.flush_ms
        {
            self.sync_locked(inner)?;
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
        let mut inner = self.lock()?;
        let append_time = self.config.log_append_time.then_some(now_ms);
        let mut buf = std::mem::take(&mut inner.encode_buf);
        let mut scratch = std::mem::take(&mut inner.scratch);
        buf.clear();
        let encoded = batch::encode_batch(&mut buf, &mut scratch, 0, records, codec, append_time);
        inner.encode_buf = buf;
        inner.scratch = scratch;
        encoded?;
        self.check_size(inner.encode_buf.len())?;
        let base = self.append_encoded(&mut inner, None)?;
        drop(inner);
        self.appended.notify_all();
        Ok(base)
    }

    /// Append one pre-encoded v2 batch (validated); returns its assigned base offset.
    pub fn append_raw(&self, batch: &[u8]) -> Result<i64> {
        // why validate the copy: these are the bytes that get written, whatever the caller's
        // buffer does meanwhile. why outside the log mutex: decoding every record (and
        // decompressing) must not hold up this process's readers.
        let (mut buf, mut scratch) = {
            let mut inner = self.lock()?;
            // why first: Kafka refuses an oversized batch before validating it, and decoding a
            // huge one only to refuse it would be wasted work.
            self.check_size(batch.len())?;
            (
                std::mem::take(&mut inner.encode_buf),
                std::mem::take(&mut inner.scratch),
            )
        };
        buf.clear();
        buf.extend_from_slice(batch);
        let checked = validator::validate_for_append(&buf, &mut scratch);
        let mut inner = self.lock()?;
        inner.encode_buf = buf;
        inner.scratch = scratch;
        checked?;
        let rewrite = self.config.log_append_time.then(now_ms);
        let base = self.append_encoded(&mut inner, rewrite)?;
        drop(inner);
        self.appended.notify_all();
        Ok(base)
    }

    pub fn roll(&self) -> Result<()> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        let _guard = self.writer_lock.exclusive()?;
        self.resync(inner, true)?;
        self.roll_locked(inner)
    }

    /// Nothing is buffered in memory for the log: checks the log is open.
    pub fn flush(&self) -> Result<()> {
        let _inner = self.lock()?;
        Ok(())
    }

    fn sync_locked(&self, inner: &mut Inner) -> Result<()> {
        let rp = inner.recovery_point;
        // why the segment holding `rp - 1`: a roll at the recovery point wrote the old
        // segment's final time-index entry after the last sync
        let from = inner
            .segments
            .partition_point(|s| s.base_offset < rp)
            .saturating_sub(1);
        for seg in &inner.segments[from..] {
            seg.sync()?;
        }
        if inner.dir_dirty {
            checkpoint::sync_dir(&self.dir)?;
            inner.dir_dirty = false;
        }
        let end = Self::end_of(inner);
        checkpoint::write_recovery_point(&self.dir, end)?;
        inner.recovery_point = end;
        inner.last_sync = Instant::now();
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        let _guard = self.writer_lock.exclusive()?;
        self.resync(inner, true)?;
        self.sync_locked(inner)
    }

    /// Close; the last process to close syncs and writes the clean-shutdown marker. Idempotent.
    pub fn close(&self) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let inner = &mut *inner;
        let result = (|| {
            let _guard = self.writer_lock.exclusive()?;
            // why: the open lock is dropped while the writer lock is still held, so the next
            // opener (waiting for the writer lock) sees that this process is gone.
            let open_lock = inner.open_lock.take().expect("open lock held while open");
            if open_lock.try_exclusive()? {
                self.resync(inner, true)?;
                // Kafka's close-time time-index entry (docs/partition-log.md "Index rules")
                let active = inner.segments.last_mut().expect("segment");
                active.append_final_time_entry()?;
                self.sync_locked(inner)?;
                checkpoint::write_clean_shutdown(&self.dir)?;
            }
            drop(open_lock);
            Ok(())
        })();
        inner.open_lock = None;
        inner.segments.clear();
        self.appended.notify_all();
        result
    }

    // ---- reading ----------------------------------------------------------------------------

    fn check_offset(inner: &Inner, offset: i64) -> Result<()> {
        let (start, end) = (Self::start_of(inner), Self::end_of(inner));
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
        let first = inner
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
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
        self.resync_for_read(&mut inner, offset)?;
        Self::check_offset(&inner, offset)?;
        if offset == Self::end_of(&inner) {
            return Ok(SegmentBytes::empty());
        }
        let window_bytes = (self.config.index_interval_bytes as usize)
            .saturating_add(READ_WINDOW_SLACK_BYTES)
            .saturating_add(max_bytes.min(SCAN_CHUNK_BYTES as u64) as usize)
            .clamp(READ_WINDOW_MIN_BYTES, SCAN_CHUNK_BYTES);
        let first = inner
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &mut inner.segments[first..] {
            if let Some(bytes) = seg.read_batches(offset, max_bytes, window_bytes)? {
                return Ok(bytes);
            }
        }
        Ok(SegmentBytes::empty())
    }

    /// Plan one chunk of `records(start, end)`: whole batches holding offsets `>= start`,
    /// totalling up to `max_bytes` (at least one batch), across segments.
    pub fn records_chunk(&self, start: i64, end: i64, max_bytes: u64) -> Result<RecordsChunk> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        Self::check_offset(&inner, start)?;
        let end = end.min(Self::end_of(&inner));
        Self::plan(&mut inner, start, end, max_bytes)
    }

    fn plan(inner: &mut Inner, start: i64, end: i64, max_bytes: u64) -> Result<RecordsChunk> {
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
            seg.for_each_batch(from, read_chunk, false, |p, h, _| {
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
                position = position.max(h.next_offset());
                Ok(total < max_bytes && position < end)
            })?;
            if to > from {
                chunk.pieces.push(Piece {
                    bytes: seg.bytes(from, to)?,
                    path: seg.log_path.clone(),
                    file_position: from,
                });
            }
            if position >= end || total >= max_bytes || (total > 0 && to < seg.size) {
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
                let end = Self::end_of(&inner);
                if position >= end {
                    break;
                }
                if position < Self::start_of(&inner) {
                    Self::check_offset(&inner, position)?;
                }
                // why the cap: offsets increase by at least one per record, so the records still
                // wanted have offsets below `position + remaining` unless there are gaps (then
                // the next round goes on); without it a small read decoded a whole 4 MiB chunk.
                let remaining = (max_records - columns.len() as u64).min(i64::MAX as u64) as i64;
                let wanted_end = end.min(position.saturating_add(remaining));
                let chunk = Self::plan(&mut inner, position, wanted_end, COLUMNS_CHUNK_BYTES)?;
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

    /// First offset `>= start_offset` whose record timestamp is `>= ts_ms` (§3.3), else None.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<i64>> {
        let mut inner = self.lock()?;
        self.resync(&mut inner, false)?;
        let log_start = Self::start_of(&inner);
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

    /// True as soon as `end_offset > offset`; false after `timeout_ms`.
    pub fn wait_for(&self, offset: i64, timeout_ms: u64) -> Result<bool> {
        // why the cap: `Instant + Duration` panics on overflow; ten years is "forever" here.
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.min(MAX_WAIT_MS));
        let mut inner = self.lock()?;
        loop {
            self.resync(&mut inner, false)?;
            if Self::end_of(&inner) > offset {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = (deadline - now).min(Duration::from_millis(WAIT_POLL_MS));
            // why: the condvar releases the log mutex while waiting (appenders can proceed).
            inner = self
                .appended
                .wait_timeout(inner, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
