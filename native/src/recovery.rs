//! Recovery after an unclean shutdown: Kafka's LogLoader rules (LogLoader.java, LogSegment.recover) as
//! docs/partition-log.md "Durability, recovery and processes" states them.
//!
//! Order:
//! 1. delete `*.deleted` and `*.cleaned` (noting the lowest `.cleaned` base);
//! 2. finish `*.swap` (steps 1-2 are `remove_temp_files`, also run by a writer repairing what a
//!    dead process left mid-change): a swap at or above the lowest `.cleaned` base is deleted; for every other
//!    swap `.log`, delete the plain segments whose base lies in its offset range, then rename
//!    all swap files to their final names;
//! 3. delete index files without a `.log`, and the `.tmp` of an unfinished index rebuild;
//! 4. segments below the one holding the recovery point: never rewritten; index files that are
//!    missing or refused by the sanity check (`SegmentIndex::load`: whole entries, strictly
//!    increasing, inside the segment and its `.log`) are rebuilt from the bytes (framing only,
//!    sealed rule) through a `.tmp` and a rename, as later opens trust them; files that pass are kept as they are (Kafka's entries stay Kafka's);
//! 5. from the segment holding the recovery point to the last: scan batches (framing, magic,
//!    CRC, `baseOffset >= previous nextOffset`, `lastOffset - base <= 2**31-1`); at the first
//!    failure delete every later segment, then truncate the `.log` there (this module owns that
//!    cut-and-delete rule); rewrite both index files from the bytes, each ending with the final
//!    time entry (Kafka's LogSegment.recover ends with it too, the last segment included);
//! 6. an empty directory gets segment 0.
//!
//! Every deletion, completed swap, cut and rebuilt index is reported (`events`).
//!
//! why mmap: the scan is CRC-bound; scanning a mapping avoids a copy, so a 1 GiB unflushed log
//! recovers at memory bandwidth. Nobody else has the directory open while this runs (first
//! opener under the writer lock), so truncating a file after unmapping it is safe.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::checkpoint;
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::events;
use crate::index::SegmentIndex;
use crate::segment::{
    index_batches, scan_batches, ScanEnd, Segment, Source, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use crate::segments::parse_file_name;

/// The one owner of the recovery-point clamp (Kafka's LogLoader: `min(checkpoint, log end)`):
/// the recovery point never lies past the log end, after a recovery cut here or when a log
/// reloads and finds fewer offsets (log.rs). The reference's `recovery_point_within` is the twin.
pub fn recovery_point_within(recovery_point: i64, end: i64) -> i64 {
    recovery_point.min(end)
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// `min(checkpointed recovery point, log end)`; not advanced by recovery (Kafka's rule).
    pub recovery_point: i64,
    /// Bytes cut from the segment where the scan failed (0 when nothing was cut).
    pub truncated_bytes: u64,
    /// Segments deleted after the cut.
    pub deleted_segments: usize,
}

pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).io_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.io_context(|| format!("listing {}", dir.display()))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    out.sort(); // why: a stable order of deletions (and their events) in both engines
    Ok(out)
}

fn list(dir: &Path) -> Result<Vec<(String, i64, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).io_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.io_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((base, rest)) = parse_file_name(&name) {
            let rest = rest.to_owned();
            out.push((name, base, rest));
        }
    }
    out.sort();
    Ok(out)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).io_context(|| format!("deleting {}", path.display())),
    }
}

/// Base offsets of the `.log` files in `dir`, ascending.
pub fn segment_bases(dir: &Path) -> Result<Vec<i64>> {
    Ok(list(dir)?
        .into_iter()
        .filter(|(_, _, rest)| rest == "log")
        .map(|(_, b, _)| b)
        .collect())
}

/// Delete a segment's files (`.log` and everything derived from it).
pub fn delete_segment_files(dir: &Path, base: i64) -> Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove(&Segment::path_for(dir, base, suffix))?;
    }
    Ok(())
}

