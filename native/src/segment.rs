//! One segment: `{base:020}.log` plus its two sparse indexes (Kafka's LogSegment.java).
//!
//! The `.log` holds RecordBatch v2 batches back to back. `size` is the length of the prefix this
//! process has validated (complete batches only); the file may be longer while another process
//! is writing (or when a dead writer left a torn tail). Invariants:
//! - `next_offset` = lastOffset + 1 of the last batch in `[0, size)` (= base when empty);
//! - the active (last) segment is only ever read with positional reads (it may be truncated by a
//!   writer repairing a torn tail); sealed segments are immutable and may be memory-mapped;
//! - only the active segment can have a not-yet-written tail: a sealed one must frame exactly to
//!   its end, so a read that meets bytes there which do not frame is `CorruptBatch` (`strict`);
//! - the active segment's index entries are its index files' entries (checked, `SegmentIndex::load`)
//!   followed by those derived here from its bytes past them; `*_in_file` count what its index
//!   files hold, and a writer appends the missing ones (`persist_index`); files refused by the
//!   check are rebuilt from the bytes and rewritten whole by the next writer (`index_rewrite`);
//! - a sealed segment's index is loaded lazily; one refused by the check is rebuilt from the
//!   bytes (sealed rule) and replaced on disk by rename (readers of the old file keep it).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::batch::{self, BatchHeader, Frame, LOG_OVERHEAD};
use crate::config::LogConfig;
use crate::error::{CorruptKind, Error, IoContext, Result};
use crate::index::{self, SegmentIndex, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};

// The names of a segment's files are owned by segments.rs (re-exported for this module's users).
pub use crate::segments::{file_name, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
/// Bytes read per `pread` when scanning a segment file.
pub const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Largest relative offset a segment can hold (`lastOffset - base`).
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Whether a framed batch can stand at `position` of the segment based at `base`, after a batch
/// ending at `next_offset`: offsets never go back (`lastOffsetDelta >= 0`, `baseOffset >=
/// next_offset`), its last offset is within the segment's i32 relative range, and its position
/// fits an index entry. Every scan (recovery, tail sync, index derivation) stops at the first
/// batch that does not. why one predicate: header fields come from files, and each broken one
/// would otherwise reach an index assertion or a negative end offset.
pub fn batch_fits(h: &BatchHeader, base: i64, next_offset: i64, position: u64) -> bool {
    let relative = h
        .base_offset
        .checked_add(i64::from(h.last_offset_delta))
        .and_then(|last| last.checked_sub(base));
    h.last_offset_delta >= 0
        && h.base_offset >= next_offset
        && relative.is_some_and(|r| (0..=MAX_RELATIVE_OFFSET).contains(&r))
        && position <= MAX_RELATIVE_OFFSET as u64
}

/// Why a scan stopped before `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Reached `to` exactly.
    Clean,
    /// A torn (or not yet written) batch starts at the stop position.
    Incomplete,
    /// A batch failed framing, magic, CRC or an offset check at the stop position.
    Corrupt(String),
    /// The visitor asked to stop.
    Stopped,
}

/// The outcome of a scan: where it stopped (a batch boundary) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub position: u64,
    pub end: ScanEnd,
}

