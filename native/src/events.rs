//! Operator events: what recovery, index loading and a writer's tail repair did to the files,
//! reported through the `log` crate (the Python boundary forwards them to Python's `logging`,
//! `python/logging.rs`; without it the macros are no-ops). The twin of
//! `pylog/reference/events.py`: same logger names, levels and text in both engines.
//!
//! Levels follow Kafka's LogLoader and LogSegment
//! (storage/src/main/java/org/apache/kafka/storage/internals/log/LogLoader.java, LogSegment.java):
//! WARN when bytes are cut (corruption or a torn tail) or an index file is refused and rebuilt;
//! INFO for segments and temporary files deleted, swaps completed and the recovery summary.
//!
//! Thread-safety: these only format and hand the message to the `log` facade; the Python
//! bridge queues it and runs Python only after the engine released its locks.

use std::path::Path;

/// Logger of recovery at open (`pylog.recovery`).
pub const RECOVERY: &str = "pylog.recovery";
/// Logger of index loading and rebuilds (`pylog.index`).
pub const INDEX: &str = "pylog.index";
/// Logger of a live writer's tail repair (`pylog.log`).
pub const LOG: &str = "pylog.log";
/// Logger of compaction (`pylog.cleaner`).
pub const CLEANER: &str = "pylog.cleaner";

/// Recovery cut a segment at the first invalid batch.
pub fn recovery_truncated(log_path: &Path, valid_bytes: u64, file_bytes: u64, next_offset: i64) {
    log::warn!(
        target: RECOVERY,
        "{}: invalid or torn batch at byte position {valid_bytes}; truncated {} bytes \
         (file was {file_bytes} bytes), log end offset now {next_offset}",
        log_path.display(),
        file_bytes.saturating_sub(valid_bytes)
    );
}

/// Recovery deleted a segment after the one it cut.
pub fn recovery_deleted_segment(log_path: &Path, cut_log_path: &Path) {
    log::info!(
        target: RECOVERY,
        "deleted segment {} after the truncation of {}",
        log_path.display(),
        cut_log_path.display()
    );
}

/// Recovery deleted a temporary or orphan file (`.deleted`, `.cleaned`, a dropped `.swap`, an
/// index without its `.log`).
pub fn recovery_deleted_file(path: &Path, why: &str) {
    log::info!(target: RECOVERY, "deleted {} ({why})", path.display());
}

/// Recovery finished an interrupted swap: one swap file renamed to its final name.
pub fn recovery_swap_completed(from: &Path, to: &Path) {
    log::info!(
        target: RECOVERY,
        "completed an interrupted swap: renamed {} to {}",
        from.display(),
        to.display()
    );
}

/// The summary of one recovery.
pub fn recovery_done(dir: &Path, segments: usize, log_end: i64, recovery_point: i64, cut: u64) {
    log::info!(
        target: RECOVERY,
        "recovered {}: {segments} segments, log end offset {log_end}, recovery point \
         {recovery_point}, {cut} bytes truncated",
        dir.display()
    );
}

/// An index file pair was refused on load and rebuilt from the segment's bytes.
pub fn index_rebuilt(log_path: &Path, reason: &str) {
    log::warn!(
        target: INDEX,
        "rebuilding the index files of {}: {reason}",
        log_path.display()
    );
}

/// A writer cut a torn tail left by a writer that died mid-append.
pub fn torn_tail_truncated(log_path: &Path, valid_bytes: u64, file_bytes: u64, next_offset: i64) {
    log::warn!(
        target: LOG,
        "{}: torn batch at byte position {valid_bytes}; truncated {} bytes (file was \
         {file_bytes} bytes), log end offset {next_offset}",
        log_path.display(),
        file_bytes.saturating_sub(valid_bytes)
    );
}

/// One cleaning pass finished (its checkpoint written).
#[allow(clippy::too_many_arguments)]
pub fn cleaner_pass_done(
    dir: &Path,
    pass_number: u64,
    segments: u64,
    bytes_read: u64,
    bytes_written: u64,
    records_read: u64,
    records_kept: u64,
    tombstones_removed: u64,
    seconds: f64,
) {
    let rate = if seconds > 0.0 {
        bytes_read as f64 / 1e6 / seconds
    } else {
        0.0
    };
    log::info!(
        target: CLEANER,
        "{}: cleaning pass {pass_number}: {segments} segments, {bytes_read} bytes read, \
         {bytes_written} bytes written, {records_read} records read, {records_kept} kept, \
         {tombstones_removed} tombstones removed, {seconds:.3} s, {rate:.1} MB/s",
        dir.display()
    );
}

/// `compact()` did nothing, and why (a policy without compact).
pub fn cleaner_skipped(dir: &Path, reason: &str) {
    log::info!(target: CLEANER, "{}: not compacted: {reason}", dir.display());
}