fn map(path: &Path) -> Result<Option<(File, Mmap)>> {
    let file = File::open(path).io_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .io_context(|| format!("stat {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: no other process has the directory open during recovery (first opener, writer
    // lock held), and the mapping is dropped before the file is truncated.
    let m = unsafe { Mmap::map(&file) }.io_context(|| format!("mapping {}", path.display()))?;
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok(Some((file, m)))
}

/// The next offset after the last whole batch of a `.log` (framing only; base when empty).
fn next_offset_of(path: &Path, base: i64) -> Result<i64> {
    let mut next = base;
    if let Some((_f, m)) = map(path)? {
        scan_batches(Source::Mem(&m), 0, m.len() as u64, false, |_, h, _| {
            next = next.max(h.next_offset());
            Ok(true)
        })?;
    }
    Ok(next)
}

/// Derive the index of a segment's bytes. `check` = recovery checks (CRC, offsets), stopping at
/// the first failure; returns the index, the valid length, the file length and the next offset.
fn derive(
    path: &Path,
    base: i64,
    config: &LogConfig,
    check: bool,
) -> Result<(SegmentIndex, u64, u64, i64)> {
    let Some((file, m)) = map(path)? else {
        return Ok((SegmentIndex::new(base), 0, 0, base));
    };
    let file_len = m.len() as u64;
    let (idx, scan, next) = index_batches(
        Source::Mem(&m),
        base,
        file_len,
        check,
        config.index_interval_bytes,
    )?;
    drop(m);
    drop(file);
    let valid = match scan.end {
        ScanEnd::Clean => file_len,
        _ => scan.position,
    };
    Ok((idx, valid, file_len, next))
}

/// A segment's two index files from `idx`, each written by `write`.
fn write_index_files(
    dir: &Path,
    base: i64,
    idx: &SegmentIndex,
    write: fn(&Path, &[u8]) -> Result<()>,
) -> Result<()> {
    write(
        &Segment::path_for(dir, base, INDEX_SUFFIX),
        &idx.encode_offsets(0),
    )?;
    write(
        &Segment::path_for(dir, base, TIME_INDEX_SUFFIX),
        &idx.encode_times(0),
    )
}

/// Replace a file through its `.tmp` and a rename (`index::replace_file`; step 3 deletes the
/// `.tmp` a kill left behind).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::index::replace_file(path, bytes).io_context(|| format!("replacing {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .io_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .io_context(|| format!("writing {}", path.display()))?;
    // why: the clean-shutdown marker a later close writes makes later opens trust these files
    f.sync_all()
        .io_context(|| format!("syncing {}", path.display()))
}

/// Why a segment's index files must be rebuilt (`None`: they pass the sanity check).
fn index_files_refused(dir: &Path, base: i64, next_offset: i64) -> Result<Option<String>> {
    let log_bytes = fs::metadata(log_path(dir, base))
        .io_context(|| format!("stat {}", log_path(dir, base).display()))?
        .len();
    let mut files = Vec::with_capacity(2);
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let p = Segment::path_for(dir, base, suffix);
        match fs::read(&p) {
            Ok(b) => files.push(b),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Some(format!("{} is missing", p.display())))
            }
            Err(e) => return Err(e).io_context(|| format!("reading {}", p.display())),
        }
    }
    Ok(SegmentIndex::load(base, &files[0], &files[1], log_bytes, Some(next_offset)).err())
}

