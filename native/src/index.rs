//! Sparse offset and time indexes (Kafka's OffsetIndex, TimeIndex, AbstractIndex and LogSegment.append), as pure functions of the
//! segment bytes (docs/partition-log.md "Index rules").
//!
//! ```text
//! .index      8-byte entries: relativeOffset i32 BE | position i32 BE
//! .timeindex 12-byte entries: timestamp i64 BE | relativeOffset i32 BE
//! ```
//! Files are never preallocated: entry count = file length / entry size (a ragged tail is not an
//! entry). Entries are strictly increasing in offset (time index: in both fields).
//!
//! Derivation, batch by batch (`SegmentIndex::observe`): batch *i* at position `p_i` gets entries
//! when `p_i - last_entry_pos > index.interval.bytes`: an offset entry `(lastOffset, p_i)` and a
//! time entry `(maxTsSoFar, offsetOfMaxTsSoFar)` only if `maxTsSoFar` exceeds the last time
//! entry's timestamp (-1 when there is none). The final time entry (`seal`: at roll, at the last
//! closer's close, at the end of a recovery rebuild; Kafka's LogSegment onBecomeInactiveSegment,
//! close and recover, storage/src/main/java/org/apache/kafka/storage/internals/log/LogSegment.java)
//! appends `(maxTsSoFar, offsetOfMaxTsSoFar)` by the same "only if greater" rule. In memory
//! offsets are absolute `i64`; the files hold them relative to the segment base.
//!
//! Loading (`SegmentIndex::load`) is Kafka's sanityCheck made strict: a file that is not a whole
//! number of entries, or whose entries are not strictly increasing, fall outside the segment's
//! offsets, or point outside its `.log`, is refused (the caller rebuilds it from the bytes). A
//! loaded index can then *replay* the segment's batches (`observe`): the file's offset entries
//! are taken as they are (they may be Kafka's, at other points than ours), each one re-offers
//! the time entry of its point (repairing a `.timeindex` a dead writer left one entry short),
//! and derivation continues past the last one. So the file's entries, a close-time final entry
//! included, stay the first entries of the in-memory index, and what a writer appends later
//! follows them. A file entry that does not stand at a batch start is a mismatch
//! (`replay_matched` false): the caller rebuilds.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::batch::BatchHeader;

pub const OFFSET_ENTRY_BYTES: u64 = 8;
pub const TIME_ENTRY_BYTES: u64 = 12;
/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Absolute offset (the lastOffset of the indexed batch).
    pub offset: i64,
    /// Byte position of the batch in the `.log`.
    pub position: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    /// Absolute offset (the lastOffset of the batch where `timestamp` was first seen).
    pub offset: i64,
}

/// What the two index kinds share: a fixed-size big-endian entry whose first field is the sorted
/// key (offset index: the offset; time index: the timestamp), stored relative to the segment base.
/// The codec, the sparse lookup and the whole-entry rule are written once, over this trait.
pub trait IndexEntry: Copy {
    /// Bytes per entry in the file.
    const BYTES: u64;
    /// The sorted key.
    fn key(&self) -> i64;
    /// The answer of a lookup below the first entry (Kafka's AbstractIndex largest lower bound).
    fn below_first(base_offset: i64) -> Self;
    /// Append the file form of this entry (offsets relative to `base_offset`).
    fn encode_into(&self, base_offset: i64, out: &mut Vec<u8>);
    /// Parse one entry of `Self::BYTES` bytes.
    fn decode(base_offset: i64, bytes: &[u8]) -> Self;
}

fn relative(offset: i64, base_offset: i64) -> i32 {
    let rel = offset - base_offset;
    assert!(
        (0..=i64::from(i32::MAX)).contains(&rel),
        "relative offset {rel} out of range"
    );
    rel as i32
}

