//! The offset checkpoints and the clean-shutdown marker (Kafka's CheckpointFile.java,
//! OffsetCheckpointFile.java, CleanShutdownFileHandler.java).
//!
//! Three files of one format, each owned by its writer: `recovery-point-offset-checkpoint`
//! (`sync` at most every `RECOVERY_POINT_CHECKPOINT_INTERVAL_MS`, the last close; log.rs),
//! `log-start-offset-checkpoint` (`delete_before`, retention) and
//! `cleaner-offset-checkpoint` (the cleaner). Deviation: Kafka keeps each per log.dir with one
//! line per partition (core/src/main/scala/kafka/log/LogManager.scala,
//! core/src/main/scala/kafka/log/LogCleanerManager.scala); pylog keeps one per partition
//! directory. The format is Kafka's text checkpoint (CheckpointFile.java):
//! ```text
//! 0                          <- version
//! 1                          <- entry count
//! {topic} {partition} {offset}
//! ```
//! Written to `<file>.tmp`, fsynced, renamed over the file, then the directory is fsynced, so a
//! crash leaves either the old or the new checkpoint. `{topic}`/`{partition}` come from the
//! directory name `<topic>-<partition>` (else topic = name, partition = 0). Readers take the
//! first entry: its offset is the last whitespace-separated token, the partition the one before,
//! the topic the rest (a directory name may hold spaces); a missing or unreadable checkpoint
//! means "recover everything" (0).
//!
//! `.kafka_cleanshutdown`: an empty file created by the last process to close cleanly.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
pub const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const CHECKPOINT_VERSION: u32 = 0;

/// `(topic, partition)` for a partition directory name.
pub fn topic_partition(dir: &Path) -> (String, u32) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((topic, partition)) = name.rsplit_once('-') {
        if !topic.is_empty()
            && !partition.is_empty()
            && partition.bytes().all(|b| b.is_ascii_digit())
        {
            if let Ok(p) = partition.parse::<u32>() {
                return (topic.to_owned(), p);
            }
        }
    }
    (name, 0)
}

/// fsync a directory (makes creations, deletions and renames in it durable).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("syncing directory {}", dir.display()))
}

/// Write the recovery-point checkpoint (`write_offset_checkpoint`).
pub fn write_recovery_point(dir: &Path, offset: i64) -> Result<()> {
    write_offset_checkpoint(dir, RECOVERY_POINT_FILE, offset)
}

/// The checkpointed recovery point, `None` when absent or unreadable.
pub fn read_recovery_point(dir: &Path) -> Result<Option<i64>> {
    read_offset_checkpoint(dir, RECOVERY_POINT_FILE)
}

/// A checkpoint written to a private temporary file and fsynced, not yet renamed into place:
/// the slow half of a checkpoint, done before a caller takes the writer lock so that the lock is
/// held only for the rename (`commit`). `tmp_suffix` must be private to one writer at a time
/// (retention's, under the cleaner lock, is `.retention.tmp`; the locked writers use `.tmp`).
#[derive(Debug)]
pub struct PreparedCheckpoint {
    tmp: PathBuf,
    path: PathBuf,
    pub offset: i64,
}

impl PreparedCheckpoint {
    /// Rename it into place (the caller fsyncs the directory).
    pub fn commit(self) -> Result<()> {
        fs::rename(&self.tmp, &self.path)
            .io_context(|| format!("renaming {} into place", self.tmp.display()))
    }

