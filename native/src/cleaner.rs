//! Log compaction, Kafka's log cleaner (core/src/main/scala/kafka/log/LogCleaner.scala and
//! LogCleanerManager.scala; since apache/kafka PR #19387
//! storage/src/main/java/org/apache/kafka/storage/internals/log/Cleaner.java), the twin of
//! `pylog/reference/cleaner.py`. Both engines implement exactly the algorithm below, so with
//! codec none they write identical bytes (docs/partition-log.md "Compaction").
//!
//! **Cleanable** (`cleanable_from`): first dirty = `cleaner-offset-checkpoint` (the log start
//! when absent or outside [start, end]); first uncleanable = min(active base, the first sealed
//! segment from floor(first dirty) on younger than `min.compaction.lag.ms`), at least first
//! dirty; the byte counts, the dirty ratio and `max.compaction.lag.ms` decide `due`.
//!
//! **One pass** (`run_pass`):
//! 1. build the offset map (offset_map.rs) over the batches of the segments in
//!    [floor(first dirty), first uncleanable): every keyed record of a non-control batch at or
//!    above first dirty is put, until the map is full (checked before every put); a segment
//!    finished without filling covers up to the next segment's base. `end = latest + 1`;
//! 2. group the segments below `end`, from the first one (the clean section is recopied too),
//!    while the group's `.log` bytes fit `segment.bytes`, its index bytes fit
//!    `segment.index.bytes` and its offsets fit an i32 (Kafka's groupSegmentsBySize);
//! 3. filter each group into `<first base>.log.cleaned` (`filter_batch`): control batches are
//!    copied; a record is kept iff it is beyond the map or its key's latest offset is its own,
//!    and it is not a tombstone past its batch's delete horizon (KIP-534: attributes bit 6,
//!    horizon in baseTimestamp). Unchanged batches are copied byte for byte, emptied ones
//!    dropped (the group's last one is kept as an empty header: recovery's swap range then
//!    spans the whole group), the others rebuilt with their codec, first and last offsets,
//!    producer fields, a new horizon when a kept tombstone needs one, and a new CRC;
//! 4. build `.index.cleaned` / `.timeindex.cleaned` from the written batches by the sealed
//!    index rules (index.rs, the derivation recovery's rebuild uses, final time entry included),
//!    fsync the three files, give the `.log.cleaned` the group's last segment's mtime, and swap
//!    the group in (`PartitionLog::replace_segments`, log.rs); after all groups write
//!    `cleaner-offset-checkpoint = end`.
//!
//! Memory and speed: sealed segments are read through their mappings (zero copy); the map is
//! at most `map_bytes` (offset_map.rs); the output goes through a buffer of `IO_BUFFER_BYTES`
//! (its writeback started per flush, so the final fsync is short), and the per-batch buffers
//! (decompression, record table, digests, rebuilt batch) are reused, so memory is the map, the
//! superseded bits (at most 1/8 of the map) and about one batch's and one I/O buffer's bytes.
//! Only keys are decoded for the map and hashed, eight at a time; the filter decides the keyed
//! records of the mapped range by the superseded bits (no second digest, no probe) and skips
//! the CRC of the batches the map building verified; unchanged batches are copied as byte
//! ranges; no record is copied except into a rebuilt batch.
//!
//! Stopping: `stop` is asked between segments and at least every `STOP_CHECK_BYTES` of input
//! (map building and filtering). A stop leaves no half-done swap: the group being written has
//! its `.cleaned` files deleted; groups already swapped stay (each swap is complete and the
//! checkpoint is only written after a whole pass, so the next pass redoes that range).
//!
//! Thread-safety: `compact` holds the partition's cleaner lock (lock.rs) for the whole call, so
//! one cleaner per partition runs at a time across processes; it runs without the GIL.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::batch::{
    self, BatchHeader, Frame, BATCH_HEADER_BYTES, CODEC_MASK, CONTROL_MASK, DELETE_HORIZON_MASK,
    LOG_OVERHEAD, MAGIC_V2, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK,
};
use crate::compression::{compress, Codec};
use crate::config::LogConfig;
use crate::error::{CorruptKind, Error, IoContext, Result};
use crate::events;
use crate::index::SegmentIndex;
use crate::log::{CleanerView, PartitionLog, SealedSegment};
use crate::offset_map::{digest_keys, KeyDigest, OffsetMap, MIN_MAP_BYTES};
use crate::record::{decode_records_area, write_record_raw};
use crate::segment::{batch_fits, MAX_RELATIVE_OFFSET};
use crate::segments::{file_name, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

/// Bytes of cleaned output buffered before a `write` (Kafka's `log.cleaner.io.buffer.size` order).
pub const IO_BUFFER_BYTES: usize = 1 << 20;
/// Input bytes between two `stop` checks inside a segment.
pub const STOP_CHECK_BYTES: usize = 8 << 20;
/// A group's offsets must fit an index entry's i32 relative offset.
const MAX_GROUP_OFFSET_SPAN: i64 = MAX_RELATIVE_OFFSET;

/// What one `compact` call did (the fields of `pylog.partition.CleanResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub passes: u64,
    pub segments_cleaned: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    pub clean_offset: i64,
    pub skipped: Option<String>,
}