impl IndexEntry for OffsetEntry {
    const BYTES: u64 = OFFSET_ENTRY_BYTES;
    fn key(&self) -> i64 {
        self.offset
    }
    fn below_first(base_offset: i64) -> Self {
        OffsetEntry {
            offset: base_offset,
            position: 0,
        }
    }
    fn encode_into(&self, base_offset: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&relative(self.offset, base_offset).to_be_bytes());
        out.extend_from_slice(&(self.position as i32).to_be_bytes());
    }
    fn decode(base_offset: i64, c: &[u8]) -> Self {
        let rel = i32::from_be_bytes(c[0..4].try_into().unwrap());
        let pos = i32::from_be_bytes(c[4..8].try_into().unwrap());
        OffsetEntry {
            offset: base_offset + i64::from(rel),
            position: pos as u32,
        }
    }
}

impl IndexEntry for TimeEntry {
    const BYTES: u64 = TIME_ENTRY_BYTES;
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn below_first(base_offset: i64) -> Self {
        TimeEntry {
            timestamp: NO_TIMESTAMP,
            offset: base_offset,
        }
    }
    fn encode_into(&self, base_offset: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&relative(self.offset, base_offset).to_be_bytes());
    }
    fn decode(base_offset: i64, c: &[u8]) -> Self {
        TimeEntry {
            timestamp: i64::from_be_bytes(c[0..8].try_into().unwrap()),
            offset: base_offset + i64::from(i32::from_be_bytes(c[8..12].try_into().unwrap())),
        }
    }
}

/// Entries `from..` in file form.
pub fn encode_entries<E: IndexEntry>(base_offset: i64, entries: &[E], from: usize) -> Vec<u8> {
    let tail = &entries[from.min(entries.len())..];
    let mut out = Vec::with_capacity(tail.len() * E::BYTES as usize);
    for e in tail {
        e.encode_into(base_offset, &mut out);
    }
    debug_assert_eq!(out.len() as u64, tail.len() as u64 * E::BYTES);
    out
}

/// The whole entries of file bytes (a ragged tail is ignored; `load` refuses one).
pub fn decode_entries<E: IndexEntry>(base_offset: i64, bytes: &[u8]) -> Vec<E> {
    bytes
        .chunks_exact(E::BYTES as usize)
        .map(|c| E::decode(base_offset, c))
        .collect()
}

/// Sparse lookup: the largest entry with key <= `target`, else `E::below_first`.
pub fn floor_entry<E: IndexEntry>(entries: &[E], base_offset: i64, target: i64) -> E {
    match entries.partition_point(|e| e.key() <= target) {
        0 => E::below_first(base_offset),
        i => entries[i - 1],
    }
}

/// Offset index entries at which it is full: `segment.index.bytes / 8` (Kafka's maxEntries).
pub fn offset_index_full_entries(segment_index_bytes: u32) -> u64 {
    u64::from(segment_index_bytes) / OFFSET_ENTRY_BYTES
}

/// Time index entries at which it is full: `segment.index.bytes / 12 - 1`; the last slot is
/// kept for the final entry (Kafka's TimeIndex.isFull).
pub fn time_index_full_entries(segment_index_bytes: u32) -> u64 {
    (u64::from(segment_index_bytes) / TIME_ENTRY_BYTES).saturating_sub(1)
}

/// Both indexes of one segment plus the running state that derives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentIndex {
    pub base_offset: i64,
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Position of the last offset entry (0 when there is none).
    pub last_entry_pos: u64,
    /// Largest batch maxTimestamp seen so far (NO_TIMESTAMP before any).
    pub max_ts_so_far: i64,
    /// lastOffset of the batch where `max_ts_so_far` was first seen (-1 before any).
    pub offset_of_max_ts: i64,
    /// Offset entries that came from the file (`load`) and that `observe` replays.
    replay_len: usize,
    /// Next loaded offset entry to meet while replaying.
    replay_cursor: usize,
    /// A loaded offset entry did not stand at a batch start.
    replay_mismatch: bool,
}

