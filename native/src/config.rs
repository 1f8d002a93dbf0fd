//! Partition configuration as the engine uses it.
//!
//! One owner per rule: `pylog/config.py` validates and normalizes every setting (Kafka's ranges,
//! string forms, case) and hands the engine the complete dict (`LogConfig.to_kafka_dict()`); the
//! Python side must work without this extension, so it cannot be the other way round. Here are only
//! type guards (a value must fit the field's type, so a malformed dict cannot become a nonsensical
//! engine state) and the defaults, which the Rust-only tests (`--no-default-features`) need;
//! `_native.default_config()` exposes them and tests/test_partition_log.py asserts they equal
//! `pylog.config.LogConfig()`'s, so the two copies cannot drift.
//!
//! Widths: byte and count limits that Kafka keeps in an `int` are `u32` here, limited to Java's
//! `int` range (index entries store positions as an `i32`); times and offsets are `i64`
//! milliseconds / offsets (`i64::MAX` means "never", as Kafka's `Long.MAX_VALUE`).

use crate::error::{Error, Result};

/// One normalized config value as `LogConfig.to_kafka_dict()` hands it over.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u32,
    /// `segment.ms`: roll when record time moved this far past the segment's first batch.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: the index size bound that makes an index "full".
    pub segment_index_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type == LogAppendTime`.
    pub log_append_time: bool,
    /// `flush.messages`: sync once this many messages are above the recovery point.
    pub flush_messages: i64,
    /// `flush.ms`: sync once this long passed since the last sync.
    pub flush_ms: i64,
    /// `compression.type` (normalized lower-case name; the Python side resolves the codec).
    pub compression_type: String,
    /// `cleanup.policy`: delete | compact | compact,delete.
    pub cleanup_policy: String,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Default for LogConfig {
    /// Kafka's defaults (apache/kafka storage/src/main/java/org/apache/kafka/storage/internals/log/
    /// LogConfig.java and server-common/src/main/java/org/apache/kafka/server/config/
    /// ServerLogConfigs.java). The only Rust copy; it must equal `pylog/config.py`'s (tested there).
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            max_message_bytes: (1 << 20) + 12,
            log_append_time: false,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            compression_type: "producer".to_owned(),
            cleanup_policy: "delete".to_owned(),
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// Every setting, by its Kafka name: what the Python side must hand over, all of it.
pub const KEYS: [&str; 16] = [
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "segment.index.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "flush.messages",
    "flush.ms",
    "compression.type",
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
];

fn type_error(key: &str, wanted: &str, value: &ConfigValue) -> Error {
    Error::InvalidConfig(format!("{key} must be {wanted}, got {value:?}"))
}

fn long(key: &str, value: &ConfigValue) -> Result<i64> {
    match value {
        ConfigValue::Int(v) => Ok(*v),
        other => Err(type_error(key, "an integer", other)),
    }
}

/// A Kafka `int` limit: 0..=i32::MAX (the minimum Kafka accepts is `pylog/config.py`'s rule).
fn int(key: &str, value: &ConfigValue) -> Result<u32> {
    match value {
        ConfigValue::Int(v) if (0..=i64::from(i32::MAX)).contains(v) => {
            Ok(u32::try_from(*v).expect("checked range"))
        }
        other => Err(type_error(key, "an integer in [0, 2**31-1]", other)),
    }
}

fn number(key: &str, value: &ConfigValue) -> Result<f64> {
    match value {
        ConfigValue::Float(f) => Ok(*f),
        ConfigValue::Int(i) => Ok(*i as f64),
        other => Err(type_error(key, "a number", other)),
    }
}

fn string(key: &str, value: &ConfigValue) -> Result<String> {
    match value {
        ConfigValue::Str(s) => Ok(s.clone()),
        other => Err(type_error(key, "a string", other)),
    }
}

impl LogConfig {
    /// Set one setting by its Kafka name. Checks only that the value fits the field's type: the
    /// rules (ranges, accepted strings) are `pylog/config.py`'s, applied before this.
    pub fn set(&mut self, key: &str, value: &ConfigValue) -> Result<()> {
        match key {
            "segment.bytes" => self.segment_bytes = int(key, value)?,
            "segment.ms" => self.segment_ms = long(key, value)?,
            "index.interval.bytes" => self.index_interval_bytes = int(key, value)?,
            "segment.index.bytes" => self.segment_index_bytes = int(key, value)?,
            "max.message.bytes" => self.max_message_bytes = int(key, value)?,
            "message.timestamp.type" => {
                // the one string the engine interprets: it becomes a bool, so it must be one of two
                self.log_append_time = match string(key, value)?.as_str() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => return Err(type_error(key, "CreateTime or LogAppendTime", value)),
                }
            }
            "flush.messages" => self.flush_messages = long(key, value)?,
            "flush.ms" => self.flush_ms = long(key, value)?,
            "compression.type" => self.compression_type = string(key, value)?,
            "cleanup.policy" => self.cleanup_policy = string(key, value)?,
            "retention.ms" => self.retention_ms = long(key, value)?,
            "retention.bytes" => self.retention_bytes = long(key, value)?,
            "delete.retention.ms" => self.delete_retention_ms = long(key, value)?,
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio = number(key, value)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = long(key, value)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = long(key, value)?,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown config key {other:?}"
                )))
            }
        }
        Ok(())
    }

    /// Build from (Kafka name, value) pairs over the defaults.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, ConfigValue)>) -> Result<Self> {
        let mut config = LogConfig::default();
        for (key, value) in pairs {
            config.set(key, &value)?;
        }
        Ok(config)
    }

    /// Build from the complete dict the Python side hands over: every key of `KEYS`, exactly
    /// once, so no setting silently takes the Rust default.
    pub fn from_complete_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, ConfigValue)>,
    ) -> Result<Self> {
        let mut config = LogConfig::default();
        let mut seen = [false; KEYS.len()];
        for (key, value) in pairs {
            config.set(key, &value)?;
            let i = KEYS
                .iter()
                .position(|k| *k == key)
                .expect("set() knows only KEYS");
            seen[i] = true;
        }
        let missing: Vec<&str> = KEYS
            .iter()
            .zip(seen)
            .filter(|(_, seen)| !seen)
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "the engine needs every setting; missing {}",
                missing.join(", ")
            )));
        }
        Ok(config)
    }

    /// Every setting under its Kafka name, as `LogConfig.to_kafka_dict()` would hand it over.
    pub fn to_pairs(&self) -> Vec<(&'static str, ConfigValue)> {
        use ConfigValue::{Float, Int, Str};
        let timestamp_type = if self.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        };
        vec![
            ("segment.bytes", Int(self.segment_bytes.into())),
            ("segment.ms", Int(self.segment_ms)),
            (
                "index.interval.bytes",
                Int(self.index_interval_bytes.into()),
            ),
            ("segment.index.bytes", Int(self.segment_index_bytes.into())),
            ("max.message.bytes", Int(self.max_message_bytes.into())),
            ("message.timestamp.type", Str(timestamp_type.to_owned())),
            ("flush.messages", Int(self.flush_messages)),
            ("flush.ms", Int(self.flush_ms)),
            ("compression.type", Str(self.compression_type.clone())),
            ("cleanup.policy", Str(self.cleanup_policy.clone())),
            ("retention.ms", Int(self.retention_ms)),
            ("retention.bytes", Int(self.retention_bytes)),
            ("delete.retention.ms", Int(self.delete_retention_ms)),
            (
                "min.cleanable.dirty.ratio",
                Float(self.min_cleanable_dirty_ratio),
            ),
            ("min.compaction.lag.ms", Int(self.min_compaction_lag_ms)),
            ("max.compaction.lag.ms", Int(self.max_compaction_lag_ms)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.max_message_bytes, 1_048_588);
    }

    #[test]
    fn set_by_kafka_name() {
        let c = LogConfig::from_pairs([
            ("segment.bytes", ConfigValue::Int(100)),
            (
                "message.timestamp.type",
                ConfigValue::Str("LogAppendTime".into()),
            ),
            ("min.cleanable.dirty.ratio", ConfigValue::Float(0.25)),
        ])
        .unwrap();
        assert_eq!(c.segment_bytes, 100);
        assert!(c.log_append_time);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert!(LogConfig::from_pairs([("nope", ConfigValue::Int(1))]).is_err());
    }

    #[test]
    fn only_type_guards() {
        // Kafka's minimums are pylog/config.py's rule, not repeated here
        let small = LogConfig::from_pairs([("segment.bytes", ConfigValue::Int(3))]).unwrap();
        assert_eq!(small.segment_bytes, 3);
        for bad in [
            ("segment.bytes", ConfigValue::Int(-1)),
            ("segment.bytes", ConfigValue::Int(1 << 31)),
            ("segment.bytes", ConfigValue::Str("big".into())),
            ("segment.ms", ConfigValue::Float(1.0)),
            ("compression.type", ConfigValue::Int(0)),
            (
                "message.timestamp.type",
                ConfigValue::Str("Whenever".into()),
            ),
            ("min.cleanable.dirty.ratio", ConfigValue::Str("half".into())),
        ] {
            assert!(LogConfig::from_pairs([bad.clone()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_engine_takes_only_a_complete_dict() {
        let all = LogConfig::default().to_pairs();
        assert_eq!(all.len(), KEYS.len());
        let round_trip = LogConfig::from_complete_pairs(all.clone()).unwrap();
        assert_eq!(round_trip, LogConfig::default());
        let err = LogConfig::from_complete_pairs(all[1..].to_vec()).unwrap_err();
        assert!(err.to_string().contains("segment.bytes"), "{err}");
    }
}