impl CleanStats {
    fn add(&mut self, pass: &PassStats) {
        self.segments_cleaned += pass.segments;
        self.bytes_read += pass.bytes_read;
        self.bytes_written += pass.bytes_written;
        self.records_read += pass.counts.records;
        self.records_kept += pass.counts.kept;
        self.tombstones_removed += pass.counts.tombstones_removed;
    }
}

/// The cleaner's view of a partition (the fields of `pylog.partition.Cleanable`).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanableStats {
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    pub clean_bytes: u64,
    pub cleanable_bytes: u64,
    pub dirty_ratio: f64,
    pub needs_compaction_now: bool,
    pub due: bool,
}

/// Whether `cleanup.policy` (normalized: delete | compact | compact,delete) includes compact.
pub fn has_compact(policy: &str) -> bool {
    policy.split(',').any(|p| p.trim() == "compact")
}

/// Base of the segment holding `offset` (the last segment, sealed or active, whose base is at
/// or below it; the first segment for an offset below every base).
fn floor_base(view: &CleanerView, offset: i64) -> i64 {
    if offset >= view.active_base {
        return view.active_base;
    }
    view.sealed
        .iter()
        .rev()
        .find(|s| s.base <= offset)
        .or(view.sealed.first())
        .map_or(view.active_base, |s| s.base)
}

/// Kafka's `cleanableOffsets` and `LogToClean` over a view (pure; no lock, no write).
pub fn cleanable_from(
    view: &CleanerView,
    checkpoint: Option<i64>,
    config: &LogConfig,
    now_ms: i64,
) -> CleanableStats {
    let first_dirty = checkpoint
        .filter(|&c| c >= view.log_start && c <= view.end_offset)
        .unwrap_or(view.log_start);
    let floor_dirty = floor_base(view, first_dirty);
    let mut first_uncleanable = view.active_base;
    if config.min_compaction_lag_ms > 0 {
        let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
        if let Some(s) = view
            .sealed
            .iter()
            .find(|s| s.base >= floor_dirty && s.largest_timestamp > young)
        {
            first_uncleanable = first_uncleanable.min(s.base);
        }
    }
    let first_uncleanable = first_uncleanable.max(first_dirty);
    let dirty = || {
        view.sealed
            .iter()
            .filter(move |s| s.base >= floor_dirty && s.base < first_uncleanable)
    };
    let clean_bytes: u64 = view
        .sealed
        .iter()
        .filter(|s| s.base < first_dirty)
        .map(|s| s.size)
        .sum();
    let cleanable_bytes: u64 = dirty().map(|s| s.size).sum();
    let needs_compaction_now = config.max_compaction_lag_ms < i64::MAX && {
        let old = now_ms.saturating_sub(config.max_compaction_lag_ms);
        dirty().any(|s| s.first_batch_max_timestamp >= 0 && s.first_batch_max_timestamp < old)
    };
    let total = clean_bytes + cleanable_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        cleanable_bytes as f64 / total as f64
    };
    let due = has_compact(&config.cleanup_policy)
        && cleanable_bytes > 0
        && (dirty_ratio > config.min_cleanable_dirty_ratio || needs_compaction_now);
    CleanableStats {
        first_dirty_offset: first_dirty,
        first_uncleanable_offset: first_uncleanable,
        clean_bytes,
        cleanable_bytes,
        dirty_ratio,
        needs_compaction_now,
        due,
    }
}

/// `PartitionLog.cleanable`: the view now and the checkpoint.
pub fn cleanable(log: &PartitionLog, now_ms: i64) -> Result<CleanableStats> {
    let view = log.cleaner_view()?;
    let checkpoint = log.read_cleaner_checkpoint()?;
    Ok(cleanable_from(&view, checkpoint, log.config(), now_ms))
}

/// One sealed segment as the byte-level steps see it.
#[derive(Clone, Copy, Debug)]
pub struct SegmentRef<'a> {
    pub base: i64,
    /// The next segment's base (the active one's for the last sealed segment).
    pub next_base: i64,
    /// The whole `.log`.
    pub bytes: &'a [u8],
    pub path: &'a Path,
    pub offset_index_bytes: u64,
    pub time_index_bytes: u64,
}

/// The batches of a sealed segment in order, each checked to frame and to stand after the one
/// before (`segment::batch_fits`) and below the next segment's base: a sealed segment must frame
/// exactly to its end, so anything else is `CorruptBatch` at its position (never skipped: a
/// cleaner that skipped bytes would drop them from the log).
struct SealedBatches<'a> {
    seg: SegmentRef<'a>,
    pos: usize,
    next_offset: i64,
}