impl SegmentIndex {
    pub fn new(base_offset: i64) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            offsets: Vec::new(),
            times: Vec::new(),
            last_entry_pos: 0,
            max_ts_so_far: NO_TIMESTAMP,
            offset_of_max_ts: -1,
            replay_len: 0,
            replay_cursor: 0,
            replay_mismatch: false,
        }
    }

    /// Parse and sanity-check a segment's index files (`log_bytes`: its `.log` length;
    /// `next_offset`: its end when known). The result is ready to replay the segment's batches
    /// (module comment); `Err` says why the files were refused.
    pub fn load(
        base_offset: i64,
        offset_file: &[u8],
        time_file: &[u8],
        log_bytes: u64,
        next_offset: Option<i64>,
    ) -> std::result::Result<SegmentIndex, String> {
        let mut idx = SegmentIndex::new(base_offset);
        idx.offsets = decode_offsets(base_offset, whole_entries(offset_file, OFFSET_ENTRY_BYTES)?);
        idx.times = decode_times(base_offset, whole_entries(time_file, TIME_ENTRY_BYTES)?);
        check_offset_entries(base_offset, &idx.offsets, log_bytes, next_offset)?;
        check_time_entries(base_offset, &idx.times, next_offset)?;
        idx.last_entry_pos = idx.offsets.last().map_or(0, |e| u64::from(e.position));
        idx.replay_len = idx.offsets.len();
        Ok(idx)
    }

    /// After replaying every batch: whether each loaded offset entry stood at a batch start.
    pub fn replay_matched(&self) -> bool {
        !self.replay_mismatch && self.replay_cursor == self.replay_len
    }

    fn last_time_ts(&self) -> i64 {
        self.times.last().map_or(NO_TIMESTAMP, |e| e.timestamp)
    }

    /// Account for the batch `header` starting at `position`; may add one entry to each index.
    pub fn observe(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u32) {
        let last_offset = header.last_offset();
        debug_assert!(
            last_offset >= self.base_offset,
            "batch below the segment base"
        );
        if header.max_timestamp > self.max_ts_so_far {
            self.max_ts_so_far = header.max_timestamp;
            self.offset_of_max_ts = last_offset;
        }
        if self.replay_cursor < self.replay_len {
            let entry = self.offsets[self.replay_cursor];
            let at = u64::from(entry.position);
            if at == position && entry.offset >= last_offset {
                // why re-offer the time entry: `.index` and `.timeindex` are two writes; a writer
                // that died between them left the time entry of this point out.
                self.replay_cursor += 1;
                self.maybe_append_time();
            } else if at <= position {
                self.replay_mismatch = true;
                self.replay_cursor = self.replay_len;
            }
            return;
        }
        if position.saturating_sub(self.last_entry_pos) > u64::from(index_interval_bytes) {
            let position_u32 = u32::try_from(position).expect("segment positions fit in i32");
            assert!(position_u32 <= i32::MAX as u32);
            debug_assert!(self.offsets.last().is_none_or(|e| e.offset < last_offset));
            self.offsets.push(OffsetEntry {
                offset: last_offset,
                position: position_u32,
            });
            self.last_entry_pos = position;
            self.maybe_append_time();
        }
    }

    fn maybe_append_time(&mut self) {
        // why the offset check: loaded entries (Kafka's) may name record offsets; an entry must
        // not go back in offset even when its timestamp is larger.
        let after_last = self
            .times
            .last()
            .is_none_or(|e| self.offset_of_max_ts > e.offset);
        if self.max_ts_so_far > self.last_time_ts() && after_last {
            self.times.push(TimeEntry {
                timestamp: self.max_ts_so_far,
                offset: self.offset_of_max_ts,
            });
        }
    }

    /// The final time entry: a segment stops being active (roll), is closed by the last
    /// closer, or was rebuilt by recovery (Kafka's onBecomeInactiveSegment, close, recover).
    pub fn seal(&mut self) {
        self.maybe_append_time();
    }

    /// Largest entry with offset <= target, else `(base, 0)` (§2.2).
    pub fn lookup_offset(&self, target: i64) -> OffsetEntry {
        floor_entry(&self.offsets, self.base_offset, target)
    }

    /// Largest entry with timestamp <= target, else `(-1, base)` (§2.3).
    pub fn lookup_time(&self, target_ts: i64) -> TimeEntry {
        floor_entry(&self.times, self.base_offset, target_ts)
    }

    /// Largest timestamp of a sealed segment: its last time entry, or -1.
    pub fn largest_timestamp(&self) -> i64 {
        self.last_time_ts()
    }

    /// Roll rule 3: either index is full for `segment.index.bytes` (the one owner of the
    /// thresholds, `offset_index_full_entries` / `time_index_full_entries`).
    pub fn is_full(&self, segment_index_bytes: u32) -> bool {
        self.offsets.len() as u64 >= offset_index_full_entries(segment_index_bytes)
            || self.times.len() as u64 >= time_index_full_entries(segment_index_bytes)
    }

    /// Offset entries `from..` encoded for the `.index` file.
    pub fn encode_offsets(&self, from: usize) -> Vec<u8> {
        encode_entries(self.base_offset, &self.offsets, from)
    }

    /// Time entries `from..` encoded for the `.timeindex` file.
    pub fn encode_times(&self, from: usize) -> Vec<u8> {
        encode_entries(self.base_offset, &self.times, from)
    }
}

