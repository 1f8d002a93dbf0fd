//! Storage engine tests without Python: open/append/read, roll rules, recovery, swap
//! completion, multi-process tail sync (two `PartitionLog`s on one directory: flock locks belong
//! to the open file description, so they contend like two processes).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use pylog_native::batch::{self as record, BatchHeader};
use pylog_native::compression::Codec;
use pylog_native::config::LogConfig;
use pylog_native::error::Error;
use pylog_native::log::PartitionLog;
use pylog_native::record::RecordSpec;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("pylog-st-{}-{n}/{name}-0", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn config(pairs: &[(&str, i64)]) -> LogConfig {
    let mut c = LogConfig::default();
    for (k, v) in pairs {
        c.set(k, &pylog_native::config::ConfigValue::Int(*v))
            .unwrap();
    }
    c
}

fn append_values(log: &PartitionLog, values: &[&[u8]], ts: i64) -> i64 {
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec {
            timestamp: ts + i as i64,
            key: None,
            value: Some(v),
            headers: &[],
        })
        .collect();
    log.append(&specs, Codec::None).unwrap()
}

fn all_records(log: &PartitionLog) -> Vec<(i64, i64, Vec<u8>)> {
    let start = log.start_offset().unwrap();
    let end = log.end_offset().unwrap();
    let mut out = Vec::new();
    let mut pos = start;
    let mut scratch = Vec::new();
    while pos < end {
        let chunk = log.records_chunk(pos, end, 300).unwrap();
        chunk
            .decode(&mut scratch, |rv| {
                out.push((rv.offset, rv.timestamp, rv.value.unwrap().to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(chunk.next > pos, "records_chunk made progress");
        pos = chunk.next;
    }
    out
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    pylog_native::recovery::segment_bases(dir).unwrap()
}

fn log_file(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Headers of all batches of a segment file: (position, header).
fn batches(path: &Path) -> Vec<(u64, BatchHeader)> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while let record::Frame::Batch(h) = record::frame(&bytes[pos..]) {
        out.push((pos as u64, h));
        pos += h.size_bytes();
    }
    out
}

#[test]
fn append_read_records_round_trip() {
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), config(&[("index.interval.bytes", 100)])).unwrap();
    assert_eq!(
        (log.start_offset().unwrap(), log.end_offset().unwrap()),
        (0, 0)
    );
    assert_eq!(append_values(&log, &[b"a", b"bb", b"ccc"], 1000), 0);
    assert_eq!(append_values(&log, &[b"d"], 2000), 3);
    for i in 0..50 {
        append_values(&log, &[format!("v{i}").as_bytes()], 3000 + i);
    }
    assert_eq!(log.end_offset().unwrap(), 54);
    let recs = all_records(&log);
    assert_eq!(recs.len(), 54);
    assert!(recs.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert_eq!(recs[1], (1, 1001, b"bb".to_vec()));
    // read: whole batches from the one holding the offset
    let buf = log.read(1, 1).unwrap();
    let h = BatchHeader::parse(buf.as_slice()).unwrap();
    assert_eq!((h.base_offset, buf.as_slice().len()), (0, h.size_bytes()));
    let buf = log.read(20, 10_000).unwrap();
    assert_eq!(BatchHeader::parse(buf.as_slice()).unwrap().base_offset, 20);
    assert!(log.read(54, 100).unwrap().as_slice().is_empty());
    assert!(matches!(log.read(55, 100), Err(Error::OffsetOutOfRange(_))));
    assert!(matches!(log.read(-1, 100), Err(Error::OffsetOutOfRange(_))));
    // the index has entries (interval 100) and files match the derivation
    let idx_len = fs::metadata(d.path().join("00000000000000000000.index"))
        .unwrap()
        .len();
    assert!(idx_len > 0 && idx_len.is_multiple_of(8));
    // timestamps
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(2000).unwrap(), Some(3));
    assert_eq!(log.offset_for_timestamp(3010).unwrap(), Some(14));
    assert_eq!(log.offset_for_timestamp(1_000_000).unwrap(), None);
    // columns
    let cols = log.read_columns(2, 5).unwrap();
    assert_eq!(cols.offsets, vec![2, 3, 4, 5, 6]);
    log.close().unwrap();
    log.close().unwrap();
    assert!(matches!(log.end_offset(), Err(Error::Closed(_))));
    assert!(d.path().join(".kafka_cleanshutdown").exists());
    assert_eq!(
        fs::read_to_string(d.path().join("recovery-point-offset-checkpoint")).unwrap(),
        "0\n1\nt 0 54\n"
    );
    let log = PartitionLog::open(d.path(), config(&[("index.interval.bytes", 100)])).unwrap();
    assert!(!d.path().join(".kafka_cleanshutdown").exists());
    assert_eq!(log.end_offset().unwrap(), 54);
    assert_eq!(all_records(&log).len(), 54);
}

#[test]
fn open_errors() {
    let d = TempDir::new("f");
    fs::write(d.path(), b"x").unwrap();
    match PartitionLog::open(d.path(), LogConfig::default()) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory)
        }
        other => panic!("{other:?}"),
    }
    let _ = fs::remove_file(d.path());
}