impl<'a> SealedBatches<'a> {
    fn new(seg: SegmentRef<'a>) -> Self {
        SealedBatches {
            seg,
            pos: 0,
            next_offset: seg.base,
        }
    }

    fn corrupt(&self, kind: CorruptKind, reason: String) -> Error {
        Error::corrupt(kind, reason, self.pos as u64).in_file(self.seg.path)
    }

    /// `(position, header, batch bytes)` of the next batch, or None at the end.
    fn next_batch(&mut self) -> Result<Option<(usize, BatchHeader, &'a [u8])>> {
        let bytes = self.seg.bytes;
        if self.pos >= bytes.len() {
            return Ok(None);
        }
        let rest = &bytes[self.pos..];
        let h = match batch::frame(rest) {
            Frame::Batch(h) => h,
            Frame::Corrupt(reason) => {
                return Err(self.corrupt(batch::frame_error_kind(rest), reason))
            }
            Frame::Incomplete => {
                return Err(self.corrupt(
                    CorruptKind::Framing,
                    format!(
                        "incomplete batch in a sealed segment ({} bytes left)",
                        rest.len()
                    ),
                ))
            }
        };
        if !batch_fits(&h, self.seg.base, self.next_offset, self.pos as u64)
            || h.last_offset() >= self.seg.next_base
        {
            return Err(self.corrupt(
                CorruptKind::Framing,
                format!(
                    "batch at offsets [{}, {}] does not follow offset {} inside the segment \
                     [{}, {})",
                    h.base_offset,
                    h.last_offset(),
                    self.next_offset,
                    self.seg.base,
                    self.seg.next_base
                ),
            ));
        }
        let at = self.pos;
        let size = h.size_bytes();
        self.pos += size;
        self.next_offset = h.next_offset();
        Ok(Some((at, h, &bytes[at..at + size])))
    }
}

/// Counts `stop` checks by input bytes.
struct StopCheck<'s> {
    stop: &'s (dyn Fn() -> bool + Sync),
    since: usize,
}

impl StopCheck<'_> {
    /// Ask now (between segments).
    fn now(&mut self) -> bool {
        self.since = 0;
        (self.stop)()
    }

    /// Ask once `bytes` more input made `STOP_CHECK_BYTES` since the last question.
    fn after(&mut self, bytes: usize) -> bool {
        self.since += bytes;
        self.since >= STOP_CHECK_BYTES && self.now()
    }
}

