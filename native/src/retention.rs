//! Retention: which whole segments go, and the one protocol that deletes them (the twin of
//! `pylog/reference/retention.py`; docs/partition-log.md "Retention").
//!
//! Kafka's rules (core/src/main/scala/kafka/log/UnifiedLog.scala `deleteOldSegments`,
//! `deletableSegments`, `deleteSegments`, `deleteRecordsOnLeader` / `maybeIncrementLogStartOffset`):
//! three predicates, applied in this order, each over what the previous left, oldest first,
//! each stopping at the first segment that fails it:
//! 1. **log start**: a sealed segment whose next segment's base is `<=` the log start;
//! 2. **size** (policy has `delete`, `retention.bytes >= 0`): `diff = total size (the active
//!    segment included) - retention.bytes`; delete while `diff - size >= 0`, `diff -= size`;
//! 3. **time** (policy has `delete`, `retention.ms >= 0`): `now - largest_timestamp >
//!    retention.ms` (the last time-index entry's timestamp, else the `.log`'s mtime).
//!
//! Deviation: the **active segment is never deleted** (Kafka rolls a non-empty active segment
//! and deletes it when every segment is due); a log keeps at least its newest records until the
//! next roll. Kafka never deletes past the high watermark; here every appended record is
//! committed, so that bound is the log end, which the active segment already keeps.
//!
//! The deletion protocol (`delete_segments`, used by all three passes and by `delete_before`):
//! write `log-start-offset-checkpoint` = max(current start, base of the first surviving segment)
//! to `log-start-offset-checkpoint.retention.tmp` and fsync it (before any lock: the writer lock
//! is held only for renames); under the writer lock with the layout generation odd, rename it
//! into place (rewritten under the lock if the start moved meanwhile) [pause
//! `retention-checkpointed`]; rename each deleted segment's files to `<name>.deleted`, oldest
//! first [pause `retention-renamed`]; end the change; release the writer lock; fsync the
//! directory; unlink the `.deleted` files. A crash after the checkpoint leaves segments below the start, which the next
//! log-start pass deletes; `.deleted` files are removed by recovery or the next cleaner. A reader
//! holding a mapping or an fd of a deleted segment keeps a valid view (unlink does not invalidate
//! it) and moves to the new start at its next read (the generation bump makes it re-list).
//!
//! Callers hold the cleaner lock (lock.rs) for every deletion: one process at a time changes the
//! sealed segments. Thread-safety: the functions take `&PartitionLog` (Sync).

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::log::{PartitionLog, SegmentInfo};

/// Logger of retention runs (`pylog.retention`).
pub const RETENTION: &str = "pylog.retention";

/// What one retention run or `delete_before` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionStats {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    /// The log start offset afterwards.
    pub start_offset: i64,
}

/// Which predicate deleted segments (named in the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    LogStart,
    Size,
    Time,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::LogStart => "log-start",
            Rule::Size => "retention.bytes",
            Rule::Time => "retention.ms",
        }
    }
}

/// `cleanup.policy` (`delete`, `compact` or `compact,delete`) includes `word`.
pub fn policy_has(policy: &str, word: &str) -> bool {
    policy.split(',').any(|p| p.trim() == word)
}

/// Pass 1: how many of the oldest sealed segments lie wholly below the log start.
pub fn log_start_breached(sealed: &[SegmentInfo], log_start: i64) -> usize {
    sealed
        .iter()
        .take_while(|s| s.next_offset <= log_start)
        .count()
}

/// Pass 2: how many of the oldest sealed segments `retention.bytes` deletes, given the total
/// size of the log (every segment, the active one included).
pub fn size_breached(sealed: &[SegmentInfo], total_bytes: u64, retention_bytes: i64) -> usize {
    if retention_bytes < 0 {
        return 0;
    }
    let mut diff = i128::from(total_bytes) - i128::from(retention_bytes);
    let mut n = 0;
    for s in sealed {
        if diff - i128::from(s.size) < 0 {
            break;
        }
        diff -= i128::from(s.size);
        n += 1;
    }
    n
}