#[test]
fn size_limits() {
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), config(&[("max.message.bytes", 100)])).unwrap();
    let big = vec![7u8; 200];
    let specs = [RecordSpec {
        timestamp: 1,
        key: None,
        value: Some(&big),
        headers: &[],
    }];
    assert!(matches!(
        log.append(&specs, Codec::None),
        Err(Error::RecordTooLarge(_))
    ));
    assert_eq!(log.end_offset().unwrap(), 0);
    assert_eq!(fs::metadata(log_file(d.path(), 0)).unwrap().len(), 0);
}

#[test]
fn roll_rules() {
    // segment.bytes
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), config(&[("segment.bytes", 200)])).unwrap();
    for i in 0..6 {
        append_values(&log, &[&[i as u8; 30]], 10);
    }
    let bases = segment_bases(d.path());
    assert!(bases.len() >= 3, "{bases:?}");
    for b in &bases {
        assert!(fs::metadata(log_file(d.path(), *b)).unwrap().len() <= 200);
    }
    assert_eq!(all_records(&log).len(), 6);
    // a read in a sealed segment is served from the mapping
    assert_eq!(
        BatchHeader::parse(log.read(0, 1).unwrap().as_slice())
            .unwrap()
            .base_offset,
        0
    );
    drop(log);

    // segment.ms: record time, first batch's maxTimestamp
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), config(&[("segment.ms", 100)])).unwrap();
    append_values(&log, &[b"a"], 1000);
    append_values(&log, &[b"b"], 1100); // 100 is not > 100
    assert_eq!(segment_bases(d.path()), vec![0]);
    append_values(&log, &[b"c"], 1101);
    assert_eq!(segment_bases(d.path()), vec![0, 2]);
    // sealed segment got its final time entry (1100, offset 1)
    let ti = fs::read(d.path().join("00000000000000000000.timeindex")).unwrap();
    assert_eq!(ti.len(), 12);
    assert_eq!(i64::from_be_bytes(ti[..8].try_into().unwrap()), 1100);
    assert_eq!(i32::from_be_bytes(ti[8..].try_into().unwrap()), 1);
    // roll() on an empty active segment does nothing; on a non-empty one seals
    log.roll().unwrap();
    assert_eq!(segment_bases(d.path()), vec![0, 2, 3]);
    log.roll().unwrap();
    assert_eq!(segment_bases(d.path()), vec![0, 2, 3]);
    assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some(1));
    drop(log);

    // index full: segment.index.bytes 16 → 2 offset entries; interval 0 → an entry per batch after the first
    let d = TempDir::new("t");
    let log = PartitionLog::open(
        d.path(),
        config(&[("segment.index.bytes", 16), ("index.interval.bytes", 0)]),
    )
    .unwrap();
    for i in 0..3 {
        append_values(&log, &[b"x"], 10 + i);
    }
    // time index: 16/12 - 1 = 0 → always full: one batch per segment
    assert_eq!(segment_bases(d.path()), vec![0, 1, 2]);
}

/// 12 one-record batches in 300-byte segments (several sealed segments and an active one).
fn twelve_batches_in_small_segments(d: &TempDir) -> (LogConfig, PartitionLog) {
    let cfg = config(&[("segment.bytes", 300)]);
    let log = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    for i in 0..12 {
        append_values(&log, &[format!("value-{i:03}").as_bytes()], 100 + i);
    }
    (cfg, log)
}

/// Unclean shutdown: drop without close (locks go with the files, no marker).
fn crash(log: PartitionLog) {
    drop(log);
}