/// Steps 1 and 2 of recovery, the temporary files of a deletion, a cleaning or a swap: delete
/// `*.deleted` and `*.cleaned`, then finish or drop `*.swap` (the one owner of those rules:
/// `recover` runs it first, and a writer that finds the layout generation left odd by a dead
/// process runs it before re-listing, log.rs). `include_cleaned` = false when a live cleaner
/// (another holder of the cleaner lock) may be writing `.cleaned` files: they are left alone, but
/// still count for the lowest `.cleaned` base. why count them: a dead cleaner killed between its
/// renames of one group's `.cleaned` files to `.swap` leaves both at one base, and that swap must
/// be dropped, not finished (finishing would put the cleaned index over the old segment's); a
/// live cleaner's own `.cleaned` files never meet a dead changer's `.swap`, since every cleaner
/// first runs this under the cleaner lock (`remove_stale_cleaner_files`) before writing any. Returns what it changed in the directory (the
/// caller fsyncs it): the number of files deleted or renamed and segments replaced.
pub fn remove_temp_files(dir: &Path, include_cleaned: bool) -> Result<usize> {
    let mut changed = 0;
    // 1. temp files (any name with these suffixes; a `.cleaned` base counts when it parses)
    let mut min_cleaned = i64::MAX;
    let mut swaps: Vec<(String, i64, String)> = Vec::new();
    for name in list_names(dir)? {
        if name.ends_with(".deleted") {
            remove(&dir.join(&name))?;
            events::recovery_deleted_file(&dir.join(&name), "a deletion left unfinished");
            changed += 1;
        } else if name.ends_with(".cleaned") {
            if let Some((base, _)) = parse_file_name(&name) {
                min_cleaned = min_cleaned.min(base);
            }
            if !include_cleaned {
                continue;
            }
            remove(&dir.join(&name))?;
            events::recovery_deleted_file(&dir.join(&name), "an unfinished cleaning");
            changed += 1;
        } else if name.ends_with(".swap") {
            match parse_file_name(&name) {
                Some((base, rest)) => {
                    let rest = rest.to_owned();
                    swaps.push((name, base, rest));
                }
                None => {
                    remove(&dir.join(&name))?;
                    events::recovery_deleted_file(&dir.join(&name), "an unfinished swap");
                    changed += 1;
                }
            }
        }
    }
    // 2. swap files: an incomplete split (at or above the lowest `.cleaned`) is dropped
    swaps.sort();
    let mut kept = Vec::with_capacity(swaps.len());
    for (name, base, rest) in swaps {
        if base >= min_cleaned {
            remove(&dir.join(&name))?;
            events::recovery_deleted_file(&dir.join(&name), "an unfinished swap");
            changed += 1;
        } else {
            kept.push((name, base, rest));
        }
    }
    let swaps = kept;
    for (name, base, rest) in &swaps {
        if rest != "log.swap" {
            continue;
        }
        let next = next_offset_of(&dir.join(name), *base)?;
        for other in segment_bases(dir)? {
            if *base <= other && other < next.max(*base + 1) {
                delete_segment_files(dir, other)?;
                changed += 1;
                events::recovery_deleted_file(
                    &log_path(dir, other),
                    "replaced by an interrupted swap",
                );
            }
        }
    }
    for (name, _, _) in &swaps {
        let final_name = name.strip_suffix(".swap").expect("swap suffix");
        fs::rename(dir.join(name), dir.join(final_name))
            .io_context(|| format!("renaming {name} to {final_name}"))?;
        events::recovery_swap_completed(&dir.join(name), &dir.join(final_name));
        changed += 1;
    }
    Ok(changed)
}

/// Run recovery on `dir` (which exists). Leaves at least one segment.
pub fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered> {
    recover_interruptible(dir, config, &|| false)
}