/// Pass 3: how many of the oldest sealed segments are older than `retention.ms` at `now_ms`.
pub fn time_breached(sealed: &[SegmentInfo], now_ms: i64, retention_ms: i64) -> usize {
    if retention_ms < 0 {
        return 0;
    }
    sealed
        .iter()
        .take_while(|s| {
            i128::from(now_ms) - i128::from(s.largest_timestamp) > i128::from(retention_ms)
        })
        .count()
}

/// The deletion protocol (module header) for the oldest sealed segments `doomed`. Segments
/// that are no longer the directory's oldest (another process changed the log) are left alone:
/// only the prefix that still matches by inode is deleted.
pub fn delete_segments(log: &PartitionLog, doomed: &[SegmentInfo]) -> Result<RetentionStats> {
    // why prepared before the writer lock: the checkpoint's fsync takes milliseconds, and
    // holding the writer lock for it stalls every append of every process (the latency spike
    // Kafka's users see when retention kicks in). `.retention.tmp` is private to the holder of
    // the cleaner lock, which every caller is.
    let prepared = match doomed.last() {
        Some(last) => Some(checkpoint::prepare_offset_checkpoint(
            log.path(),
            checkpoint::LOG_START_OFFSET_FILE,
            ".retention.tmp",
            log.start_offset()?.max(last.next_offset),
        )?),
        None => None,
    };
    let mut prepared = prepared;
    let (renamed, stats) = log.change_layout(|c| {
        let sealed = c.sealed();
        let n = doomed
            .iter()
            .zip(&sealed)
            .take_while(|(d, &(base, id, _))| d.base == base && d.file_id == id)
            .count();
        if n == 0 {
            if let Some(p) = prepared.take() {
                p.discard();
            }
            let start = c.start_offset();
            return Ok((
                Vec::new(),
                RetentionStats {
                    deleted_segments: 0,
                    deleted_bytes: 0,
                    start_offset: start,
                },
            ));
        }
        let survivor = sealed.get(n).map_or(c.active_base(), |&(base, _, _)| base);
        let start = c.start_offset().max(survivor);
        match prepared.take() {
            Some(p) if p.offset == start => c.commit_log_start(p)?,
            // another process moved the start meanwhile (delete_before), or fewer segments
            // matched: write the right value under the lock (rare)
            other => {
                if let Some(p) = other {
                    p.discard();
                }
                c.set_log_start(start)?;
            }
        }
        c.pause_point("retention-checkpointed");
        let mut renamed = Vec::new();
        for d in &doomed[..n] {
            renamed.extend(crate::log::rename_segment_files(
                c.dir(),
                d.base,
                crate::segments::DELETED_SUFFIX,
            )?);
        }
        c.pause_point("retention-renamed");
        let bytes = sealed[..n].iter().map(|&(_, _, size)| size).sum();
        Ok((
            renamed,
            RetentionStats {
                deleted_segments: n,
                deleted_bytes: bytes,
                start_offset: start,
            },
        ))
    })?;
    crate::log::unlink_deleted(&renamed);
    Ok(stats)
}

/// One retention run's passes, in order, each over what the previous left; one INFO line
/// (`pylog.retention`) when it deleted something, naming the rules that did.
fn run(log: &PartitionLog, now_ms: i64, rules: &[Rule]) -> Result<RetentionStats> {
    let config = log.config();
    let mut total = RetentionStats {
        deleted_segments: 0,
        deleted_bytes: 0,
        start_offset: 0,
    };
    let mut used = Vec::new();
    for &rule in rules {
        let (log_start, sealed, active_size) = log.retention_view(rule == Rule::Time)?;
        let n = match rule {
            Rule::LogStart => log_start_breached(&sealed, log_start),
            Rule::Size => {
                let size = sealed.iter().map(|s| s.size).sum::<u64>() + active_size;
                size_breached(&sealed, size, config.retention_bytes)
            }
            Rule::Time => time_breached(&sealed, now_ms, config.retention_ms),
        };
        if n == 0 {
            continue;
        }
        let done = delete_segments(log, &sealed[..n])?;
        if done.deleted_segments > 0 {
            total.deleted_segments += done.deleted_segments;
            total.deleted_bytes += done.deleted_bytes;
            used.push(rule.name());
        }
    }
    total.start_offset = log.start_offset()?;
    if total.deleted_segments > 0 {
        log::info!(
            target: RETENTION,
            "{}: deleted {} segments ({} bytes) by {}; log start offset now {}",
            log.path().display(),
            total.deleted_segments,
            total.deleted_bytes,
            used.join(", "),
            total.start_offset
        );
    }
    Ok(total)
}