/// Read as much of `buf` as the file has at `pos`; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Where scanned bytes come from: a mapped/in-memory image of the file, or the file itself.
pub enum Source<'a> {
    Mem(&'a [u8]),
    /// The file, read in `pread`s of at least this many bytes.
    File(&'a File, usize),
}

/// `pread` size for short lookups (a header scan from an index entry).
pub const LOOKUP_CHUNK_BYTES: usize = 16 << 10;

/// Visit the batches in `[from, to)`: framing (FileLogInputStream.nextBatch) and, if `check_crc`, the CRC.
/// `visit(position, header, batch_bytes)` returns `Ok(false)` to stop (the stop position is then
/// the visited batch's position). Positions are file positions.
pub fn scan_batches<F>(
    source: Source<'_>,
    from: u64,
    to: u64,
    check_crc: bool,
    mut visit: F,
) -> Result<Scan>
where
    F: FnMut(u64, &BatchHeader, &[u8]) -> Result<bool>,
{
    match source {
        Source::Mem(bytes) => {
            let to = to.min(bytes.len() as u64);
            let mut pos = from;
            while pos < to {
                match step(
                    &bytes[pos as usize..to as usize],
                    pos,
                    check_crc,
                    &mut visit,
                )? {
                    Step::Advanced(size) => pos += size,
                    Step::Stop(end) => return Ok(Scan { position: pos, end }),
                }
            }
            Ok(Scan {
                position: pos,
                end: ScanEnd::Clean,
            })
        }
        Source::File(file, chunk_bytes) => {
            let mut to = to;
            let mut buf: Vec<u8> = Vec::new();
            let mut buf_start = from;
            let mut pos = from;
            while pos < to {
                let off = ((pos - buf_start) as usize).min(buf.len());
                match step(&buf[off..], pos, check_crc, &mut visit)? {
                    Step::Advanced(size) => pos += size,
                    Step::Stop(ScanEnd::Incomplete) => {
                        let buf_end = buf_start + buf.len() as u64;
                        if buf_end >= to {
                            return Ok(Scan {
                                position: pos,
                                end: ScanEnd::Incomplete,
                            });
                        }
                        // why: refill from `pos` with at least the whole batch when its length is known.
                        let avail = &buf[off..];
                        let need = if avail.len() >= LOG_OVERHEAD {
                            LOG_OVERHEAD
                                + i32::from_be_bytes(avail[8..12].try_into().unwrap()).max(0)
                                    as usize
                        } else {
                            batch::BATCH_HEADER_BYTES
                        };
                        let want = (need.max(chunk_bytes) as u64).min(to - pos) as usize;
                        buf.resize(want, 0);
                        let got = read_full_at(file, &mut buf, pos)
                            .io_context(|| format!("reading segment at position {pos}"))?;
                        buf.truncate(got);
                        buf_start = pos;
                        if got < want {
                            to = pos + got as u64; // the file is shorter than expected
                        }
                    }
                    Step::Stop(end) => return Ok(Scan { position: pos, end }),
                }
            }
            Ok(Scan {
                position: pos,
                end: ScanEnd::Clean,
            })
        }
    }
}

enum Step {
    Advanced(u64),
    Stop(ScanEnd),
}

fn step<F>(avail: &[u8], pos: u64, check_crc: bool, visit: &mut F) -> Result<Step>
where
    F: FnMut(u64, &BatchHeader, &[u8]) -> Result<bool>,
{
    match batch::frame(avail) {
        Frame::Batch(header) => {
            let size = header.size_bytes();
            let batch = &avail[..size];
            if check_crc {
                if let Err(e) = batch::verify_crc(batch) {
                    return Ok(Step::Stop(ScanEnd::Corrupt(e.to_string())));
                }
            }
            if !visit(pos, &header, batch)? {
                return Ok(Step::Stop(ScanEnd::Stopped));
            }
            Ok(Step::Advanced(size as u64))
        }
        Frame::Corrupt(reason) => Ok(Step::Stop(ScanEnd::Corrupt(reason))),
        Frame::Incomplete => Ok(Step::Stop(ScanEnd::Incomplete)),
    }
}

/// The index of the batches in `[0, to)` of a segment based at `base`, as far as each one fits
/// after the one before (`batch_fits`); `check_crc` as for `scan_batches`. The one owner of this
/// loop (a sealed index rebuild, recovery). Returns the index (not sealed), the scan and the
/// next offset.
pub fn index_batches(
    source: Source<'_>,
    base: i64,
    to: u64,
    check_crc: bool,
    index_interval_bytes: u32,
) -> Result<(SegmentIndex, Scan, i64)> {
    let mut idx = SegmentIndex::new(base);
    let mut next = base;
    let scan = scan_batches(source, 0, to, check_crc, |pos, h, _| {
        // why also without the CRC check: a batch that cannot stand there ends the index; reads
        // report it, nothing is cut.
        if !batch_fits(h, base, next, pos) {
            return Ok(false);
        }
        idx.observe(pos, h, index_interval_bytes);
        next = h.next_offset();
        Ok(true)
    })?;
    Ok((idx, scan, next))
}

/// The batches one `read` returns, met by a forward scan: from the first whose `lastOffset >=
/// offset`, as many whole ones as fit in `max_bytes`, at least one (the one owner of that rule
/// for `read_batches`).
struct ReadSpan {
    offset: i64,
    max_bytes: u64,
    /// Position of the first batch taken.
    found: Option<u64>,
    /// Bytes taken.
    total: u64,
}

impl ReadSpan {
    fn new(offset: i64, max_bytes: u64) -> ReadSpan {
        ReadSpan {
            offset,
            max_bytes,
            found: None,
            total: 0,
        }
    }

    /// The batch at `pos`: (taken, keep scanning).
    fn visit(&mut self, pos: u64, h: &BatchHeader) -> (bool, bool) {
        let size = h.size_bytes() as u64;
        if self.found.is_none() {
            if h.last_offset() < self.offset {
                return (false, true);
            }
            self.found = Some(pos);
            self.total = size;
        } else if self.total + size > self.max_bytes {
            return (false, false);
        } else {
            self.total += size;
        }
        (true, self.total < self.max_bytes)
    }
}

/// `.index` and `.timeindex` bytes, or why they cannot be used.
type IndexFiles = std::result::Result<(Vec<u8>, Vec<u8>), String>;

/// One segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub file: Arc<File>,
    /// Validated bytes (complete batches only).
    pub size: u64,
    /// lastOffset + 1 of the last batch (base when empty).
    pub next_offset: i64,
    pub sealed: bool,
    /// `(st_dev, st_ino)` of the open `.log`: a file replaced by rename (a compaction swap) has
    /// another identity, so a refresh of the segment set reopens it (log.rs).
    pub file_id: (u64, u64),
    /// Opened while the layout generation was stable (shared_state.rs); a segment opened in the
    /// middle of another process's change is reopened by the next refresh.
    pub opened_stable: bool,
    /// Derived (active) or loaded (sealed, lazily) index entries.
    index: Option<Arc<SegmentIndex>>,
    /// Entries the index files hold (active segment; as last seen by this process).
    offset_entries_in_file: u64,
    time_entries_in_file: u64,
    /// maxTimestamp of the first batch (roll rule 2), cached once read.
    first_batch_max_ts: Option<i64>,
    mmap: Option<Arc<Mmap>>,
    /// Writer-side handles of `.index` / `.timeindex` (active segment; dropped at seal).
    index_files: Option<(File, File)>,
    /// The index files were refused on load: the next `persist_index` rewrites them whole.
    index_rewrite: bool,
    /// `index.interval.bytes`, for a rebuild of a refused sealed index.
    index_interval_bytes: u32,
}

