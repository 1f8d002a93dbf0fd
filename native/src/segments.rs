//! The segments of one partition, ordered by base offset, and the names of their files: the
//! twin of `pylog/reference/segments.py`, after Kafka's `LogSegments`
//! (storage/src/main/java/org/apache/kafka/storage/internals/log/LogSegments.java: the ordered
//! collection with floor lookups) and `LogFileUtils` (…/log/LogFileUtils.java: file names and
//! suffixes). The log cleaner will select, swap and delete segments through this.
//!
//! Invariants: base offsets strictly increase; the last segment is the active one (the only one
//! not sealed); the collection is never empty while a log is open (an empty directory gets
//! segment 0). Not thread-safe by itself: the log's state mutex guards it.

use std::ops::{Deref, DerefMut};

use crate::segment::Segment;

/// Suffixes of a segment's files (Kafka's `LogFileUtils`).
pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Added to a segment file scheduled for deletion, being cleaned, or swapped in by the cleaner;
/// recovery finishes or drops each (recovery.rs).
pub const DELETED_SUFFIX: &str = ".deleted";
pub const CLEANED_SUFFIX: &str = ".cleaned";
pub const SWAP_SUFFIX: &str = ".swap";

/// `{base:020}{suffix}` (Kafka's `LogFileUtils.filenamePrefixFromOffset` + suffix).
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset of a segment-family name `{base:020}.{rest}` and the rest after the dot,
/// or None when the name is not ours.
pub fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (prefix, rest) = name.split_once('.')?;
    if prefix.len() != 20 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix.parse().ok()?, rest))
}

/// The ordered segments (dereferences to the slice for iteration and indexing).
#[derive(Debug, Default)]
pub struct Segments {
    segments: Vec<Segment>,
}

impl Segments {
    pub fn new() -> Segments {
        Segments::default()
    }

    /// Add a segment after the others (a roll, or a load in base order).
    pub fn push(&mut self, segment: Segment) {
        if let Some(last) = self.segments.last() {
            assert!(
                segment.base_offset > last.base_offset,
                "segment {} pushed after {}",
                segment.base_offset,
                last.base_offset
            );
        }
        self.segments.push(segment);
    }

    pub fn clear(&mut self) {
        self.segments.clear();
    }

    /// Take the segments out (leaving the collection empty).
    pub fn take(&mut self) -> Vec<Segment> {
        std::mem::take(&mut self.segments)
    }

    /// Replace every segment by `segments` (sorted here: callers may assemble them in any order).
    pub fn replace(&mut self, mut segments: Vec<Segment>) {
        segments.sort_by_key(|s| s.base_offset);
        self.segments = segments;
    }

    /// The active (last) segment.
    pub fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log has at least one segment")
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log has at least one segment")
    }

    /// Index of the segment holding `offset`: the last one with base <= offset (the first one
    /// when `offset` is below every base) — Kafka's `LogSegments.floorSegment`.
    pub fn floor_index(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Base offsets in order.
    pub fn base_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.segments.iter().map(|s| s.base_offset)
    }
}

impl Deref for Segments {
    type Target = [Segment];
    fn deref(&self) -> &[Segment] {
        &self.segments
    }
}

impl DerefMut for Segments {
    fn deref_mut(&mut self) -> &mut [Segment] {
        &mut self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_refused() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(
            parse_file_name("00000000000000000042.index.swap"),
            Some((42, "index.swap"))
        );
        assert_eq!(parse_file_name("0042.log"), None);
        assert_eq!(parse_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_file_name(".pylog.shm"), None);
    }

    #[test]
    fn floor_lookup() {
        let dir = std::env::temp_dir().join(format!("pylog-segments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut segs = Segments::new();
        for base in [0, 10, 20] {
            segs.push(Segment::create(&dir, base, &crate::config::LogConfig::default()).unwrap());
        }
        assert_eq!(segs.floor_index(-1), 0);
        assert_eq!(segs.floor_index(9), 0);
        assert_eq!(segs.floor_index(10), 1);
        assert_eq!(segs.floor_index(99), 2);
        assert_eq!(segs.active().base_offset, 20);
        assert_eq!(segs.base_offsets().collect::<Vec<_>>(), vec![0, 10, 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
