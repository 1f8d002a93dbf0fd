//! Unit tests of the cleaner: the pure steps over bytes (map, grouping, the batch filter and
//! rebuild) and whole `compact` calls on a real `PartitionLog` in a temporary directory.

use super::*;
use crate::batch::{decode_batch, encode_batch, verify_crc};
use crate::config::ConfigValue;
use crate::offset_map::digest;
use crate::record::RecordSpec;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("pylog-cleaner-{}-{n}/topic-0", std::process::id()));
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// A record: (key, value) with `None` for null; timestamps are `ts0 + i`.
type Rec<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn batch_of(base: i64, recs: &[Rec<'_>], ts0: i64, codec: Codec) -> Vec<u8> {
    let specs: Vec<RecordSpec<'_>> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| RecordSpec {
            timestamp: ts0 + i as i64,
            key: *k,
            value: *v,
            headers: &[],
        })
        .collect();
    let mut out = Vec::new();
    encode_batch(&mut out, &mut Vec::new(), base, &specs, codec, None).unwrap();
    out
}

/// Decoded records of one batch: (offset, timestamp, key, value).
type Decoded = Vec<(i64, i64, Option<Vec<u8>>, Option<Vec<u8>>)>;

fn decode(batch: &[u8]) -> (BatchHeader, Decoded) {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let h = decode_batch(batch, &mut scratch, |r| {
        out.push((
            r.offset,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
        ));
        Ok(())
    })
    .unwrap();
    (h, out)
}

fn map_of(entries: &[(&[u8], i64)]) -> OffsetMap {
    let mut m = OffsetMap::new(4096).unwrap();
    for (k, o) in entries {
        m.put(&digest(k), *o).unwrap();
    }
    m
}

fn rules(map: &OffsetMap, latest: i64, now_ms: i64) -> FilterRules<'_> {
    FilterRules {
        map,
        first_dirty: 0,
        latest,
        now_ms,
        delete_retention_ms: 100,
    }
}