/// Build the offset map over the segments in [floor(first dirty), first uncleanable) (Kafka's
/// buildOffsetMap / buildOffsetMapForSegment). Returns the pass's end (`latest + 1`), or None
/// when `stop` said so.
pub fn build_offset_map(
    segs: &[SegmentRef<'_>],
    first_dirty: i64,
    first_uncleanable: i64,
    map: &mut OffsetMap,
    scratch: &mut PassScratch,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<i64>> {
    let mut check = StopCheck { stop, since: 0 };
    scratch
        .superseded
        .reset(map.slots() * crate::offset_map::ENTRY_BYTES / SUPERSEDED_SHARE * 8);
    // a segment holds first dirty or lies above it iff it ends above it
    for seg in segs
        .iter()
        .filter(|s| s.next_base > first_dirty && s.base < first_uncleanable)
    {
        if check.now() {
            return Ok(None);
        }
        let mut batches = SealedBatches::new(*seg);
        let mut full = false;
        while let Some((pos, h, bytes)) = batches.next_batch()? {
            if check.after(bytes.len()) {
                return Ok(None);
            }
            if h.is_control() || h.last_offset() < first_dirty {
                continue;
            }
            let at = |e: Error| e.shifted(pos as u64).in_file(seg.path);
            let (h, codec) = batch::check_batch(bytes).map_err(at)?;
            let PassScratch {
                decompressed,
                keyed,
                digests,
                superseded,
                ..
            } = &mut *scratch;
            let area = batch::records_area(bytes, &h, codec, decompressed).map_err(at)?;
            keyed.clear();
            decode_records_area(area, &h, codec == Codec::None, |r| {
                if let (Some(key), true) = (r.key, r.offset >= first_dirty) {
                    keyed.push((r.offset, span(area, key)));
                }
                Ok(())
            })
            .map_err(at)?;
            digests.clear();
            digest_keys(keyed.iter().map(|(_, (a, b))| &area[*a..*b]), digests);
            for d in digests.iter().take(PREFETCH_AHEAD) {
                map.prefetch(d);
            }
            for (i, (offset, _)) in keyed.iter().enumerate() {
                // Kafka's check, before every put (an overwrite included)
                if map.is_full() {
                    full = true;
                    break;
                }
                if let Some(ahead) = digests.get(i + PREFETCH_AHEAD) {
                    map.prefetch(ahead);
                }
                if let Some(old) = map.put(&digests[i], *offset)? {
                    superseded.mark(old - first_dirty);
                }
            }
            if full {
                break;
            }
        }
        if full {
            break;
        }
        map.update_latest_offset(seg.next_base - 1);
    }
    Ok(Some(map.latest_offset() + 1))
}

/// Kafka's groupSegmentsBySize over the segments below the pass's end (`segs`): consecutive
/// groups, each growing while its `.log` bytes stay within `max_log_bytes`, each index kind's
/// bytes within `max_index_bytes`, and its offsets (up to the next segment's base, or `end`
/// after the last) within an i32 of its first base. Returns index ranges into `segs`.
pub fn group_segments(
    segs: &[SegmentRef<'_>],
    end: i64,
    max_log_bytes: u64,
    max_index_bytes: u64,
) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segs.len() {
        let first = &segs[start];
        let (mut log_bytes, mut offset_index_bytes, mut time_index_bytes) = (
            first.bytes.len() as u64,
            first.offset_index_bytes,
            first.time_index_bytes,
        );
        let mut next = start + 1;
        while let Some(cand) = segs.get(next) {
            let upper = segs.get(next + 1).map_or(end, |s| s.base);
            let fits = log_bytes + cand.bytes.len() as u64 <= max_log_bytes
                && offset_index_bytes + cand.offset_index_bytes <= max_index_bytes
                && time_index_bytes + cand.time_index_bytes <= max_index_bytes
                && upper - 1 - first.base <= MAX_GROUP_OFFSET_SPAN;
            if !fits {
                break;
            }
            log_bytes += cand.bytes.len() as u64;
            offset_index_bytes += cand.offset_index_bytes;
            time_index_bytes += cand.time_index_bytes;
            next += 1;
        }
        groups.push(start..next);
        start = next;
    }
    groups
}

/// What decides a record's fate in a pass.
#[derive(Clone, Copy)]
pub struct FilterRules<'m> {
    pub map: &'m OffsetMap,
    /// The pass's first dirty offset (where the map's puts, and the slot cache, begin).
    pub first_dirty: i64,
    /// The map's latest offset: records above it are beyond the map (kept).
    pub latest: i64,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
}

/// Slots looked up ahead of the record being decided (hides the map's cache misses).
const PREFETCH_AHEAD: usize = 16;
/// `RecordRef::digest` of a record that needs no digest.
const NO_DIGEST: u32 = u32::MAX;
/// The superseded-offset bits (`PassScratch::superseded`) take at most 1/8 of the map's bytes.
const SUPERSEDED_SHARE: usize = 8;

/// One bit per offset from the pass's first dirty offset: set when a later put of the same key
/// overwrote that offset's map entry. A keyed record in [first dirty, latest] was put (the
/// build puts every one), so `offset >= map.get(key)` holds exactly when its bit is clear: the
/// filter decides those records without a second digest or probe. Offsets past `limit` bits
/// are decided by digest (the memory stays bounded).
#[derive(Default)]
pub struct Superseded {
    words: Vec<u64>,
    limit: usize,
}

impl Superseded {
    fn reset(&mut self, limit_bits: usize) {
        self.words.clear();
        self.limit = limit_bits;
    }

    /// Whether `relative` (offset - first dirty) is covered.
    #[inline]
    fn covers(&self, relative: i64) -> bool {
        (0..self.limit as i64).contains(&relative)
    }

    #[inline]
    fn mark(&mut self, relative: i64) {
        if self.covers(relative) {
            let (w, b) = (relative as usize / 64, relative as usize % 64);
            if w >= self.words.len() {
                self.words.resize(w + 1, 0);
            }
            self.words[w] |= 1 << b;
        }
    }

    #[inline]
    fn is_set(&self, relative: i64) -> bool {
        let (w, b) = (relative as usize / 64, relative as usize % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }
}

/// One record of the batch being filtered, as byte ranges of its records area.
#[derive(Clone, Copy, Debug)]
struct RecordRef {
    offset: i64,
    timestamp: i64,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers: (usize, usize),
    header_count: usize,
    /// Index into the batch's digests, or NO_DIGEST.
    digest: u32,
    keep: bool,
}

/// Buffers one pass reuses for every batch (map building and filtering).
#[derive(Default)]
pub struct PassScratch {
    decompressed: Vec<u8>,
    records: Vec<u8>,
    refs: Vec<RecordRef>,
    /// Map building: (offset, key range) of the batch's keyed records at or above first dirty.
    keyed: Vec<(i64, (usize, usize))>,
    digests: Vec<KeyDigest>,
    /// Offsets of the pass whose map entry a later put overwrote.
    superseded: Superseded,
    /// The rebuilt batch of the last `BatchAction::Rebuilt`.
    pub out: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// Write the batch's bytes as they are.
    Copy,
    /// Write nothing.
    Drop,
    /// Write `PassScratch::out`.
    Rebuilt,
}

/// Records seen, kept, and tombstones dropped past their horizon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub records: u64,
    pub kept: u64,
    pub tombstones_removed: u64,
}

fn span(area: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - area.as_ptr() as usize;
    (start, start + part.len())
}

/// Decide one batch (Kafka's filterTo with the cleaner's retention rules): validated (CRC
/// unless `crc_verified`, codec, records) first; `last_of_group` keeps an emptied batch as an
/// empty header. `counts` gets this batch's records.
// why two loops: the first decodes and hashes the keys (eight at a time), the second looks
// them up with the next slots already requested from memory.
pub fn filter_batch(
    bytes: &[u8],
    rules: &FilterRules<'_>,
    last_of_group: bool,
    crc_verified: bool,
    scratch: &mut PassScratch,
    counts: &mut RecordCounts,
) -> Result<BatchAction> {
    let (h, codec) = batch::check_batch_with(bytes, !crc_verified)?;
    let bytes = &bytes[..h.size_bytes()];
    let PassScratch {
        decompressed,
        records,
        refs,
        digests,
        superseded,
        out,
        ..
    } = scratch;
    let area = batch::records_area(bytes, &h, codec, decompressed)?;
    if h.is_control() {
        // transactions are not implemented: markers stay as they are (validated all the same)
        decode_records_area(area, &h, codec == Codec::None, |_| Ok(()))?;
        return Ok(BatchAction::Copy);
    }
    refs.clear();
    let mut lookups = 0u32;
    decode_records_area(area, &h, codec == Codec::None, |r| {
        // None: decided by the superseded bits (or beyond the map, or keyless)
        let mut digest = NO_DIGEST;
        if r.key.is_some()
            && r.offset <= rules.latest
            && !superseded.covers(r.offset - rules.first_dirty)
        {
            digest = lookups;
            lookups += 1;
        }
        refs.push(RecordRef {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(|k| span(area, k)),
            value: r.value.map(|v| span(area, v)),
            headers: span(area, r.headers_raw),
            header_count: r.header_count,
            digest,
            keep: false,
        });
        Ok(())
    })?;
    digests.clear();
    digest_keys(
        refs.iter()
            .filter(|r| r.digest != NO_DIGEST)
            .filter_map(|r| r.key.map(|(a, b)| &area[a..b])),
        digests,
    );
    for d in digests.iter().take(PREFETCH_AHEAD) {
        rules.map.prefetch(d);
    }
    let has_horizon = h.attributes & DELETE_HORIZON_MASK != 0;
    let horizon_passed = has_horizon && rules.now_ms >= h.base_timestamp;
    let mut kept = 0usize;
    let mut removed = 0u64;
    let mut kept_tombstone = false;
    let mut first_kept_timestamp = None;
    let mut max_kept_timestamp = i64::MIN;
    for r in refs.iter_mut() {
        let relative = r.offset - rules.first_dirty;
        let by_map = r.offset > rules.latest
            || (r.key.is_some() && {
                if r.digest == NO_DIGEST {
                    !superseded.is_set(relative)
                } else {
                    let i = r.digest as usize;
                    if let Some(ahead) = digests.get(i + PREFETCH_AHEAD) {
                        rules.map.prefetch(ahead);
                    }
                    r.offset >= rules.map.get(&digests[i])
                }
            });
        if !by_map {
            continue;
        }
        if r.value.is_none() {
            if horizon_passed {
                removed += 1;
                continue;
            }
            kept_tombstone = true;
        }
        r.keep = true;
        kept += 1;
        first_kept_timestamp.get_or_insert(r.timestamp);
        max_kept_timestamp = max_kept_timestamp.max(r.timestamp);
    }
    counts.records += refs.len() as u64;
    counts.kept += kept as u64;
    counts.tombstones_removed += removed;
    let needs_horizon = !has_horizon && kept_tombstone;
    if kept == refs.len() && !needs_horizon {
        return Ok(BatchAction::Copy);
    }
    let Some(first_kept_timestamp) = first_kept_timestamp else {
        if !last_of_group {
            return Ok(BatchAction::Drop);
        }
        write_empty_batch(&h, out);
        return Ok(BatchAction::Rebuilt);
    };
    // rebuild: same offsets, producer fields, codec and timestamp type
    let base_timestamp = if needs_horizon {
        rules.now_ms.saturating_add(rules.delete_retention_ms)
    } else if has_horizon {
        h.base_timestamp
    } else {
        first_kept_timestamp
    };
    let max_timestamp = if h.timestamp_type() == 1 {
        h.max_timestamp
    } else {
        max_kept_timestamp
    };
    let mut attributes = h.attributes & (CODEC_MASK | TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK);
    if needs_horizon || has_horizon {
        attributes |= DELETE_HORIZON_MASK;
    }
    let slice = |r: Option<(usize, usize)>| r.map(|(a, b)| &area[a..b]);
    out.clear();
    out.resize(BATCH_HEADER_BYTES, 0);
    let target: &mut Vec<u8> = if codec == Codec::None {
        &mut *out
    } else {
        records.clear();
        &mut *records
    };
    for r in refs.iter().filter(|r| r.keep) {
        write_record_raw(
            target,
            r.timestamp.wrapping_sub(base_timestamp),
            (r.offset - h.base_offset) as i32,
            slice(r.key),
            slice(r.value),
            r.header_count,
            &area[r.headers.0..r.headers.1],
        )?;
    }
    if codec != Codec::None {
        compress(codec, records, out).map_err(|source| Error::Io {
            context: format!("{} compression of a cleaned batch", codec.name()),
            source,
        })?;
    }
    let length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| {
        Error::RecordTooLarge(format!(
            "a cleaned batch of {} bytes does not fit the length field",
            out.len()
        ))
    })?;
    let header = BatchHeader {
        length,
        crc: 0,
        attributes,
        base_timestamp,
        max_timestamp,
        records_count: kept as i32,
        magic: MAGIC_V2,
        ..h
    };
    header.write_to(out);
    batch::write_crc(out);
    Ok(BatchAction::Rebuilt)
}