#[test]
fn recovery_cuts_at_every_byte_of_the_last_batch() {
    let d = TempDir::new("t");
    let cfg = config(&[("index.interval.bytes", 50)]);
    let log = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    for i in 0..5 {
        append_values(&log, &[format!("value-{i}").as_bytes(), b"x"], 100 + i);
    }
    crash(log);
    let path = log_file(d.path(), 0);
    let full = fs::read(&path).unwrap();
    let bs = batches(&path);
    let (last_pos, last) = *bs.last().unwrap();
    let full_idx = fs::read(d.path().join("00000000000000000000.index")).unwrap();
    // the index without the entry of the last batch (if it had one)
    let good_idx: Vec<u8> = full_idx
        .chunks(8)
        .filter(|e| u64::from(u32::from_be_bytes(e[4..8].try_into().unwrap())) < last_pos)
        .flatten()
        .copied()
        .collect();
    assert!(
        good_idx.len() < full_idx.len(),
        "the test wants the last batch indexed"
    );
    for cut in last_pos..last_pos + last.size_bytes() as u64 {
        fs::write(&path, &full[..cut as usize]).unwrap();
        let log = PartitionLog::open(d.path(), cfg.clone()).unwrap();
        assert_eq!(log.end_offset().unwrap(), 8, "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last_pos);
        assert_eq!(all_records(&log).len(), 8);
        crash(log);
        assert_eq!(
            fs::read(d.path().join("00000000000000000000.index")).unwrap(),
            good_idx
        );
    }
}

#[test]
fn recovery_cuts_at_a_flipped_bit_and_deletes_later_segments() {
    let d = TempDir::new("t");
    let (cfg, log) = twelve_batches_in_small_segments(&d);
    let bases = segment_bases(d.path());
    assert!(bases.len() >= 4, "{bases:?}");
    crash(log);
    // flip a bit in the second batch of the second segment
    let victim = log_file(d.path(), bases[1]);
    let bs = batches(&victim);
    let (pos, h) = bs[1];
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&victim)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos + 70).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], pos + 70).unwrap();
    drop(f);
    let log = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    assert_eq!(segment_bases(d.path()), vec![bases[0], bases[1]]);
    assert_eq!(fs::metadata(&victim).unwrap().len(), pos);
    assert_eq!(log.end_offset().unwrap(), h.base_offset);
    for later in &bases[2..] {
        for s in ["log", "index", "timeindex"] {
            assert!(!d.path().join(format!("{later:020}.{s}")).exists());
        }
    }
    // appends continue at the cut
    assert_eq!(append_values(&log, &[b"after"], 500), h.base_offset);
}

#[test]
fn an_interrupted_recovery_leaves_a_log_the_next_open_recovers() {
    let d = TempDir::new("t");
    let (cfg, log) = twelve_batches_in_small_segments(&d);
    let want = all_records(&log);
    let bases = segment_bases(d.path());
    assert!(bases.len() >= 3, "{bases:?}");
    crash(log);
    let files_before: Vec<(PathBuf, Vec<u8>)> = bases
        .iter()
        .map(|b| {
            (
                log_file(d.path(), *b),
                fs::read(log_file(d.path(), *b)).unwrap(),
            )
        })
        .collect();
    // interrupted before the first segment, then after two segment scans
    for allowed in [0u32, 2] {
        let asked = AtomicU32::new(0);
        let stop = || asked.fetch_add(1, Ordering::SeqCst) >= allowed;
        match PartitionLog::open_interruptible(d.path(), cfg.clone(), &stop) {
            Err(Error::Interrupted) => {}
            other => panic!("expected Interrupted, got {:?}", other.map(|_| ())),
        }
        assert!(!d.path().join(".kafka_cleanshutdown").exists());
        for (path, bytes) in &files_before {
            assert_eq!(&fs::read(path).unwrap(), bytes, "{}", path.display());
        }
    }
    // the locks went with the failed open: a normal open recovers and sees every record
    let log = PartitionLog::open(d.path(), cfg).unwrap();
    assert_eq!(all_records(&log), want);
}