/// `recover`, asking `interrupted` before each segment scan and returning `Error::Interrupted`
/// when it says so. why that point is safe: a segment is either untouched or fully handled
/// (later segments deleted, cut, indexes rewritten), and with no clean-shutdown marker and the
/// checkpoint unchanged the next open simply recovers again.
pub fn recover_interruptible(
    dir: &Path,
    config: &LogConfig,
    interrupted: &(dyn Fn() -> bool + Sync),
) -> Result<Recovered> {
    let mut changed_dir = remove_temp_files(dir, true)? > 0;
    // 3. orphan indexes
    let files = list(dir)?;
    let logs: BTreeSet<i64> = files
        .iter()
        .filter(|(_, _, r)| r == "log")
        .map(|(_, b, _)| *b)
        .collect();
    for (name, base, rest) in &files {
        if matches!(rest.as_str(), "index.tmp" | "timeindex.tmp") {
            // a rebuilt sealed index whose rename did not happen (`index::replace_file`)
            remove(&dir.join(name))?;
            events::recovery_deleted_file(&dir.join(name), "an unfinished index rebuild");
            changed_dir = true;
        } else if matches!(rest.as_str(), "index" | "timeindex") && !logs.contains(base) {
            remove(&dir.join(name))?;
            events::recovery_deleted_file(&dir.join(name), "an index without its log");
            changed_dir = true;
        }
    }
    let bases: Vec<i64> = logs.into_iter().collect();
    if bases.is_empty() {
        Segment::create(dir, 0, config)?;
        checkpoint::sync_dir(dir)?;
        events::recovery_done(dir, 1, 0, 0, 0);
        return Ok(Recovered {
            recovery_point: 0,
            truncated_bytes: 0,
            deleted_segments: 0,
        });
    }
    let checkpointed = checkpoint::read_recovery_point(dir)?.unwrap_or(0);
    let holding = bases
        .partition_point(|b| *b <= checkpointed)
        .saturating_sub(1);
    // 4. below the recovery point: rebuild index files refused by the sanity check only
    for (i, &base) in bases[..holding].iter().enumerate() {
        let Some(reason) = index_files_refused(dir, base, bases[i + 1])? else {
            continue;
        };
        events::index_rebuilt(&log_path(dir, base), &reason);
        let (mut idx, _, _, _) = derive(&log_path(dir, base), base, config, false)?;
        idx.seal();
        // why by rename: later opens trust a file below the recovery point as it is, and a kill
        // between truncating it and writing it would leave 0 bytes (a whole number of entries)
        write_index_files(dir, base, &idx, replace_file)?;
        changed_dir = true;
    }
    // 5. from the segment holding the recovery point
    let mut truncated_bytes = 0;
    let mut deleted_segments = 0;
    let mut last = bases.len() - 1;
    let mut log_end = *bases.last().expect("non-empty");
    for i in holding..bases.len() {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let base = bases[i];
        let log_path = Segment::path_for(dir, base, LOG_SUFFIX);
        let (mut idx, valid, file_len, next) = derive(&log_path, base, config, true)?;
        let cut = valid < file_len;
        if cut {
            // why later segments go first: until the cut the bad batch is still on disk, so a
            // crash in between leads the next recovery to the same cut; cutting first would let
            // it keep the later segments, with a gap in the offsets.
            for &later in &bases[i + 1..] {
                delete_segment_files(dir, later)?;
                events::recovery_deleted_segment(&self::log_path(dir, later), &log_path);
                deleted_segments += 1;
            }
            if deleted_segments > 0 {
                changed_dir = true;
                checkpoint::sync_dir(dir)?;
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&log_path)
                .io_context(|| format!("opening {}", log_path.display()))?;
            f.set_len(valid)
                .io_context(|| format!("truncating {}", log_path.display()))?;
            f.sync_all()
                .io_context(|| format!("syncing {}", log_path.display()))?;
            truncated_bytes = file_len - valid;
            events::recovery_truncated(&log_path, valid, file_len, next);
            last = i;
        }
        idx.seal();
        // in place is enough here: until the directory is next closed cleanly, every open
        // recovers this segment again
        write_index_files(dir, base, &idx, write_file)?;
        if i == last {
            log_end = next;
            break;
        }
    }
    if changed_dir {
        checkpoint::sync_dir(dir)?;
    }
    events::recovery_done(
        dir,
        last + 1,
        log_end,
        recovery_point_within(checkpointed, log_end),
        truncated_bytes,
    );
    Ok(Recovered {
        recovery_point: recovery_point_within(checkpointed, log_end),
        truncated_bytes,
        deleted_segments,
    })
}

/// Path helpers for tests and the log.
pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    Segment::path_for(dir, base, LOG_SUFFIX)
}