    /// Drop it unused (best effort: a leftover is overwritten by the next prepare).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Write checkpoint `file_name` of `dir` to `<file_name><tmp_suffix>` and fsync it.
pub fn prepare_offset_checkpoint(
    dir: &Path,
    file_name: &str,
    tmp_suffix: &str,
    offset: i64,
) -> Result<PreparedCheckpoint> {
    assert!(
        offset >= 0,
        "checkpoint {file_name} offset {offset} is negative"
    );
    let (topic, partition) = topic_partition(dir);
    let text = format!("{CHECKPOINT_VERSION}\n1\n{topic} {partition} {offset}\n");
    let path = dir.join(file_name);
    let tmp = dir.join(format!("{file_name}{tmp_suffix}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .io_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .io_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .io_context(|| format!("syncing {}", tmp.display()))?;
    Ok(PreparedCheckpoint { tmp, path, offset })
}

/// Write the checkpoint `file_name` of `dir` atomically (tmp, fsync, rename, dir fsync).
pub fn write_offset_checkpoint(dir: &Path, file_name: &str, offset: i64) -> Result<()> {
    prepare_offset_checkpoint(dir, file_name, ".tmp", offset)?.commit()?;
    sync_dir(dir)
}

/// The offset of checkpoint `file_name` of `dir`, `None` when absent or unreadable (garbage
/// reads as no checkpoint).
pub fn read_offset_checkpoint(dir: &Path, file_name: &str) -> Result<Option<i64>> {
    let path = dir.join(file_name);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::InvalidData => {
            return Ok(None)
        }
        Err(e) => return Err(e).io_context(|| format!("reading {}", path.display())),
    };
    Ok(parse_checkpoint(&text))
}

fn parse_checkpoint(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    let _version: u32 = lines.next()?.trim().parse().ok()?;
    let count: u64 = lines.next()?.trim().parse().ok()?;
    if count == 0 {
        return None;
    }
    // why from the end: the topic (from the directory name) may hold spaces; the offset is the
    // last token, the partition the one before, the topic the rest.
    let mut tokens = lines.next()?.split_whitespace().rev();
    let offset: i64 = tokens.next()?.parse().ok()?;
    let _partition: u32 = tokens.next()?.parse().ok()?;
    tokens.next()?; // a topic
    (offset >= 0).then_some(offset)
}

pub fn clean_shutdown_exists(dir: &Path) -> bool {
    dir.join(CLEAN_SHUTDOWN_FILE).exists()
}

pub fn remove_clean_shutdown(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).io_context(|| format!("removing {}", path.display())),
    }
}

/// Create the marker and fsync the directory.
pub fn write_clean_shutdown(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    File::create(&path).io_context(|| format!("creating {}", path.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_partition_from_dir_name() {
        assert_eq!(
            topic_partition(Path::new("/x/orders-3")),
            ("orders".into(), 3)
        );
        assert_eq!(
            topic_partition(Path::new("/x/my-topic-12")),
            ("my-topic".into(), 12)
        );
        assert_eq!(topic_partition(Path::new("/x/plain")), ("plain".into(), 0));
        assert_eq!(topic_partition(Path::new("/x/t-")), ("t-".into(), 0));
    }

    #[test]
    fn parse_takes_fields_from_the_end() {
        assert_eq!(parse_checkpoint("0\n1\nmy topic 3 42\n"), Some(42));
        assert_eq!(parse_checkpoint("0\n1\nt 3 42\n"), Some(42));
        assert_eq!(parse_checkpoint("0\n1\n3 42\n"), None);
        assert_eq!(parse_checkpoint("0\n1\nt x 42\n"), None);
        assert_eq!(parse_checkpoint("0\n1\nt 3 -1\n"), None);
        assert_eq!(parse_checkpoint("0\n0\n"), None);
    }

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("pylog-ckpt-{}/t-1", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_recovery_point(&dir).unwrap(), None);
        write_recovery_point(&dir, 42).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(RECOVERY_POINT_FILE)).unwrap(),
            "0\n1\nt 1 42\n"
        );
        assert_eq!(read_recovery_point(&dir).unwrap(), Some(42));
        assert!(!dir.join("recovery-point-offset-checkpoint.tmp").exists());
        assert_eq!(
            read_offset_checkpoint(&dir, LOG_START_OFFSET_FILE).unwrap(),
            None
        );
        write_offset_checkpoint(&dir, LOG_START_OFFSET_FILE, 7).unwrap();
        assert_eq!(
            read_offset_checkpoint(&dir, LOG_START_OFFSET_FILE).unwrap(),
            Some(7)
        );
        assert_eq!(read_recovery_point(&dir).unwrap(), Some(42));
        fs::write(dir.join(CLEANER_OFFSET_FILE), "garbage").unwrap();
        assert_eq!(
            read_offset_checkpoint(&dir, CLEANER_OFFSET_FILE).unwrap(),
            None
        );
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