#[test]
fn impossible_offsets_in_a_header_are_corruption_not_a_panic() {
    // A clean-shutdown open checks framing, not CRCs: lastOffsetDelta < 0, or a baseOffset
    // below the segment's base, once reached index assertions or gave a negative end offset.
    for (field_pos, value) in [
        (
            record::LAST_OFFSET_DELTA_POS,
            (-5i32).to_be_bytes().to_vec(),
        ),
        (record::BASE_OFFSET_POS, (-1i64).to_be_bytes().to_vec()),
    ] {
        let d = TempDir::new("t");
        let (cfg, log) = twelve_batches_in_small_segments(&d);
        let active = *segment_bases(d.path()).last().unwrap();
        log.close().unwrap();
        let path = log_file(d.path(), active);
        let (pos, _) = batches(&path)[0];
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&value, pos + field_pos as u64).unwrap();
        drop(f);
        match PartitionLog::open(d.path(), cfg) {
            Err(Error::CorruptBatch { path: Some(p), .. }) => assert_eq!(p, path),
            Err(e) => panic!("expected CorruptBatch, got {e}"),
            Ok(log) => panic!("opened with end {:?}", log.end_offset()),
        }
    }
}

#[test]
fn a_reader_keeps_its_view_when_every_segment_file_is_gone() {
    let d = TempDir::new("t");
    let (_, log) = twelve_batches_in_small_segments(&d);
    let end = log.end_offset().unwrap();
    for base in segment_bases(d.path()) {
        fs::remove_file(log_file(d.path(), base)).unwrap();
    }
    // a reader never creates files: it keeps what it has (it used to spin, then fail)
    assert_eq!(log.end_offset().unwrap(), end);
}