/// The header of an emptied batch kept to hold its offsets (Kafka's
/// DefaultRecordBatch.writeEmptyHeader): same offsets, epoch and producer fields, attributes
/// reduced to the timestamp-type, transactional and control bits, both timestamps the original
/// maxTimestamp, no records.
fn write_empty_batch(h: &BatchHeader, out: &mut Vec<u8>) {
    out.clear();
    out.resize(BATCH_HEADER_BYTES, 0);
    let header = BatchHeader {
        length: (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32,
        magic: MAGIC_V2,
        crc: 0,
        attributes: h.attributes & (TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK),
        base_timestamp: h.max_timestamp,
        records_count: 0,
        ..*h
    };
    header.write_to(out);
    batch::write_crc(out);
}

/// `{base:020}{suffix}.cleaned`.
fn cleaned_path(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{CLEANED_SUFFIX}", file_name(base, suffix)))
}

/// The three `.cleaned` files of a group based at `base`.
pub fn cleaned_paths(dir: &Path, base: i64) -> [PathBuf; 3] {
    [
        cleaned_path(dir, base, LOG_SUFFIX),
        cleaned_path(dir, base, INDEX_SUFFIX),
        cleaned_path(dir, base, TIME_INDEX_SUFFIX),
    ]
}

/// The `.log.cleaned` being written: a bounded buffer in front of the file, and the index
/// derived batch by batch as recovery's sealed rebuild derives it (`SegmentIndex::observe`).
struct CleanedLog {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    flushed: u64,
    index: SegmentIndex,
    index_interval_bytes: u32,
}

impl CleanedLog {
    fn create(path: PathBuf, base: i64, index_interval_bytes: u32) -> Result<CleanedLog> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .io_context(|| format!("creating {}", path.display()))?;
        Ok(CleanedLog {
            path,
            file,
            buf: Vec::with_capacity(IO_BUFFER_BYTES),
            flushed: 0,
            index: SegmentIndex::new(base),
            index_interval_bytes,
        })
    }

    fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn push(&mut self, batch: &[u8]) -> Result<()> {
        let pos = self.position();
        if pos > MAX_RELATIVE_OFFSET as u64 {
            return Err(Error::Internal(format!(
                "{} would exceed 2 GiB (a batch at position {pos})",
                self.path.display()
            )));
        }
        let h = BatchHeader::parse(batch).expect("a whole batch");
        self.index.observe(pos, &h, self.index_interval_bytes);
        if self.buf.len() + batch.len() > IO_BUFFER_BYTES {
            self.flush()?;
        }
        if batch.len() >= IO_BUFFER_BYTES {
            self.file
                .write_all(batch)
                .io_context(|| format!("writing {}", self.path.display()))?;
            self.start_writeback(self.flushed, batch.len() as u64);
            self.flushed += batch.len() as u64;
        } else {
            self.buf.extend_from_slice(batch);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .io_context(|| format!("writing {}", self.path.display()))?;
            self.start_writeback(self.flushed, self.buf.len() as u64);
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Ask the kernel to start writing `[from, from + len)` back now, so the final fsync finds
    /// little left to do (the disk works while the cleaner computes). Only a hint.
    fn start_writeback(&self, from: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: sync_file_range(2) on an open descriptor; no memory is passed.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    from as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, len);
    }

    /// Flush, give the file `mtime`, fsync; write and fsync both index files. Returns the
    /// `.log` bytes written.
    fn finish(mut self, mtime: SystemTime, index_paths: &[PathBuf]) -> Result<u64> {
        self.flush()?;
        // why: Kafka gives the cleaned segment the last source segment's mtime, which time
        // retention reads when the segment has no time entry
        self.file
            .set_modified(mtime)
            .io_context(|| format!("setting the mtime of {}", self.path.display()))?;
        self.file
            .sync_all()
            .io_context(|| format!("syncing {}", self.path.display()))?;
        self.index.seal();
        for (path, bytes) in index_paths
            .iter()
            .zip([self.index.encode_offsets(0), self.index.encode_times(0)])
        {
            let mut f = File::create(path).io_context(|| format!("creating {}", path.display()))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .io_context(|| format!("writing {}", path.display()))?;
        }
        Ok(self.flushed)
    }
}

/// Totals of one pass.
#[derive(Debug, Clone, Default)]
struct PassStats {
    segments: u64,
    bytes_read: u64,
    bytes_written: u64,
    counts: RecordCounts,
}

/// Filter one group into its `.cleaned` files. Ok(false): `stop` said so (the files are gone).
#[allow(clippy::too_many_arguments)]
fn clean_group(
    dir: &Path,
    group: &[SegmentRef<'_>],
    mtime: SystemTime,
    rules: &FilterRules<'_>,
    index_interval_bytes: u32,
    check: &mut StopCheck<'_>,
    scratch: &mut PassScratch,
    stats: &mut PassStats,
) -> Result<bool> {
    let base = group[0].base;
    let paths = cleaned_paths(dir, base);
    let written = (|| -> Result<Option<u64>> {
        let mut log = CleanedLog::create(paths[0].clone(), base, index_interval_bytes)?;
        let last_nonempty = group.iter().rposition(|s| !s.bytes.is_empty());
        for (i, seg) in group.iter().enumerate() {
            if check.now() {
                return Ok(None);
            }
            let mut batches = SealedBatches::new(*seg);
            while let Some((pos, h, bytes)) = batches.next_batch()? {
                if check.after(bytes.len()) {
                    return Ok(None);
                }
                let last = Some(i) == last_nonempty && pos + bytes.len() == seg.bytes.len();
                // the map building checked the CRC of every non-control batch from first dirty
                // up to the one holding latest (same bytes: the mapping is immutable)
                let crc_verified = !h.is_control()
                    && h.last_offset() >= rules.first_dirty
                    && h.base_offset <= rules.latest;
                let action =
                    filter_batch(bytes, rules, last, crc_verified, scratch, &mut stats.counts)
                        .map_err(|e| e.shifted(pos as u64).in_file(seg.path))?;
                match action {
                    BatchAction::Copy => log.push(bytes)?,
                    BatchAction::Rebuilt => log.push(&scratch.out)?,
                    BatchAction::Drop => {}
                }
            }
        }
        log.finish(mtime, &paths[1..]).map(Some)
    })();
    match written {
        Ok(Some(n)) => {
            stats.bytes_written += n;
            stats.bytes_read += group.iter().map(|s| s.bytes.len() as u64).sum::<u64>();
            Ok(true)
        }
        Ok(None) => {
            remove_files(&paths);
            Ok(false)
        }
        Err(e) => {
            remove_files(&paths);
            Err(e)
        }
    }
}

/// Best effort: a file left behind is removed by the next cleaner or by recovery.
fn remove_files(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

enum PassEnd {
    /// Every group swapped; the checkpoint may move to this offset.
    Done(i64),
    /// `stop` said so.
    Stopped,
    /// Another process changed the segments (a swap found them replaced): the pass stops.
    Changed,
}

fn segment_refs(view: &CleanerView) -> Vec<SegmentRef<'_>> {
    view.sealed
        .iter()
        .enumerate()
        .map(|(i, s)| SegmentRef {
            base: s.base,
            next_base: view.sealed.get(i + 1).map_or(view.active_base, |n| n.base),
            bytes: s.bytes.as_slice(),
            path: &s.log_path,
            offset_index_bytes: s.offset_index_bytes,
            time_index_bytes: s.time_index_bytes,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_pass(
    log: &PartitionLog,
    view: &CleanerView,
    first_dirty: i64,
    first_uncleanable: i64,
    now_ms: i64,
    map_bytes: usize,
    stop: &(dyn Fn() -> bool + Sync),
    scratch: &mut PassScratch,
    stats: &mut PassStats,
) -> Result<PassEnd> {
    let config = log.config();
    let segs = segment_refs(view);
    let mut map = OffsetMap::new(map_bytes)?;
    let Some(end) = build_offset_map(
        &segs,
        first_dirty,
        first_uncleanable,
        &mut map,
        scratch,
        stop,
    )?
    else {
        return Ok(PassEnd::Stopped);
    };
    if end <= first_dirty {
        return Err(Error::InvalidConfig(format!(
            "log.cleaner.dedupe.buffer.size = {map_bytes} bytes is too small: the offset map \
             cannot hold one record ({} slots)",
            map.slots()
        )));
    }
    let below_end = segs.iter().take_while(|s| s.base < end).count();
    let groups = group_segments(
        &segs[..below_end],
        end,
        u64::from(config.segment_bytes),
        u64::from(config.segment_index_bytes),
    );
    let rules = FilterRules {
        map: &map,
        first_dirty,
        latest: map.latest_offset(),
        now_ms,
        delete_retention_ms: config.delete_retention_ms,
    };
    let mut check = StopCheck { stop, since: 0 };
    for g in groups {
        let group = &segs[g.clone()];
        let mtime = view.sealed[g.end - 1].mtime;
        if !clean_group(
            log.path(),
            group,
            mtime,
            &rules,
            config.index_interval_bytes,
            &mut check,
            scratch,
            stats,
        )? {
            return Ok(PassEnd::Stopped);
        }
        log.pause_point("clean-written");
        let old: &[SealedSegment] = &view.sealed[g.clone()];
        let swapped = log.replace_segments(old, group[0].base);
        match swapped {
            Ok(true) => stats.segments += group.len() as u64,
            Ok(false) => return Ok(PassEnd::Changed),
            Err(e) => {
                // what is still named `.cleaned` was not swapped in
                remove_files(&cleaned_paths(log.path(), group[0].base));
                return Err(e);
            }
        }
    }
    Ok(PassEnd::Done(end))
}

/// `PartitionLog.compact` (docs/partition-log.md "Compaction"): passes until the dirty range is
/// clean, then retention for the compacted log. `stop` is the caller's cancel (or Ctrl-C); a
/// stop returns what was done with `skipped = "cancelled"` (the caller raises
/// `KeyboardInterrupt` when a signal caused it).
pub fn compact(
    log: &PartitionLog,
    now_ms: i64,
    map_bytes: usize,
    force: bool,
    wait: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<CleanStats> {
    let config = log.config();
    let skipped = |first_dirty: i64, why: String| CleanStats {
        clean_offset: first_dirty,
        skipped: Some(why),
        ..CleanStats::default()
    };
    if !has_compact(&config.cleanup_policy) {
        let why = format!("cleanup.policy={} has no compact", config.cleanup_policy);
        events::cleaner_skipped(log.path(), &why);
        return Ok(skipped(cleanable(log, now_ms)?.first_dirty_offset, why));
    }
    if map_bytes < MIN_MAP_BYTES {
        return Err(Error::InvalidConfig(format!(
            "log.cleaner.dedupe.buffer.size must be at least {MIN_MAP_BYTES} bytes, got {map_bytes}"
        )));
    }
    let Some(_lock) = log.cleaner_lock(wait)? else {
        return Ok(skipped(
            cleanable(log, now_ms)?.first_dirty_offset,
            "another cleaner holds the lock".to_owned(),
        ));
    };
    log.remove_stale_cleaner_files()?;
    let first = cleanable(log, now_ms)?;
    let mut stats = CleanStats {
        clean_offset: first.first_dirty_offset,
        ..CleanStats::default()
    };
    if !force && !first.due {
        stats.skipped = Some("not due".to_owned());
    } else if first.first_dirty_offset >= first.first_uncleanable_offset {
        stats.skipped = Some("nothing to clean".to_owned());
    } else {
        let mut scratch = PassScratch::default();
        loop {
            let view = log.cleaner_view()?;
            let c = cleanable_from(&view, log.read_cleaner_checkpoint()?, config, now_ms);
            if c.first_dirty_offset >= c.first_uncleanable_offset {
                break;
            }
            let started = Instant::now();
            let mut pass = PassStats::default();
            let end = run_pass(
                log,
                &view,
                c.first_dirty_offset,
                c.first_uncleanable_offset,
                now_ms,
                map_bytes,
                stop,
                &mut scratch,
                &mut pass,
            );
            stats.add(&pass);
            match end? {
                PassEnd::Done(end) => {
                    log.write_cleaner_checkpoint(end)?;
                    log.pause_point("clean-checkpointed");
                    stats.passes += 1;
                    stats.clean_offset = end;
                    events::cleaner_pass_done(
                        log.path(),
                        stats.passes,
                        pass.segments,
                        pass.bytes_read,
                        pass.bytes_written,
                        pass.counts.records,
                        pass.counts.kept,
                        pass.counts.tombstones_removed,
                        started.elapsed().as_secs_f64(),
                    );
                }
                PassEnd::Stopped => {
                    stats.skipped = Some("cancelled".to_owned());
                    return Ok(stats);
                }
                // another process replaced segments under us: what was swapped stays, the
                // checkpoint stays, and the next call starts over from it
                PassEnd::Changed => break,
            }
        }
    }
    // Kafka's cleaner thread runs deleteOldSegments for every compacted log (the cleaner lock
    // is already held)
    log.apply_retention_locked(now_ms)?;
    Ok(stats)
}

#[cfg(test)]
mod tests;
