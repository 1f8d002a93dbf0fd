//! Sparse offset and time indexes (spec §2.2, §2.3, §2.5, §3.2), as pure functions of the
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
//! entry's timestamp (-1 when there is none). Sealing appends one final time entry by the same
//! rule. In memory offsets are absolute `i64`; the files hold them relative to the segment base.

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
        }
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
        if self.max_ts_so_far > self.last_time_ts() {
            self.times.push(TimeEntry {
                timestamp: self.max_ts_so_far,
                offset: self.offset_of_max_ts,
            });
        }
    }

    /// The final time entry of a segment that becomes inactive (§2.6 onBecomeInactiveSegment).
    pub fn seal(&mut self) {
        self.maybe_append_time();
    }

    /// Largest entry with offset <= target, else `(base, 0)` (§2.2).
    pub fn lookup_offset(&self, target: i64) -> OffsetEntry {
        let i = self.offsets.partition_point(|e| e.offset <= target);
        if i == 0 {
            OffsetEntry {
                offset: self.base_offset,
                position: 0,
            }
        } else {
            self.offsets[i - 1]
        }
    }

    /// Largest entry with timestamp <= target, else `(-1, base)` (§2.3).
    pub fn lookup_time(&self, target_ts: i64) -> TimeEntry {
        let i = self.times.partition_point(|e| e.timestamp <= target_ts);
        if i == 0 {
            TimeEntry {
                timestamp: NO_TIMESTAMP,
                offset: self.base_offset,
            }
        } else {
            self.times[i - 1]
        }
    }

    /// Largest timestamp of a sealed segment: its last time entry, or -1.
    pub fn largest_timestamp(&self) -> i64 {
        self.last_time_ts()
    }

    pub fn offset_index_full(&self, max_entries: u64) -> bool {
        self.offsets.len() as u64 >= max_entries
    }

    pub fn time_index_full(&self, full_entries: u64) -> bool {
        self.times.len() as u64 >= full_entries
    }

    /// Offset entries `from..` encoded for the `.index` file.
    pub fn encode_offsets(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            (self.offsets.len().saturating_sub(from)) * OFFSET_ENTRY_BYTES as usize,
        );
        for e in &self.offsets[from.min(self.offsets.len())..] {
            let rel = e.offset - self.base_offset;
            assert!(
                (0..=i64::from(i32::MAX)).contains(&rel),
                "relative offset {rel} out of range"
            );
            out.extend_from_slice(&(rel as i32).to_be_bytes());
            out.extend_from_slice(&(e.position as i32).to_be_bytes());
        }
        out
    }

    /// Time entries `from..` encoded for the `.timeindex` file.
    pub fn encode_times(&self, from: usize) -> Vec<u8> {
        let mut out =
            Vec::with_capacity((self.times.len().saturating_sub(from)) * TIME_ENTRY_BYTES as usize);
        for e in &self.times[from.min(self.times.len())..] {
            let rel = e.offset - self.base_offset;
            assert!(
                (0..=i64::from(i32::MAX)).contains(&rel),
                "relative offset {rel} out of range"
            );
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&(rel as i32).to_be_bytes());
        }
        out
    }
}

/// Parse `.index` bytes (a ragged tail is ignored).
pub fn decode_offsets(base_offset: i64, bytes: &[u8]) -> Vec<OffsetEntry> {
    bytes
        .chunks_exact(OFFSET_ENTRY_BYTES as usize)
        .map(|c| {
            let rel = i32::from_be_bytes(c[0..4].try_into().unwrap());
            let pos = i32::from_be_bytes(c[4..8].try_into().unwrap());
            OffsetEntry {
                offset: base_offset + i64::from(rel),
                position: pos as u32,
            }
        })
        .collect()
}

/// Parse `.timeindex` bytes (a ragged tail is ignored).
pub fn decode_times(base_offset: i64, bytes: &[u8]) -> Vec<TimeEntry> {
    bytes
        .chunks_exact(TIME_ENTRY_BYTES as usize)
        .map(|c| {
            let ts = i64::from_be_bytes(c[0..8].try_into().unwrap());
            let rel = i32::from_be_bytes(c[8..12].try_into().unwrap());
            TimeEntry {
                timestamp: ts,
                offset: base_offset + i64::from(rel),
            }
        })
        .collect()
}

/// Read a whole index file (missing → empty).
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
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