#[test]
fn recovery_never_rewrites_below_the_recovery_point() {
    let d = TempDir::new("t");
    let (cfg, log) = twelve_batches_in_small_segments(&d);
    log.sync().unwrap();
    let bases = segment_bases(d.path());
    crash(log);
    // the checkpoint as a sync after the interval (or a clean close) leaves it: a sync within
    // the interval does not write it (docs/partition-log.md "Durability")
    pylog_native::checkpoint::write_recovery_point(d.path(), 12).unwrap();
    // corrupt the first (synced, below the recovery point) segment: recovery must not cut it
    let first = log_file(d.path(), bases[0]);
    let before = fs::read(&first).unwrap();
    let mut bad = before.clone();
    bad[70] ^= 0xff;
    fs::write(&first, &bad).unwrap();
    // ragged index below the recovery point is rebuilt; a whole one is left alone
    let idx0 = d.path().join(format!("{:020}.timeindex", bases[0]));
    let good_ti = fs::read(&idx0).unwrap();
    fs::write(&idx0, [1u8, 2, 3]).unwrap();
    let log = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    assert_eq!(fs::read(&first).unwrap(), bad, "not rewritten");
    assert_eq!(fs::read(&idx0).unwrap(), good_ti, "ragged index rebuilt");
    assert_eq!(log.end_offset().unwrap(), 12);
    // the corruption is reported when read
    let chunk = log.records_chunk(0, 12, 1 << 20).unwrap();
    let err = chunk.decode(&mut Vec::new(), |_| Ok(())).unwrap_err();
    match err {
        Error::CorruptBatch { path, position, .. } => {
            assert_eq!(path.as_deref(), Some(first.as_path()));
            assert_eq!(position, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn swap_completion_and_temp_files() {
    let d = TempDir::new("t");
    let (cfg, log) = twelve_batches_in_small_segments(&d);
    let bases = segment_bases(d.path());
    crash(log);
    // simulate a compaction of segments 0 and 1 into one swap segment holding segment 0's bytes
    let p = |b: i64, s: &str| d.path().join(format!("{b:020}.{s}"));
    let seg0 = fs::read(p(bases[0], "log")).unwrap();
    let seg1 = fs::read(p(bases[1], "log")).unwrap();
    let mut merged = seg0.clone();
    merged.extend_from_slice(&seg1);
    fs::write(p(0, "log.swap"), &merged).unwrap();
    fs::write(p(0, "index.swap"), b"").unwrap();
    fs::write(p(bases[2], "log.deleted"), b"junk").unwrap();
    fs::write(p(999, "index"), b"orphan!!").unwrap();
    let log = PartitionLog::open(d.path(), cfg).unwrap();
    let now = segment_bases(d.path());
    assert_eq!(now[0], 0);
    assert!(
        !now.contains(&bases[1]),
        "segment inside the swap range deleted: {now:?}"
    );
    assert!(
        !p(0, "log.swap").exists()
            && !p(bases[2], "log.deleted").exists()
            && !p(999, "index").exists()
    );
    assert_eq!(fs::read(p(0, "log")).unwrap(), merged);
    assert_eq!(all_records(&log).len(), 12);
}

#[test]
fn empty_directory_gets_segment_zero() {
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    for s in ["log", "index", "timeindex"] {
        assert!(d.path().join(format!("{:020}.{s}", 0)).exists());
    }
    log.close().unwrap();
}

#[test]
fn two_processes_tail_sync() {
    let d = TempDir::new("t");
    let cfg = config(&[("segment.bytes", 400), ("index.interval.bytes", 60)]);
    let a = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    let b = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    assert_eq!(append_values(&a, &[b"a0"], 10), 0);
    assert_eq!(b.end_offset().unwrap(), 1);
    assert_eq!(append_values(&b, &[b"b1"], 11), 1);
    assert_eq!(append_values(&a, &[b"a2"], 12), 2);
    // many appends from both, crossing rolls
    for i in 0..20 {
        let w = if i % 3 == 0 { &b } else { &a };
        append_values(
            w,
            &[format!("x{i:02}-{}", "y".repeat(40)).as_bytes()],
            20 + i,
        );
    }
    assert!(segment_bases(d.path()).len() > 2);
    let ra = all_records(&a);
    let rb = all_records(&b);
    assert_eq!(ra.len(), 23);
    assert_eq!(ra, rb);
    assert!(a.wait_for(22, 10).unwrap());
    assert!(!b.wait_for(23, 10).unwrap());
    // a torn tail left by a dead writer: readers ignore it, the next writer truncates it
    let bases = segment_bases(d.path());
    let active = log_file(d.path(), *bases.last().unwrap());
    let len = fs::metadata(&active).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&active).unwrap();
    f.write_all_at(&[0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 200, 1, 2, 3], len)
        .unwrap();
    drop(f);
    assert_eq!(b.end_offset().unwrap(), 23);
    assert_eq!(append_values(&b, &[b"after-tear"], 99), 23);
    assert_eq!(a.end_offset().unwrap(), 24);
    assert_eq!(all_records(&a).last().unwrap().2, b"after-tear".to_vec());
    // the index files two writers built between them, every segment, active one included
    let index_files = |dir: &Path| -> Vec<Vec<u8>> {
        segment_bases(dir)
            .iter()
            .flat_map(|bs| ["index", "timeindex"].map(|s| dir.join(format!("{bs:020}.{s}"))))
            .map(|p| fs::read(p).unwrap())
            .collect()
    };
    let idx_before = index_files(d.path());
    // closing: only the last closer writes the marker
    a.close().unwrap();
    assert!(!d.path().join(".kafka_cleanshutdown").exists());
    b.close().unwrap();
    assert!(d.path().join(".kafka_cleanshutdown").exists());
    let c = PartitionLog::open(d.path(), cfg.clone()).unwrap();
    drop(c);
    // unclean reopen with no recovery point: recovery rebuilds every index file from the bytes,
    // and they equal what the writers derived (the index rules are a function of the bytes)
    fs::remove_file(d.path().join("recovery-point-offset-checkpoint")).unwrap();
    let c = PartitionLog::open(d.path(), cfg).unwrap();
    assert_eq!(idx_before, index_files(d.path()));
    assert_eq!(c.end_offset().unwrap(), 24);
}

#[test]
fn wait_for_wakes_on_append_and_other_writers() {
    let d = TempDir::new("t");
    let a = std::sync::Arc::new(PartitionLog::open(d.path(), LogConfig::default()).unwrap());
    let b = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    let a2 = a.clone();
    let t = std::thread::spawn(move || a2.wait_for(0, 5_000).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    append_values(&a, &[b"x"], 1);
    assert!(t.join().unwrap());
    let a3 = a.clone();
    let t = std::thread::spawn(move || a3.wait_for(1, 5_000).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    append_values(&b, &[b"y"], 2); // another "process"
    assert!(t.join().unwrap());
    assert!(!a.wait_for(5, 20).unwrap());
}

#[test]
fn append_raw_rewrites_base_offset_and_validates() {
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    append_values(&log, &[b"first"], 1);
    let mut buf = Vec::new();
    let specs = [RecordSpec {
        timestamp: 5,
        key: Some(b"k"),
        value: Some(b"v"),
        headers: &[],
    }];
    record::encode_batch(&mut buf, &mut Vec::new(), 777, &specs, Codec::None, None).unwrap();
    assert_eq!(log.append_raw(&buf).unwrap(), 1);
    let mut bad = buf.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append_raw(&bad),
        Err(Error::CorruptBatch { .. })
    ));
    assert_eq!(log.end_offset().unwrap(), 2);
    assert_eq!(all_records(&log)[1], (1, 5, b"v".to_vec()));
}

#[test]
fn flush_messages_policy_syncs() {
    let d = TempDir::new("t");
    let log = PartitionLog::open(d.path(), config(&[("flush.messages", 3)])).unwrap();
    // how far syncs got is on the page (the checkpoint file is written at most once a minute)
    let page = pylog_native::shared_state::SharedState::open(d.path()).unwrap();
    append_values(&log, &[b"a", b"b"], 1);
    assert_eq!(page.recovery_point(), 0);
    append_values(&log, &[b"c"], 1);
    assert_eq!(page.recovery_point(), 3);
    assert!(!d.path().join("recovery-point-offset-checkpoint").exists());
    log.close().unwrap();
    assert_eq!(
        fs::read_to_string(d.path().join("recovery-point-offset-checkpoint")).unwrap(),
        "0\n1\nt 0 3\n"
    );
}

#[test]
fn a_roll_by_another_process_is_seen_after_a_quiet_period() {
    // why: readers skip the `{end}.log` lookup while the directory mtime is unchanged and old;
    // a roll must still be noticed.
    let d = TempDir::new("t");
    let a = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    let b = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    append_values(&a, &[b"one"], 1);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(b.end_offset().unwrap(), 1);
    assert_eq!(b.end_offset().unwrap(), 1); // served with the cached directory state
    a.roll().unwrap();
    append_values(&a, &[b"two"], 2);
    assert_eq!(b.end_offset().unwrap(), 2);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(b.end_offset().unwrap(), 2);
    a.roll().unwrap();
    append_values(&a, &[b"three"], 3);
    assert_eq!(b.end_offset().unwrap(), 3);
    assert_eq!(all_records(&b).len(), 3);
    assert_eq!(segment_bases(d.path()), vec![0, 1, 2]);
}

#[test]
fn log_append_time_sets_every_timestamp() {
    let d = TempDir::new("t");
    let mut cfg = LogConfig::default();
    cfg.set(
        "message.timestamp.type",
        &pylog_native::config::ConfigValue::Str("LogAppendTime".into()),
    )
    .unwrap();
    let log = PartitionLog::open(d.path(), cfg).unwrap();
    let specs = [
        RecordSpec {
            timestamp: 5,
            key: None,
            value: Some(b"a"),
            headers: &[],
        },
        RecordSpec {
            timestamp: 7,
            key: None,
            value: Some(b"b"),
            headers: &[],
        },
    ];
    log.append_at(&specs, Codec::None, 1_700_000_000_123)
        .unwrap();
    let mut buf = Vec::new();
    record::encode_batch(&mut buf, &mut Vec::new(), 0, &specs, Codec::None, None).unwrap();
    log.append_raw(&buf).unwrap();
    let chunk = log.records_chunk(0, 4, 1 << 20).unwrap();
    let mut seen = Vec::new();
    chunk
        .decode(&mut Vec::new(), |rv| {
            seen.push((rv.offset, rv.timestamp, rv.timestamp_type));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        &seen[..2],
        &[(0, 1_700_000_000_123, 1), (1, 1_700_000_000_123, 1)]
    );
    assert!(seen[2..]
        .iter()
        .all(|r| r.2 == 1 && r.1 == seen[2].1 && r.1 > 1_700_000_000_123));
}

#[test]
fn threads_and_two_instances_append_and_read_concurrently() {
    let d = TempDir::new("t");
    let cfg = config(&[("segment.bytes", 2_000), ("index.interval.bytes", 100)]);
    let a = std::sync::Arc::new(PartitionLog::open(d.path(), cfg.clone()).unwrap());
    let b = std::sync::Arc::new(PartitionLog::open(d.path(), cfg).unwrap());
    let mut handles = Vec::new();
    for t in 0..4 {
        let log = if t % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(std::thread::spawn(move || {
            let mut bases = Vec::new();
            for i in 0..50 {
                let v = format!("t{t}-{i:03}");
                bases.push(append_values(&log, &[v.as_bytes(), b"x"], 1000 + i));
            }
            bases
        }));
    }
    let reader = {
        let log = b.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            while last < 400 {
                let end = log.end_offset().unwrap();
                assert!(end >= last, "end offset went backwards");
                if end > 0 {
                    let buf = log.read(end - 1, 1).unwrap();
                    let h = BatchHeader::parse(buf.as_slice()).unwrap();
                    assert!(h.base_offset < end && end - 1 <= h.last_offset());
                }
                last = end;
            }
        })
    };
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    reader.join().unwrap();
    all.sort();
    assert_eq!(
        all,
        (0..200).map(|i| i * 2).collect::<Vec<_>>(),
        "every batch got its own offsets"
    );
    let ra = all_records(&a);
    assert_eq!(ra.len(), 400);
    assert_eq!(ra, all_records(&b));
    assert!(segment_bases(d.path()).len() > 5);
}

#[test]
fn a_replaced_active_segment_is_reloaded_after_a_quiet_period() {
    // why: in a quiet directory a reader only checks the active file's size; a rename over the
    // active `.log` (what a compaction swap does) changes the directory and must be noticed.
    let d = TempDir::new("t");
    let a = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    let b = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    append_values(&a, &[b"one"], 1);
    append_values(&a, &[b"two"], 2);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(b.end_offset().unwrap(), 2);
    assert_eq!(b.end_offset().unwrap(), 2); // quiet: size check only
    let path = log_file(d.path(), 0);
    let first = batches(&path)[0].1.size_bytes();
    let bytes = fs::read(&path).unwrap();
    let tmp = d.path().join("swap.tmp");
    fs::write(&tmp, &bytes[..first]).unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(
        b.end_offset().unwrap(),
        1,
        "the replaced segment was reloaded"
    );
    assert_eq!(all_records(&b).len(), 1);
}

#[test]
fn a_sealed_segment_that_does_not_frame_to_its_end_is_corrupt() {
    // Only the active segment can have a not-yet-written tail; in a sealed one an incomplete
    // last batch is corruption, reported where it starts, never skipped.
    let d = TempDir::new("sealed");
    let cfg = || config(&[("segment.bytes", 300)]);
    let log = PartitionLog::open(d.path(), cfg()).unwrap();
    for i in 0..10 {
        append_values(&log, &[&[b'x'; 40][..]], 1000 + i);
    }
    assert_eq!(&segment_bases(d.path())[..2], &[0, 2]);
    log.close().unwrap();
    let path = log_file(d.path(), 0);
    let (victim, h) = *batches(&path).last().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let log = PartitionLog::open(d.path(), cfg()).unwrap();
    assert_eq!(log.end_offset().unwrap(), 10);
    let corrupt_at = |e: Error| match e {
        Error::CorruptBatch {
            path: Some(p),
            position,
            ..
        } => {
            assert_eq!(p, path);
            position
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    };
    assert_eq!(
        corrupt_at(log.records_chunk(0, 10, 1 << 20).unwrap_err()),
        victim
    );
    assert_eq!(
        corrupt_at(log.read(h.base_offset, 1000).unwrap_err()),
        victim
    );
    assert_eq!(corrupt_at(log.read_columns(0, 100).unwrap_err()), victim);
    assert_eq!(
        corrupt_at(log.offset_for_timestamp(1001).unwrap_err()),
        victim
    );
    log.close().unwrap();
}

#[test]
fn bytes_that_do_not_frame_below_the_recovery_point_are_never_cut() {
    // A clean shutdown skips the scan; a flipped length bit in the synced active segment then
    // looks like a torn tail. Open refuses it, leaves the marker and cuts nothing.
    let d = TempDir::new("flip");
    let log = PartitionLog::open(d.path(), LogConfig::default()).unwrap();
    for i in 0..10 {
        append_values(&log, &[b"value"], 1000 + i);
    }
    log.close().unwrap();
    let path = log_file(d.path(), 0);
    let (victim, _) = batches(&path)[3];
    let file = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, victim + 9).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], victim + 9).unwrap();
    let damaged = fs::read(&path).unwrap();
    for _ in 0..2 {
        match PartitionLog::open(d.path(), LogConfig::default()) {
            Err(Error::CorruptBatch { position, .. }) => assert_eq!(position, victim),
            other => panic!("expected CorruptBatch, got {other:?}"),
        }
        assert!(d.path().join(".kafka_cleanshutdown").exists());
        assert_eq!(fs::read(&path).unwrap(), damaged);
    }
}