/// The log-start pass alone (`delete_before` runs it when it gets the cleaner lock). Cleaner
/// lock held.
pub fn log_start_pass(log: &PartitionLog) -> Result<RetentionStats> {
    run(log, 0, &[Rule::LogStart])
}

/// Kafka's `deleteOldSegments`: the three passes (module header), only the log-start pass for
/// a compact-only policy. Cleaner lock held.
pub fn apply(log: &PartitionLog, now_ms: i64) -> Result<RetentionStats> {
    if policy_has(&log.config().cleanup_policy, "delete") {
        run(log, now_ms, &[Rule::LogStart, Rule::Size, Rule::Time])
    } else {
        run(log, now_ms, &[Rule::LogStart])
    }
}

/// `delete_before(offset)`, Kafka's DeleteRecords: `offset` outside `[start, end]` is
/// `OffsetOutOfRange` (deviation: Kafka answers success below the start; a typo should not be
/// silent), `offset == start` does nothing; otherwise the log start checkpoint is written
/// (durable before this returns, generation bumped so every process notices), then, if the
/// cleaner lock is free right now, the log-start pass deletes the segments wholly below it
/// (else the next `apply_retention` does).
pub fn delete_before(log: &PartitionLog, offset: i64) -> Result<RetentionStats> {
    let moved = log.move_log_start(offset, |start, end| {
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange(format!(
                "delete_before offset {offset} is outside the log [{start}, {end}]"
            )));
        }
        Ok(offset > start)
    })?;
    let Some(start) = moved else {
        return Ok(RetentionStats {
            deleted_segments: 0,
            deleted_bytes: 0,
            start_offset: offset,
        });
    };
    let Some(_cleaner) = log.cleaner_lock(false)? else {
        return Ok(RetentionStats {
            deleted_segments: 0,
            deleted_bytes: 0,
            start_offset: start,
        });
    };
    log_start_pass(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, largest_timestamp: i64) -> SegmentInfo {
        SegmentInfo {
            base,
            next_offset: next,
            size,
            file_id: (0, 0),
            largest_timestamp,
        }
    }

    #[test]
    fn the_three_predicates_stop_at_the_first_segment_that_fails() {
        let sealed = [
            seg(0, 10, 100, 50),
            seg(10, 20, 100, 40),
            seg(20, 30, 100, 90),
        ];
        assert_eq!(log_start_breached(&sealed, 0), 0);
        assert_eq!(
            log_start_breached(&sealed, 15),
            1,
            "the start inside segment 10"
        );
        assert_eq!(log_start_breached(&sealed, 30), 3);
        // total 300 sealed + 50 active; keep 120: diff 230 deletes two (230-100-100 = 30 < 100)
        assert_eq!(size_breached(&sealed, 350, 120), 2);
        assert_eq!(size_breached(&sealed, 350, 350), 0);
        assert_eq!(size_breached(&sealed, 350, 0), 3);
        assert_eq!(size_breached(&sealed, 350, -1), 0, "-1 = unlimited");
        assert_eq!(size_breached(&sealed, 50, 120), 0, "below the limit");
        // now 100, retention 55: 100-50 = 50 is not > 55; retention 45: 0 and 1 go, 2 stops
        assert_eq!(time_breached(&sealed, 100, 55), 0);
        assert_eq!(time_breached(&sealed, 100, 45), 2);
        assert_eq!(time_breached(&sealed, 100, -1), 0, "-1 = unlimited");
        assert_eq!(time_breached(&sealed, i64::MAX, 0), 3, "no overflow");
        assert!(policy_has("compact,delete", "delete") && !policy_has("compact", "delete"));
    }
}