/// The one whole-entry rule: a file that is not a whole number of entries is refused on load.
fn whole_entries(bytes: &[u8], entry_bytes: u64) -> std::result::Result<&[u8], String> {
    if !(bytes.len() as u64).is_multiple_of(entry_bytes) {
        return Err(format!(
            "{} bytes is not a whole number of {entry_bytes}-byte entries",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Whether an entry's `offset` lies in the segment's `[base, next)` (`next` unknown: no bound).
fn in_segment(offset: i64, base_offset: i64, next_offset: Option<i64>) -> bool {
    offset >= base_offset && next_offset.is_none_or(|n| offset < n)
}

/// Offset entries: strictly increasing in offset and position, offsets in `[base, next)`,
/// positions inside the `.log`.
pub fn check_offset_entries(
    base_offset: i64,
    entries: &[OffsetEntry],
    log_bytes: u64,
    next_offset: Option<i64>,
) -> std::result::Result<(), String> {
    let mut previous: Option<&OffsetEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        if !in_segment(e.offset, base_offset, next_offset) {
            return Err(format!(
                "offset entry {i}: offset {} outside the segment",
                e.offset
            ));
        }
        if u64::from(e.position) >= log_bytes || e.position > i32::MAX as u32 {
            return Err(format!(
                "offset entry {i}: position {} outside the {log_bytes}-byte log",
                e.position
            ));
        }
        if let Some(p) = previous {
            if e.offset <= p.offset || e.position <= p.position {
                return Err(format!("offset entry {i} does not follow the one before"));
            }
        }
        previous = Some(e);
    }
    Ok(())
}

/// Time entries: strictly increasing in both fields, offsets in `[base, next)`.
pub fn check_time_entries(
    base_offset: i64,
    entries: &[TimeEntry],
    next_offset: Option<i64>,
) -> std::result::Result<(), String> {
    let mut previous: Option<&TimeEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        if !in_segment(e.offset, base_offset, next_offset) {
            return Err(format!(
                "time entry {i}: offset {} outside the segment",
                e.offset
            ));
        }
        if let Some(p) = previous {
            if e.timestamp <= p.timestamp || e.offset <= p.offset {
                return Err(format!("time entry {i} does not follow the one before"));
            }
        }
        previous = Some(e);
    }
    Ok(())
}

/// Parse `.index` bytes (a ragged tail is ignored).
pub fn decode_offsets(base_offset: i64, bytes: &[u8]) -> Vec<OffsetEntry> {
    decode_entries(base_offset, bytes)
}

/// Parse `.timeindex` bytes (a ragged tail is ignored).
pub fn decode_times(base_offset: i64, bytes: &[u8]) -> Vec<TimeEntry> {
    decode_entries(base_offset, bytes)
}

/// Replace an index file by rename (a rebuilt sealed index): a process reading the old file
/// keeps reading it whole, a later one reads the new one whole.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let f = File::create(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Overwrite an index file's contents in place (the active segment's, under the writer lock:
/// other writers keep descriptors on it, so it must stay the same file).
pub fn rewrite_in_place(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all_at(bytes, 0)?;
    f.set_len(bytes.len() as u64)
}

/// Write `bytes` at entry number `entries_in_file` (positional, so concurrent readers of the
/// file never see a moving file position).
pub fn append_at(
    file: &File,
    entries_in_file: u64,
    entry_bytes: u64,
    bytes: &[u8],
) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    debug_assert_eq!(bytes.len() as u64 % entry_bytes, 0);
    file.write_all_at(bytes, entries_in_file * entry_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base: i64, count: i32, max_ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: max_ts,
            max_timestamp: max_ts,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: count,
        }
    }

    #[test]
    fn derivation_follows_kafka_interval_rule() {
        // batches of 112 bytes, interval 200: entries at p=224 (224-0 > 200), p=448 (448-224 > 200)...
        let mut idx = SegmentIndex::new(100);
        let ts = [5, 3, 9, 9, 2, 12];
        for (i, t) in ts.iter().enumerate() {
            idx.observe(i as u64 * 112, &header(100 + 2 * i as i64, 2, *t), 200);
        }
        assert_eq!(
            idx.offsets,
            vec![
                OffsetEntry {
                    offset: 105,
                    position: 224
                },
                OffsetEntry {
                    offset: 109,
                    position: 448
                }
            ]
        );
        // at p=224 max is 9 first seen in batch 2 (lastOffset 105); at p=448 still 9 → no entry
        assert_eq!(
            idx.times,
            vec![TimeEntry {
                timestamp: 9,
                offset: 105
            }]
        );
        idx.seal();
        assert_eq!(
            idx.times.last(),
            Some(&TimeEntry {
                timestamp: 12,
                offset: 111
            })
        );
        assert_eq!(idx.largest_timestamp(), 12);
        idx.seal();
        assert_eq!(idx.times.len(), 2, "seal is 'only if greater'");
    }

    #[test]
    fn interval_zero_indexes_every_batch_but_the_first() {
        let mut idx = SegmentIndex::new(0);
        for i in 0..4 {
            idx.observe(i * 70, &header(i as i64, 1, -1), 0);
        }
        assert_eq!(idx.offsets.len(), 3);
        assert!(idx.times.is_empty(), "no timestamps, no time entries");
        idx.seal();
        assert!(idx.times.is_empty());
    }

    #[test]
    fn lookups() {
        let mut idx = SegmentIndex::new(10);
        idx.offsets = vec![
            OffsetEntry {
                offset: 15,
                position: 100,
            },
            OffsetEntry {
                offset: 30,
                position: 900,
            },
        ];
        idx.times = vec![
            TimeEntry {
                timestamp: 50,
                offset: 15,
            },
            TimeEntry {
                timestamp: 80,
                offset: 30,
            },
        ];
        assert_eq!(
            idx.lookup_offset(9),
            OffsetEntry {
                offset: 10,
                position: 0
            }
        );
        assert_eq!(
            idx.lookup_offset(14),
            OffsetEntry {
                offset: 10,
                position: 0
            }
        );
        assert_eq!(
            idx.lookup_offset(15),
            OffsetEntry {
                offset: 15,
                position: 100
            }
        );
        assert_eq!(
            idx.lookup_offset(29),
            OffsetEntry {
                offset: 15,
                position: 100
            }
        );
        assert_eq!(
            idx.lookup_offset(1000),
            OffsetEntry {
                offset: 30,
                position: 900
            }
        );
        assert_eq!(
            idx.lookup_time(49),
            TimeEntry {
                timestamp: -1,
                offset: 10
            }
        );
        assert_eq!(
            idx.lookup_time(50),
            TimeEntry {
                timestamp: 50,
                offset: 15
            }
        );
        assert_eq!(
            idx.lookup_time(79),
            TimeEntry {
                timestamp: 50,
                offset: 15
            }
        );
        assert_eq!(
            idx.lookup_time(i64::MAX),
            TimeEntry {
                timestamp: 80,
                offset: 30
            }
        );
    }

    #[test]
    fn load_checks_and_replays_the_files() {
        // batches of 112 bytes at 0, 112, 224...; interval 200 (entries at 224, 448, ...)
        let mut idx = SegmentIndex::new(100);
        let ts = [5, 3, 9, 9, 2, 12];
        for (i, t) in ts.iter().enumerate() {
            idx.observe(i as u64 * 112, &header(100 + 2 * i as i64, 2, *t), 200);
        }
        idx.seal(); // a close: (12, 111) follows (9, 105)
        let (o, t) = (idx.encode_offsets(0), idx.encode_times(0));
        let mut loaded = SegmentIndex::load(100, &o, &t, 6 * 112, None).unwrap();
        for (i, t) in ts.iter().enumerate() {
            loaded.observe(i as u64 * 112, &header(100 + 2 * i as i64, 2, *t), 200);
        }
        assert!(loaded.replay_matched());
        assert_eq!(
            loaded.times, idx.times,
            "the close entry stays; nothing re-added"
        );
        // appending after the reopen: no time entry until the max rises above 12
        loaded.observe(6 * 112, &header(112, 2, 11), 200);
        loaded.observe(7 * 112, &header(114, 2, 11), 200);
        assert_eq!(loaded.offsets.len(), 3);
        assert_eq!(loaded.times.len(), 2);
        loaded.observe(8 * 112, &header(116, 2, 20), 200);
        loaded.observe(9 * 112, &header(118, 2, 20), 200);
        assert_eq!(loaded.times.last().map(|e| e.timestamp), Some(20));

        // refused: ragged, out of order, outside the segment or the log
        assert!(SegmentIndex::load(100, &o[..7], &t, 6 * 112, None).is_err());
        assert!(SegmentIndex::load(100, &o, &t[..13], 6 * 112, None).is_err());
        assert!(SegmentIndex::load(100, &o, &t, 300, None).is_err());
        assert!(SegmentIndex::load(100, &o, &t, 6 * 112, Some(105)).is_err());
        let mut swapped = o[8..16].to_vec();
        swapped.extend_from_slice(&o[0..8]);
        assert!(SegmentIndex::load(100, &swapped, &t, 6 * 112, None).is_err());

        // an entry that is not at a batch start: a mismatch the caller rebuilds
        let mut off = idx.clone();
        off.offsets[0].position += 1;
        let mut bad = SegmentIndex::load(100, &off.encode_offsets(0), &t, 6 * 112, None).unwrap();
        for (i, t) in ts.iter().enumerate() {
            bad.observe(i as u64 * 112, &header(100 + 2 * i as i64, 2, *t), 200);
        }
        assert!(!bad.replay_matched());
    }

    #[test]
    fn full_thresholds_are_kafkas() {
        assert_eq!(offset_index_full_entries(10 << 20), 1_310_720);
        assert_eq!(time_index_full_entries(10 << 20), 873_812);
        let mut idx = SegmentIndex::new(0);
        idx.times.push(TimeEntry {
            timestamp: 1,
            offset: 0,
        });
        assert!(
            idx.is_full(24),
            "24 bytes: one time entry plus the final one's slot"
        );
        assert!(!idx.is_full(36));
    }

    #[test]
    fn file_round_trip() {
        let mut idx = SegmentIndex::new(1000);
        idx.offsets = vec![OffsetEntry {
            offset: 1005,
            position: 4200,
        }];
        idx.times = vec![TimeEntry {
            timestamp: 1_700_000_000_000,
            offset: 1003,
        }];
        let o = idx.encode_offsets(0);
        let t = idx.encode_times(0);
        assert_eq!(o, [0, 0, 0, 5, 0, 0, 0x10, 0x68]);
        assert_eq!(t.len(), 12);
        assert_eq!(decode_offsets(1000, &o), idx.offsets);
        assert_eq!(decode_times(1000, &t), idx.times);
        let mut ragged = o.clone();
        ragged.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_offsets(1000, &ragged).len(), 1);
    }
}