#[test]
fn unchanged_batch_is_copied() {
    let b = batch_of(
        10,
        &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2"))],
        1000,
        Codec::None,
    );
    let map = map_of(&[(b"a", 10), (b"b", 11)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    let action = filter_batch(&b, &rules(&map, 11, 0), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Copy);
    assert_eq!(
        c,
        RecordCounts {
            records: 2,
            kept: 2,
            tombstones_removed: 0
        }
    );
}

#[test]
fn superseded_records_go_and_the_batch_keeps_its_offsets() {
    // offsets 10..=13; a superseded at 12, c superseded beyond this batch, d beyond the map
    let b = batch_of(
        10,
        &[
            (Some(b"a"), Some(b"1")),
            (Some(b"b"), Some(b"2")),
            (Some(b"a"), Some(b"3")),
            (Some(b"c"), Some(b"4")),
        ],
        1000,
        Codec::None,
    );
    let map = map_of(&[(b"a", 12), (b"b", 11), (b"c", 50)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    let action = filter_batch(&b, &rules(&map, 60, 0), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Rebuilt);
    assert_eq!(
        c,
        RecordCounts {
            records: 4,
            kept: 2,
            tombstones_removed: 0
        }
    );
    verify_crc(&s.out).unwrap();
    let (h, recs) = decode(&s.out);
    assert_eq!(
        (h.base_offset, h.last_offset(), h.records_count),
        (10, 13, 2)
    );
    assert_eq!(h.base_timestamp, 1001); // the first kept record's
    assert_eq!(h.max_timestamp, 1002);
    assert_eq!(h.attributes, 0);
    assert_eq!(
        recs,
        vec![
            (11, 1001, Some(b"b".to_vec()), Some(b"2".to_vec())),
            (12, 1002, Some(b"a".to_vec()), Some(b"3".to_vec())),
        ]
    );
    // the same records written by the reference rule, byte for byte: epoch, producer fields
    let orig = BatchHeader::parse(&b).unwrap();
    assert_eq!(
        (
            h.partition_leader_epoch,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence
        ),
        (
            orig.partition_leader_epoch,
            orig.producer_id,
            orig.producer_epoch,
            orig.base_sequence
        )
    );
}

#[test]
fn records_beyond_the_map_are_kept_and_keyless_ones_dropped() {
    let b = batch_of(
        0,
        &[
            (None, Some(b"x")),
            (Some(b"k"), Some(b"1")),
            (None, Some(b"y")),
        ],
        5,
        Codec::None,
    );
    let map = map_of(&[(b"k", 1)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    // latest = 1: offset 2 is beyond the map (kept even without a key), offset 0 is not
    let action = filter_batch(&b, &rules(&map, 1, 0), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Rebuilt);
    let (_, recs) = decode(&s.out);
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    // an absent key (map -1) is kept
    let map = map_of(&[]);
    let b = batch_of(0, &[(Some(b"z"), Some(b"1"))], 5, Codec::None);
    let action = filter_batch(&b, &rules(&map, 5, 0), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Copy);
}

#[test]
fn an_emptied_batch_is_dropped_except_the_groups_last() {
    let b = batch_of(
        20,
        &[(Some(b"a"), Some(b"1")), (Some(b"a"), Some(b"2"))],
        7000,
        Codec::Gzip,
    );
    let map = map_of(&[(b"a", 99)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    let action = filter_batch(&b, &rules(&map, 100, 0), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Drop);
    assert_eq!(
        c,
        RecordCounts {
            records: 2,
            kept: 0,
            tombstones_removed: 0
        }
    );
    let action = filter_batch(&b, &rules(&map, 100, 0), true, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Rebuilt);
    assert_eq!(s.out.len(), BATCH_HEADER_BYTES);
    verify_crc(&s.out).unwrap();
    let (h, recs) = decode(&s.out);
    assert!(recs.is_empty());
    assert_eq!(
        (h.base_offset, h.last_offset(), h.records_count),
        (20, 21, 0)
    );
    assert_eq!((h.base_timestamp, h.max_timestamp), (7001, 7001));
    assert_eq!(h.attributes, 0, "codec dropped: no records area");
}

#[test]
fn tombstone_gets_a_horizon_then_goes() {
    let b = batch_of(
        0,
        &[(Some(b"a"), Some(b"1")), (Some(b"t"), None)],
        500,
        Codec::None,
    );
    let map = map_of(&[(b"a", 0), (b"t", 1)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    // first pass at now = 1000: the kept tombstone needs a horizon = 1000 + 100
    let action = filter_batch(&b, &rules(&map, 1, 1000), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Rebuilt);
    let first = s.out.clone();
    let (h, recs) = decode(&first);
    assert_eq!(h.attributes & DELETE_HORIZON_MASK, DELETE_HORIZON_MASK);
    assert_eq!(h.base_timestamp, 1100);
    assert_eq!(h.max_timestamp, 501);
    // record timestamps survive the re-basing
    assert_eq!(recs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![500, 501]);
    // before the horizon: copied unchanged (the horizon is already there)
    let action = filter_batch(&first, &rules(&map, 1, 1099), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Copy);
    // at the horizon: the tombstone goes, the horizon stays
    let mut c = RecordCounts::default();
    let action = filter_batch(&first, &rules(&map, 1, 1100), false, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Rebuilt);
    assert_eq!(
        c,
        RecordCounts {
            records: 2,
            kept: 1,
            tombstones_removed: 1
        }
    );
    let (h, recs) = decode(&s.out);
    assert_eq!(h.base_timestamp, 1100);
    assert_eq!(h.attributes & DELETE_HORIZON_MASK, DELETE_HORIZON_MASK);
    assert_eq!(
        recs,
        vec![(0, 500, Some(b"a".to_vec()), Some(b"1".to_vec()))]
    );
    assert_eq!(h.last_offset(), 1);
}

#[test]
fn compressed_batches_are_recompressed_with_their_codec() {
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
            .map(|i| (format!("k{}", i % 5).into_bytes(), vec![i as u8; 30]))
            .collect();
        let view: Vec<Rec<'_>> = recs
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
            .collect();
        let b = batch_of(100, &view, 1, codec);
        let map = map_of(&[
            (b"k0", 145),
            (b"k1", 146),
            (b"k2", 147),
            (b"k3", 148),
            (b"k4", 149),
        ]);
        let mut s = PassScratch::default();
        let mut c = RecordCounts::default();
        let action = filter_batch(&b, &rules(&map, 149, 0), false, false, &mut s, &mut c).unwrap();
        assert_eq!(action, BatchAction::Rebuilt, "{codec:?}");
        let (h, out) = decode(&s.out);
        assert_eq!(h.codec_id(), codec.id());
        assert_eq!(
            out.iter().map(|r| r.0).collect::<Vec<_>>(),
            (145..150).collect::<Vec<_>>()
        );
        assert_eq!((h.base_offset, h.last_offset()), (100, 149));
    }
}

#[test]
fn control_batches_are_copied() {
    let mut b = batch_of(
        0,
        &[(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]))],
        1,
        Codec::None,
    );
    // mark it a transactional control batch (the CRC covers the attributes)
    b[22] |= (CONTROL_MASK | TRANSACTIONAL_MASK) as u8;
    batch::write_crc(&mut b);
    let map = map_of(&[]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    let action = filter_batch(&b, &rules(&map, 10, 0), true, false, &mut s, &mut c).unwrap();
    assert_eq!(action, BatchAction::Copy);
    assert_eq!(c, RecordCounts::default());
}

#[test]
fn a_corrupt_batch_is_an_error_not_a_rebuild() {
    let mut b = batch_of(
        0,
        &[(Some(b"a"), Some(b"1")), (Some(b"a"), Some(b"2"))],
        1,
        Codec::None,
    );
    let n = b.len();
    b[n - 1] ^= 0xFF;
    let map = map_of(&[(b"a", 1)]);
    let mut s = PassScratch::default();
    let mut c = RecordCounts::default();
    let err = filter_batch(&b, &rules(&map, 1, 0), false, false, &mut s, &mut c).unwrap_err();
    assert!(
        matches!(
            err,
            Error::CorruptBatch {
                kind: CorruptKind::Crc,
                ..
            }
        ),
        "{err:?}"
    );
}

fn seg<'a>(base: i64, next: i64, bytes: &'a [u8], oi: u64, ti: u64) -> SegmentRef<'a> {
    SegmentRef {
        base,
        next_base: next,
        bytes,
        path: Path::new("x.log"),
        offset_index_bytes: oi,
        time_index_bytes: ti,
    }
}

#[test]
fn grouping_limits() {
    let b100 = vec![0u8; 100];
    let segs = [
        seg(0, 10, &b100, 8, 12),
        seg(10, 20, &b100, 8, 12),
        seg(20, 30, &b100, 8, 12),
        seg(30, 40, &b100, 8, 12),
    ];
    // by log bytes: 250 holds two segments
    assert_eq!(group_segments(&segs, 40, 250, 1 << 20), vec![0..2, 2..4]);
    assert_eq!(group_segments(&segs, 40, 400, 1 << 20), vec![0..4]);
    assert_eq!(group_segments(&segs, 40, 399, 1 << 20), vec![0..3, 3..4]);
    // by index bytes: time index 12 per segment, 24 allowed -> pairs
    assert_eq!(group_segments(&segs, 40, 1 << 20, 24), vec![0..2, 2..4]);
    assert_eq!(
        group_segments(&segs, 40, 1 << 20, 16),
        vec![0..1, 1..2, 2..3, 3..4]
    );
    // by offsets: a group may span at most 2^31 offsets from its first base
    let big = i32::MAX as i64;
    let segs = [
        seg(0, 10, &b100, 0, 0),
        seg(10, big, &b100, 0, 0),
        seg(big, big + 10, &b100, 0, 0),
    ];
    // the second segment ends at big - 1 (fits), the third at big + 9 (does not)
    assert_eq!(
        group_segments(&segs, big + 10, 1 << 20, 1 << 20),
        vec![0..2, 2..3]
    );
    // the last segment is bounded by `end`
    assert_eq!(
        group_segments(&segs[..2], big + 1, 1 << 20, 1 << 20),
        vec![0..2]
    );
    assert_eq!(
        group_segments(&segs[..2], big + 2, 1 << 20, 1 << 20),
        vec![0..1, 1..2]
    );
    assert!(group_segments(&[], 0, 1, 1).is_empty());
}

#[test]
fn map_building_fills_and_skips_below_first_dirty() {
    let mut s0 = batch_of(
        0,
        &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2"))],
        1,
        Codec::None,
    );
    s0.extend(batch_of(2, &[(Some(b"c"), Some(b"3"))], 1, Codec::None));
    let s1 = batch_of(
        5,
        &[(Some(b"a"), Some(b"4")), (Some(b"d"), Some(b"5"))],
        1,
        Codec::None,
    );
    let segs = [seg(0, 5, &s0, 0, 0), seg(5, 9, &s1, 0, 0)];
    let never = || false;
    // whole range, map large enough: end = next base of the last mapped segment
    let mut m = OffsetMap::new(4096).unwrap();
    let end = build_offset_map(&segs, 0, 9, &mut m, &mut PassScratch::default(), &never).unwrap();
    assert_eq!(end, Some(9));
    assert_eq!(
        (m.get(&digest(b"a")), m.get(&digest(b"c")), m.len()),
        (5, 2, 4)
    );
    // first dirty 2: a and b below it are not put
    let mut m = OffsetMap::new(4096).unwrap();
    let end = build_offset_map(&segs, 2, 5, &mut m, &mut PassScratch::default(), &never).unwrap();
    assert_eq!(end, Some(5));
    assert_eq!(
        (m.get(&digest(b"a")), m.get(&digest(b"c")), m.len()),
        (-1, 2, 1)
    );
    // a full map stops before the put that would exceed max_entries (37 for 1024 bytes)
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("key{i}").into_bytes()).collect();
    let recs: Vec<Rec<'_>> = keys
        .iter()
        .map(|k| (Some(k.as_slice()), Some(&b"v"[..])))
        .collect();
    let big = batch_of(0, &recs, 1, Codec::None);
    let segs = [seg(0, 40, &big, 0, 0)];
    let mut m = OffsetMap::new(1024).unwrap();
    let end = build_offset_map(&segs, 0, 40, &mut m, &mut PassScratch::default(), &never).unwrap();
    assert_eq!(m.len(), 37);
    assert_eq!(end, Some(37)); // offsets 0..=36 were put
                               // stop is honoured before the first segment
    let mut m = OffsetMap::new(1024).unwrap();
    let end =
        build_offset_map(&segs, 0, 40, &mut m, &mut PassScratch::default(), &|| true).unwrap();
    assert_eq!(end, None);
}

#[test]
fn a_sealed_segment_must_frame_to_its_end() {
    let mut s0 = batch_of(0, &[(Some(b"a"), Some(b"1"))], 1, Codec::None);
    s0.extend_from_slice(&[0u8; 20]);
    let segs = [seg(0, 5, &s0, 0, 0)];
    let mut m = OffsetMap::new(4096).unwrap();
    let err =
        build_offset_map(&segs, 0, 5, &mut m, &mut PassScratch::default(), &|| false).unwrap_err();
    match err {
        Error::CorruptBatch { position, path, .. } => {
            assert_eq!(position, (s0.len() - 20) as u64);
            assert_eq!(path.as_deref(), Some(Path::new("x.log")));
        }
        e => panic!("{e:?}"),
    }
}

// ---- whole compactions on a real log ----

fn compact_config(pairs: &[(&str, i64)]) -> LogConfig {
    let mut c = LogConfig::default();
    c.set("cleanup.policy", &ConfigValue::Str("compact".into()))
        .unwrap();
    c.set("min.cleanable.dirty.ratio", &ConfigValue::Float(0.0))
        .unwrap();
    for (k, v) in pairs {
        c.set(k, &ConfigValue::Int(*v)).unwrap();
    }
    c
}

fn append_kv(log: &PartitionLog, recs: &[(&str, Option<&str>)], ts: i64) {
    let specs: Vec<RecordSpec<'_>> = recs
        .iter()
        .map(|(k, v)| RecordSpec {
            timestamp: ts,
            key: Some(k.as_bytes()),
            value: v.map(str::as_bytes),
            headers: &[],
        })
        .collect();
    log.append_at(&specs, Codec::None, ts).unwrap();
}

/// Every record of the log: (offset, key, value).
fn all_records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let start = log.start_offset().unwrap();
    let end = log.end_offset().unwrap();
    let chunk = log.records_chunk(start, end, u64::MAX).unwrap();
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut next = chunk;
    loop {
        next.decode(&mut scratch, |r| {
            out.push((
                r.offset,
                String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
            ));
            Ok(())
        })
        .unwrap();
        if next.next >= end {
            break;
        }
        next = log.records_chunk(next.next, end, u64::MAX).unwrap();
    }
    out
}

fn never() -> bool {
    false
}

#[test]
fn compact_keeps_the_latest_per_key_at_its_offset() {
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    append_kv(&log, &[("a", Some("1")), ("b", Some("1"))], 10);
    append_kv(&log, &[("a", Some("2")), ("c", Some("1"))], 11);
    log.roll().unwrap();
    append_kv(&log, &[("b", Some("2")), ("a", Some("3"))], 12);
    log.roll().unwrap();
    append_kv(&log, &[("a", Some("4"))], 13); // the active segment: never cleaned
    let stats = compact(&log, 1_000, 1 << 20, true, true, &never).unwrap();
    assert_eq!(stats.skipped, None);
    assert_eq!(stats.passes, 1);
    assert_eq!(stats.clean_offset, 6);
    assert_eq!(stats.segments_cleaned, 2);
    assert_eq!((stats.records_read, stats.records_kept), (6, 3));
    assert_eq!(
        all_records(&log),
        vec![
            (3, "c".into(), Some("1".into())),
            (4, "b".into(), Some("2".into())),
            (5, "a".into(), Some("3".into())),
            (6, "a".into(), Some("4".into())),
        ]
    );
    assert_eq!(log.read_cleaner_checkpoint().unwrap(), Some(6));
    // the two sealed segments became one (grouping), its files are in place
    let names: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log") || n.contains(".cleaned") || n.contains(".swap"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        vec![file_name(0, LOG_SUFFIX), file_name(6, LOG_SUFFIX)]
    );
    // nothing left to do
    let again = compact(&log, 1_000, 1 << 20, true, true, &never).unwrap();
    assert_eq!(again.skipped.as_deref(), Some("nothing to clean"));
    // a reopen (recovery of the cleaned segment) reads the same
    log.close().unwrap();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    assert_eq!(all_records(&log).len(), 4);
}

#[test]
fn a_small_map_takes_several_passes() {
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    // 200 keys twice, then a roll: 400 dirty records, a 1 KiB map holds 37 keys
    for round in 0..2 {
        for i in 0..200 {
            let k = format!("key{i}");
            let v = format!("v{round}");
            append_kv(&log, &[(&k, Some(&v))], 100 + round);
        }
        log.roll().unwrap();
    }
    let stats = compact(&log, 1_000, 1024, true, true, &never).unwrap();
    assert!(stats.passes > 5, "{stats:?}");
    assert_eq!(stats.clean_offset, 400);
    let recs = all_records(&log);
    assert_eq!(recs.len(), 200);
    assert!(recs
        .iter()
        .all(|(o, _, v)| *o >= 200 && v.as_deref() == Some("v1")));
}

#[test]
fn offsets_past_the_superseded_bits_are_decided_by_digest() {
    // a 1 KiB map has 1008 superseded bits: 3000 offsets over 3 keys in one pass go past them
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    for i in 0..3000 {
        let k = format!("key{}", i % 3);
        let v = format!("v{i}");
        append_kv(&log, &[(&k, Some(&v))], 100);
        if i % 700 == 699 {
            log.roll().unwrap();
        }
    }
    log.roll().unwrap();
    let stats = compact(&log, 1_000, 1024, true, true, &never).unwrap();
    assert_eq!(stats.passes, 1);
    assert_eq!(
        all_records(&log),
        vec![
            (2997, "key0".into(), Some("v2997".into())),
            (2998, "key1".into(), Some("v2998".into())),
            (2999, "key2".into(), Some("v2999".into())),
        ]
    );
}

#[test]
fn tombstones_go_after_delete_retention() {
    let d = TempDir::new();
    let cfg = compact_config(&[("delete.retention.ms", 1_000)]);
    let log = PartitionLog::open(&d.0, cfg.clone()).unwrap();
    append_kv(&log, &[("a", Some("1")), ("b", Some("1"))], 10);
    append_kv(&log, &[("a", None)], 11);
    log.roll().unwrap();
    append_kv(&log, &[("c", Some("1"))], 12);
    log.roll().unwrap();
    // first pass: the tombstone stays (its batch gets the horizon 5000 + 1000)
    let s = compact(&log, 5_000, 1 << 20, true, true, &never).unwrap();
    assert_eq!(s.tombstones_removed, 0);
    assert_eq!(
        all_records(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // new dirty data so that another pass runs, before the horizon: still there
    append_kv(&log, &[("d", Some("1"))], 13);
    log.roll().unwrap();
    let s = compact(&log, 5_999, 1 << 20, true, true, &never).unwrap();
    assert_eq!((s.passes, s.tombstones_removed), (1, 0));
    append_kv(&log, &[("e", Some("1"))], 14);
    log.roll().unwrap();
    let s = compact(&log, 6_000, 1 << 20, true, true, &never).unwrap();
    assert_eq!((s.passes, s.tombstones_removed), (1, 1));
    assert_eq!(
        all_records(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 3, 4, 5]
    );
}

#[test]
fn a_delete_policy_is_skipped_and_a_stop_cancels() {
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, LogConfig::default()).unwrap();
    let s = compact(&log, 0, 1 << 20, true, true, &never).unwrap();
    assert_eq!(
        s.skipped.as_deref(),
        Some("cleanup.policy=delete has no compact")
    );
    drop(log);
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    append_kv(&log, &[("a", Some("1")), ("a", Some("2"))], 10);
    log.roll().unwrap();
    let s = compact(&log, 0, 1 << 20, true, true, &|| true).unwrap();
    assert_eq!(s.skipped.as_deref(), Some("cancelled"));
    assert_eq!(all_records(&log).len(), 2);
    assert!(std::fs::read_dir(&d.0).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".cleaned")));
    assert!(matches!(
        compact(&log, 0, 1000, true, true, &never),
        Err(Error::InvalidConfig(_))
    ));
    // not due when the ratio is not exceeded
    let mut cfg = compact_config(&[]);
    cfg.min_cleanable_dirty_ratio = 1.0;
    drop(log);
    let log = PartitionLog::open(&d.0, cfg).unwrap();
    let s = compact(&log, 0, 1 << 20, false, true, &never).unwrap();
    assert_eq!(s.skipped.as_deref(), Some("not due"));
}

/// The speed case, timed by hand (`cargo test --release --lib -- --ignored
/// compaction_speed --nocapture`); the benchmark of record is benchmarks/test_bench_compaction.py.
#[test]
#[ignore]
fn compaction_speed() {
    let d = TempDir::new();
    let log = PartitionLog::open(&d.0, compact_config(&[])).unwrap();
    let value = vec![b'v'; 100];
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("key-{i:06}").into_bytes())
        .collect();
    let per_batch = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let codec = match std::env::var("CODEC").as_deref() {
        Ok("lz4") => Codec::Lz4,
        Ok("zstd") => Codec::Zstd,
        _ => Codec::None,
    };
    let mut i = 0usize;
    while i < 1_000_000 {
        let specs: Vec<RecordSpec<'_>> = (i..i + per_batch)
            .map(|j| RecordSpec {
                timestamp: 1_000 + j as i64,
                key: Some(&keys[j % keys.len()]),
                value: Some(&value),
                headers: &[],
            })
            .collect();
        log.append_at(&specs, codec, 0).unwrap();
        i += per_batch;
    }
    log.roll().unwrap();
    let map_bytes = std::env::var("MAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128 << 20);
    let t = Instant::now();
    let cpu = crate::offset_map::cpu_time();
    let s = compact(&log, 10_000_000, map_bytes, true, true, &never).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu = (crate::offset_map::cpu_time() - cpu).as_secs_f64();
    eprintln!(
        "{s:?}\n{secs:.3} s wall, {cpu:.3} s cpu: {:.0} MB/s of input (wall), {:.0} MB/s (cpu)",
        s.bytes_read as f64 / 1e6 / secs,
        s.bytes_read as f64 / 1e6 / cpu
    );
    assert_eq!(s.records_kept, 100_000);
}