impl Segment {
    pub fn path_for(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
        dir.join(file_name(base_offset, suffix))
    }

    fn open_log(path: &Path) -> Result<File> {
        let rw = OpenOptions::new().read(true).write(true).open(path);
        match rw {
            Ok(f) => Ok(f),
            // why: a reader may lack write permission; it only ever reads.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                File::open(path).io_context(|| format!("opening {}", path.display()))
            }
            Err(e) => Err(e).io_context(|| format!("opening {}", path.display())),
        }
    }

    /// Open an existing segment (sealed or not, size = current file length, not validated).
    pub fn open(dir: &Path, base_offset: i64, sealed: bool, config: &LogConfig) -> Result<Segment> {
        let log_path = Self::path_for(dir, base_offset, LOG_SUFFIX);
        let file = Self::open_log(&log_path)?;
        let meta = file
            .metadata()
            .io_context(|| format!("stat {}", log_path.display()))?;
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: meta.len(),
            next_offset: base_offset,
            sealed,
            file_id: (meta.dev(), meta.ino()),
            opened_stable: true,
            index: None,
            offset_entries_in_file: 0,
            time_entries_in_file: 0,
            first_batch_max_ts: None,
            mmap: None,
            index_files: None,
            index_rewrite: false,
            index_interval_bytes: config.index_interval_bytes,
        })
    }

    /// Create an empty active segment: `.log`, `.index` and `.timeindex` (kept if present).
    pub fn create(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = Self::path_for(dir, base_offset, suffix);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .io_context(|| format!("creating {}", p.display()))?;
        }
        let log_path = Self::path_for(dir, base_offset, LOG_SUFFIX);
        // why create_new: callers hold the writer lock and found no `{base}.log`; if one
        // appeared anyway (someone outside pylog), failing beats writing over it from 0.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .io_context(|| format!("creating {}", log_path.display()))?;
        let meta = file
            .metadata()
            .io_context(|| format!("stat {}", log_path.display()))?;
        let seg = Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            sealed: false,
            file_id: (meta.dev(), meta.ino()),
            opened_stable: true,
            index: Some(Arc::new(SegmentIndex::new(base_offset))),
            offset_entries_in_file: 0,
            time_entries_in_file: 0,
            first_batch_max_ts: None,
            mmap: None,
            index_files: None,
            index_rewrite: false,
            index_interval_bytes: config.index_interval_bytes,
        };
        Ok(seg)
    }

    pub fn index_path(&self, suffix: &str) -> PathBuf {
        let dir = self.log_path.parent().expect("segment in a directory");
        Self::path_for(dir, self.base_offset, suffix)
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The index (sealed segments: loaded from the files on first use).
    pub fn index(&mut self) -> Result<Arc<SegmentIndex>> {
        if let Some(idx) = &self.index {
            return Ok(idx.clone());
        }
        let files = self.read_index_files()?;
        let next = (self.next_offset > self.base_offset).then_some(self.next_offset);
        let loaded = files
            .and_then(|(ob, tb)| SegmentIndex::load(self.base_offset, &ob, &tb, self.size, next));
        let idx = match loaded {
            Ok(idx) => idx,
            Err(reason) => {
                // why: a damaged index can send lookups past records (Kafka rebuilds it too,
                // LogLoader sanityCheck/recoverSegment).
                let idx = self.rebuild_sealed_index()?;
                crate::events::index_rebuilt(&self.log_path, &reason);
                let o = idx.encode_offsets(0);
                let t = idx.encode_times(0);
                // best effort: a reader may lack write permission; the rebuilt index serves anyway
                let _ = index::replace_file(&self.index_path(INDEX_SUFFIX), &o)
                    .and_then(|()| index::replace_file(&self.index_path(TIME_INDEX_SUFFIX), &t));
                idx
            }
        };
        let idx = Arc::new(idx);
        self.index = Some(idx.clone());
        Ok(idx)
    }

    /// Both index files' bytes, or why they cannot be used (one is missing).
    fn read_index_files(&self) -> Result<IndexFiles> {
        let mut out = Vec::with_capacity(2);
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = self.index_path(suffix);
            match std::fs::read(&p) {
                Ok(b) => out.push(b),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Ok(Err(format!("{} is missing", p.display())))
                }
                Err(e) => return Err(e).io_context(|| format!("reading {}", p.display())),
            }
        }
        let tb = out.pop().expect("two files");
        let ob = out.pop().expect("two files");
        Ok(Ok((ob, tb)))
    }

    /// A sealed segment's index derived from its bytes (framing only), with the final entry.
    fn rebuild_sealed_index(&mut self) -> Result<SegmentIndex> {
        let (base, size, interval) = (self.base_offset, self.size, self.index_interval_bytes);
        let (mut idx, _, _) = self.with_source(SCAN_CHUNK_BYTES, |src| {
            index_batches(src, base, size, false, interval)
        })?;
        idx.seal();
        Ok(idx)
    }

    /// The read-only mapping of a sealed segment (created on first use).
    pub fn mmap(&mut self) -> Result<Option<Arc<Mmap>>> {
        assert!(self.sealed, "the active segment is never mapped");
        if self.size == 0 {
            return Ok(None);
        }
        if self.mmap.is_none() {
            // SAFETY: sealed segment files are immutable (docs/partition-log.md, Reading); only
            // recovery (which runs before any reader exists) or a later compaction swap by rename
            // replace them, never truncate in place.
            let m = unsafe { Mmap::map(&*self.file) }
                .io_context(|| format!("mapping {}", self.log_path.display()))?;
            self.mmap = Some(Arc::new(m));
        }
        Ok(self.mmap.clone())
    }

    /// Bytes of this segment to scan: the mapping when sealed, else the file.
    fn with_source<R>(
        &mut self,
        chunk_bytes: usize,
        f: impl FnOnce(Source<'_>) -> Result<R>,
    ) -> Result<R> {
        if self.sealed {
            if let Some(m) = self.mmap()? {
                return f(Source::Mem(&m[..self.size.min(m.len() as u64) as usize]));
            }
        }
        f(Source::File(&self.file, chunk_bytes))
    }

    /// Derive the active segment from its bytes `[0, file length)`: `size`, `next_offset`, the
    /// index entries (framing only, as the reference's `open_active`: the bytes were recovered,
    /// closed cleanly, or written whole by a live process). Stops at a torn or invalid batch
    /// without cutting it (a writer does that at its next tail sync).
    pub fn derive_active(&mut self, config: &LogConfig) -> Result<ScanEnd> {
        self.index_interval_bytes = config.index_interval_bytes;
        // why the index files before the log's length: entries are written after their batch,
        // so every entry read here points into bytes the scan below sees.
        let files = self.read_index_files()?;
        let file_len = self
            .file
            .metadata()
            .io_context(|| format!("stat {}", self.log_path.display()))?
            .len();
        let loaded = files
            .and_then(|(ob, tb)| SegmentIndex::load(self.base_offset, &ob, &tb, file_len, None));
        let refused = match loaded {
            Ok(idx) => {
                self.offset_entries_in_file = idx.offsets.len() as u64;
                self.time_entries_in_file = idx.times.len() as u64;
                let end = self.derive_from(config, file_len, idx)?;
                if self.index.as_ref().is_some_and(|i| i.replay_matched()) {
                    self.index_rewrite = false;
                    return Ok(end);
                }
                "an entry does not stand at a batch start".to_string()
            }
            Err(reason) => reason,
        };
        crate::events::index_rebuilt(&self.log_path, &refused);
        self.index_rewrite = true;
        self.offset_entries_in_file = 0;
        self.time_entries_in_file = 0;
        self.derive_from(config, file_len, SegmentIndex::new(self.base_offset))
    }

    fn derive_from(
        &mut self,
        config: &LogConfig,
        file_len: u64,
        idx: SegmentIndex,
    ) -> Result<ScanEnd> {
        self.size = 0;
        self.next_offset = self.base_offset;
        self.first_batch_max_ts = None;
        self.index = Some(Arc::new(idx));
        self.sealed = false;
        self.mmap = None;
        self.take_in(config, file_len, false, SCAN_CHUNK_BYTES)
    }

    /// Take in the whole batches in `[size, file_len)` (checks: framing, CRC when asked,
    /// `baseOffset >= nextOffset`, relative offset in range); stops at the first failure.
    fn take_in(
        &mut self,
        config: &LogConfig,
        file_len: u64,
        check_crc: bool,
        chunk_bytes: usize,
    ) -> Result<ScanEnd> {
        assert!(!self.sealed);
        if file_len <= self.size {
            return Ok(ScanEnd::Clean);
        }
        let mut idx = self
            .index
            .take()
            .map(Arc::unwrap_or_clone)
            .unwrap_or_else(|| SegmentIndex::new(self.base_offset));
        let interval = config.index_interval_bytes;
        let base = self.base_offset;
        let mut next_offset = self.next_offset;
        let mut first_max_ts = self.first_batch_max_ts;
        let scan = scan_batches(
            Source::File(&self.file, chunk_bytes),
            self.size,
            file_len,
            check_crc,
            |pos, h, _| {
                if !batch_fits(h, base, next_offset, pos) {
                    return Ok(false);
                }
                if pos == 0 {
                    first_max_ts = Some(h.max_timestamp);
                }
                idx.observe(pos, h, interval);
                next_offset = h.next_offset();
                Ok(true)
            },
        );
        self.index = Some(Arc::new(idx));
        let scan = scan?;
        self.size = scan.position;
        self.next_offset = next_offset;
        self.first_batch_max_ts = first_max_ts;
        Ok(match scan.end {
            ScanEnd::Stopped => {
                ScanEnd::Corrupt("batch offsets out of order or out of range".into())
            }
            other => other,
        })
    }

    /// Scan complete, CRC-valid batches past `size` up to `file_len` and take them in (tail sync).
    pub fn scan_tail(&mut self, config: &LogConfig, file_len: u64) -> Result<ScanEnd> {
        self.take_in(config, file_len, true, LOOKUP_CHUNK_BYTES)
    }

    /// Append one whole batch at the tail (one positional write), then derive its index entries.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, config: &LogConfig) -> Result<()> {
        assert!(!self.sealed, "append to a sealed segment");
        assert_eq!(batch.len(), header.size_bytes());
        assert!(header.base_offset >= self.next_offset);
        assert!(header.last_offset() - self.base_offset <= MAX_RELATIVE_OFFSET);
        let pos = self.size;
        if let Err(e) = self.file.write_all_at(batch, pos) {
            // why: a short write (ENOSPC...) must not leave a partial batch for readers to skip
            // and the next writer to cut; cut it now (best effort).
            let _ = self.file.set_len(pos);
            return Err(e).io_context(|| format!("writing {}", self.log_path.display()));
        }
        if pos == 0 {
            self.first_batch_max_ts = Some(header.max_timestamp);
        }
        let idx = Arc::make_mut(
            self.index
                .get_or_insert_with(|| Arc::new(SegmentIndex::new(self.base_offset))),
        );
        idx.observe(pos, header, config.index_interval_bytes);
        self.size = pos + batch.len() as u64;
        self.next_offset = header.next_offset();
        Ok(())
    }

    /// Writer only: append to the index files the derived entries they lack.
    pub fn persist_index(&mut self) -> Result<()> {
        let Some(idx) = self.index.clone() else {
            return Ok(());
        };
        let n_off = idx.offsets.len() as u64;
        let n_time = idx.times.len() as u64;
        if self.index_rewrite {
            // the files were refused on load: replace their contents with the derived entries
            for (suffix, bytes) in [
                (INDEX_SUFFIX, idx.encode_offsets(0)),
                (TIME_INDEX_SUFFIX, idx.encode_times(0)),
            ] {
                let p = self.index_path(suffix);
                index::rewrite_in_place(&p, &bytes)
                    .io_context(|| format!("rewriting {}", p.display()))?;
            }
            self.offset_entries_in_file = n_off;
            self.time_entries_in_file = n_time;
            self.index_rewrite = false;
            return Ok(());
        }
        if n_off <= self.offset_entries_in_file && n_time <= self.time_entries_in_file {
            return Ok(());
        }
        if self.index_files.is_none() {
            let open = |suffix: &str| -> Result<File> {
                let p = self.index_path(suffix);
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)
                    .io_context(|| format!("opening {}", p.display()))
            };
            self.index_files = Some((open(INDEX_SUFFIX)?, open(TIME_INDEX_SUFFIX)?));
        }
        let (offset_file, time_file) = self.index_files.as_ref().expect("opened above");
        if n_off > self.offset_entries_in_file {
            let bytes = idx.encode_offsets(self.offset_entries_in_file as usize);
            index::append_at(
                offset_file,
                self.offset_entries_in_file,
                OFFSET_ENTRY_BYTES,
                &bytes,
            )
            .io_context(|| format!("writing {}", self.index_path(INDEX_SUFFIX).display()))?;
            self.offset_entries_in_file = n_off;
        }
        if n_time > self.time_entries_in_file {
            let bytes = idx.encode_times(self.time_entries_in_file as usize);
            index::append_at(
                time_file,
                self.time_entries_in_file,
                TIME_ENTRY_BYTES,
                &bytes,
            )
            .io_context(|| format!("writing {}", self.index_path(TIME_INDEX_SUFFIX).display()))?;
            self.time_entries_in_file = n_time;
        }
        Ok(())
    }

    /// Re-read how many entries the index files hold (another process may have appended).
    pub fn refresh_index_file_counts(&mut self) -> Result<()> {
        if self.index_rewrite {
            return Ok(()); // their contents are about to be replaced
        }
        for (suffix, entry, slot) in [
            (
                INDEX_SUFFIX,
                OFFSET_ENTRY_BYTES,
                &mut self.offset_entries_in_file,
            ),
            (
                TIME_INDEX_SUFFIX,
                TIME_ENTRY_BYTES,
                &mut self.time_entries_in_file,
            ),
        ] {
            let dir = self.log_path.parent().expect("segment in a directory");
            let p = Self::path_for(dir, self.base_offset, suffix);
            *slot = match std::fs::metadata(&p) {
                Ok(m) => m.len() / entry,
                Err(e) if e.kind() == ErrorKind::NotFound => 0,
                Err(e) => return Err(e).io_context(|| format!("stat {}", p.display())),
            };
        }
        Ok(())
    }

    /// The segment becomes inactive: the final time entry (written when `write`).
    pub fn seal(&mut self, write: bool) -> Result<()> {
        if self.sealed {
            return Ok(());
        }
        if let Some(idx) = self.index.as_mut() {
            Arc::make_mut(idx).seal();
        }
        if write {
            self.refresh_index_file_counts()?;
            self.persist_index()?;
        }
        self.index_files = None;
        self.sealed = true;
        Ok(())
    }

    /// The last closer's close: append the final time entry to the active segment's time index
    /// (Kafka's LogSegment.close), so a broker reading the directory finds the segment's
    /// largest timestamp there. The segment stays active; a reopen loads the entry back.
    pub fn append_final_time_entry(&mut self) -> Result<()> {
        assert!(!self.sealed, "final entry of a sealed segment");
        if let Some(idx) = self.index.as_mut() {
            Arc::make_mut(idx).seal();
        }
        self.persist_index()
    }

    /// Fsync the `.log` only (log.rs decides when that is enough: the active segment's index
    /// files are rebuilt by recovery, docs/partition-log.md "Durability").
    pub fn sync_log(&self) -> Result<()> {
        self.file
            .sync_all()
            .io_context(|| format!("syncing {}", self.log_path.display()))
    }

    /// Fsync the `.log` and both index files.
    pub fn sync(&self) -> Result<()> {
        self.sync_log()?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = self.index_path(suffix);
            match File::open(&p) {
                Ok(f) => f
                    .sync_all()
                    .io_context(|| format!("syncing {}", p.display()))?,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context(|| format!("opening {}", p.display())),
            }
        }
        Ok(())
    }

    /// Truncate the `.log` to `size` (a writer repairing a torn or corrupt tail).
    pub fn truncate_to_size(&mut self) -> Result<()> {
        assert!(!self.sealed);
        let file_bytes = self
            .file
            .metadata()
            .io_context(|| format!("stat {}", self.log_path.display()))?
            .len();
        self.file
            .set_len(self.size)
            .io_context(|| format!("truncating {}", self.log_path.display()))?;
        if file_bytes > self.size {
            crate::events::torn_tail_truncated(
                &self.log_path,
                self.size,
                file_bytes,
                self.next_offset,
            );
        }
        Ok(())
    }

    /// Roll rules 1-4 of docs/partition-log.md ("Roll rules", checked before each append; the
    /// reference's `Segment.should_roll` is the twin): this segment is not empty and the incoming
    /// batch would overflow `segment.bytes`, or is more than `segment.ms` newer than the first
    /// batch, or an index is full, or its last offset does not fit the i32 relative range.
    pub fn should_roll(
        &mut self,
        config: &LogConfig,
        size: u64,
        last_offset: i64,
        incoming_max_ts: i64,
    ) -> Result<bool> {
        if self.is_empty() {
            return Ok(false);
        }
        if self.size + size > u64::from(config.segment_bytes) {
            return Ok(true);
        }
        if let Some(first_ts) = self.first_batch_max_ts()? {
            if first_ts >= 0 && incoming_max_ts.saturating_sub(first_ts) > config.segment_ms {
                return Ok(true);
            }
        }
        let idx = self.index()?;
        if idx.is_full(config.segment_index_bytes) {
            return Ok(true);
        }
        Ok(last_offset - self.base_offset > MAX_RELATIVE_OFFSET)
    }

    /// maxTimestamp of the first batch (roll rule 2); `None` when empty.
    pub fn first_batch_max_ts(&mut self) -> Result<Option<i64>> {
        if self.size == 0 {
            return Ok(None);
        }
        if self.first_batch_max_ts.is_none() {
            let mut buf = [0u8; batch::BATCH_HEADER_BYTES];
            let got = read_full_at(&self.file, &mut buf, 0)
                .io_context(|| format!("reading {}", self.log_path.display()))?;
            let h = BatchHeader::parse(&buf[..got]).ok_or_else(|| {
                Error::Internal(format!("{} lost its first batch", self.log_path.display()))
            })?;
            self.first_batch_max_ts = Some(h.max_timestamp);
        }
        Ok(self.first_batch_max_ts)
    }

    /// Where a forward scan for `offset` starts: the offset index's floor entry (0 when the
    /// index points past the data: a damaged index).
    fn scan_start(&mut self, offset: i64) -> Result<u64> {
        let start = u64::from(self.index()?.lookup_offset(offset).position);
        Ok(if start > self.size { 0 } else { start })
    }

    /// Position of the first batch with `lastOffset >= offset` (index lookup, then a forward
    /// header scan; framing only), or `None` when this segment has none.
    pub fn find_batch(&mut self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if self.size == 0 || offset >= self.next_offset {
            return Ok(None);
        }
        let start = self.scan_start(offset)?;
        let mut found = None;
        self.for_each_batch(start, LOOKUP_CHUNK_BYTES, false, |pos, h, _| {
            if h.last_offset() >= offset {
                found = Some((pos, *h));
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// `read`'s work in this segment: whole batches from the first with `lastOffset >= offset`,
    /// as many as fit in `max_bytes` (at least one); `None` when the segment has no such batch.
    /// The same forward scan as `find_batch` (`for_each_batch`): over the mapping when sealed
    /// (the result is a range of it), else `pread`s of `window_bytes` from the index entry
    /// (usually one), the batches copied out as the scan passes them.
    pub fn read_batches(
        &mut self,
        offset: i64,
        max_bytes: u64,
        window_bytes: usize,
    ) -> Result<Option<SegmentBytes>> {
        if self.size == 0 || offset >= self.next_offset {
            return Ok(None);
        }
        let start = self.scan_start(offset)?;
        let sealed = self.sealed;
        let mut span = ReadSpan::new(offset, max_bytes);
        let mut copied: Vec<u8> = Vec::new();
        self.for_each_batch(start, window_bytes, false, |pos, h, batch| {
            let (taken, more) = span.visit(pos, h);
            if taken && !sealed {
                copied.extend_from_slice(batch);
            }
            Ok(more)
        })?;
        let Some(from) = span.found else {
            return Ok(None);
        };
        if sealed {
            return self.bytes(from, from + span.total).map(Some);
        }
        Ok(Some(SegmentBytes::Owned(copied)))
    }

    /// A sealed segment must frame exactly to its end: a scan of it that stopped at bytes which
    /// do not frame (an incomplete batch or bad framing) found corruption, never a tail that is
    /// not yet written (only the active segment has one).
    fn strict(&self, scan: Scan) -> Result<Scan> {
        let reason = match (&scan.end, self.sealed) {
            (ScanEnd::Incomplete, true) => {
                "incomplete batch at the end of a sealed segment".to_string()
            }
            (ScanEnd::Corrupt(reason), true) => reason.clone(),
            _ => return Ok(scan),
        };
        Err(Error::CorruptBatch {
            kind: CorruptKind::Framing,
            reason,
            path: Some(self.log_path.clone()),
            position: scan.position,
        })
    }

    /// Visit whole batches from `from` (a batch boundary) to the end of the validated data.
    pub fn for_each_batch<F>(
        &mut self,
        from: u64,
        chunk_bytes: usize,
        check_crc: bool,
        visit: F,
    ) -> Result<Scan>
    where
        F: FnMut(u64, &BatchHeader, &[u8]) -> Result<bool>,
    {
        let size = self.size;
        let scan = self.with_source(chunk_bytes, |src| {
            scan_batches(src, from, size, check_crc, visit)
        })?;
        self.strict(scan)
    }

    /// The bytes `[from, to)`: a range of the mapping when sealed, else a `pread` copy.
    pub fn bytes(&mut self, from: u64, to: u64) -> Result<SegmentBytes> {
        assert!(
            from <= to && to <= self.size,
            "range [{from}, {to}) outside [0, {})",
            self.size
        );
        if self.sealed {
            if let Some(m) = self.mmap()? {
                return Ok(SegmentBytes::Mapped(m, from as usize..to as usize));
            }
        }
        let mut v = vec![0u8; (to - from) as usize];
        let got = read_full_at(&self.file, &mut v, from)
            .io_context(|| format!("reading {}", self.log_path.display()))?;
        if got != v.len() {
            return Err(Error::Internal(format!(
                "{} shrank under a reader",
                self.log_path.display()
            )));
        }
        Ok(SegmentBytes::Owned(v))
    }

    /// The largest timestamp (sealed: last time entry; active: maxTsSoFar).
    pub fn largest_timestamp(&mut self) -> Result<i64> {
        let idx = self.index()?;
        Ok(if self.sealed {
            idx.largest_timestamp()
        } else {
            idx.max_ts_so_far
        })
    }
}

/// Bytes read out of a segment: zero-copy over a mapping, or owned.
#[derive(Debug, Clone)]
pub enum SegmentBytes {
    Mapped(Arc<Mmap>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl SegmentBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SegmentBytes::Mapped(m, r) => &m[r.clone()],
            SegmentBytes::Owned(v) => v,
        }
    }
    pub fn empty() -> SegmentBytes {
        SegmentBytes::Owned(Vec::new())
    }
}
