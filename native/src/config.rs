//! Partition configuration as the engine uses it. Validation happens once, in Python
//! (`pylog/config.py`); this struct receives the normalized values under Kafka's names.
//!
//! Widths: byte and count limits that Kafka keeps in an `int` are `u32` here, times and offsets
//! are `i64` milliseconds / offsets (`i64::MAX` means "never", as Kafka's `Long.MAX_VALUE`).

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
    /// Kafka's defaults (LogConfig.java, ServerLogConfigs.java; spec §2.8).
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

fn int_in(key: &str, value: &ConfigValue, min: i64, max: i64) -> Result<i64> {
    match value {
        ConfigValue::Int(v) if (min..=max).contains(v) => Ok(*v),
        other => Err(Error::InvalidConfig(format!(
            "{key} must be an integer in [{min}, {max}], got {other:?}"
        ))),
    }
}

fn u32_in(key: &str, value: &ConfigValue, min: u32) -> Result<u32> {
    let v = int_in(key, value, i64::from(min), i64::from(i32::MAX))?;
    Ok(u32::try_from(v).expect("checked range"))
}

fn string(key: &str, value: &ConfigValue) -> Result<String> {
    match value {
        ConfigValue::Str(s) => Ok(s.clone()),
        other => Err(Error::InvalidConfig(format!(
            "{key} must be a string, got {other:?}"
        ))),
    }
}

impl LogConfig {
    /// Set one setting by its Kafka name. The values were validated in Python; the checks here
    /// only keep a malformed dict from becoming a nonsensical engine state.
    pub fn set(&mut self, key: &str, value: &ConfigValue) -> Result<()> {
        match key {
            "segment.bytes" => self.segment_bytes = u32_in(key, value, 14)?,
            "segment.ms" => self.segment_ms = int_in(key, value, 1, i64::MAX)?,
            "index.interval.bytes" => self.index_interval_bytes = u32_in(key, value, 0)?,
            "segment.index.bytes" => self.segment_index_bytes = u32_in(key, value, 12)?,
            "max.message.bytes" => self.max_message_bytes = u32_in(key, value, 0)?,
            "message.timestamp.type" => {
                self.log_append_time = match string(key, value)?.as_str() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    other => {
                        return Err(Error::InvalidConfig(format!(
                            "{key} must be CreateTime or LogAppendTime, not {other:?}"
                        )))
                    }
                }
            }
            "flush.messages" => self.flush_messages = int_in(key, value, 1, i64::MAX)?,
            "flush.ms" => self.flush_ms = int_in(key, value, 0, i64::MAX)?,
            "compression.type" => self.compression_type = string(key, value)?,
            "cleanup.policy" => self.cleanup_policy = string(key, value)?,
            "retention.ms" => self.retention_ms = int_in(key, value, -1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = int_in(key, value, -1, i64::MAX)?,
            "delete.retention.ms" => self.delete_retention_ms = int_in(key, value, 0, i64::MAX)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = match value {
                    ConfigValue::Float(f) if (0.0..=1.0).contains(f) => *f,
                    ConfigValue::Int(i) if (0..=1).contains(i) => *i as f64,
                    other => {
                        return Err(Error::InvalidConfig(format!(
                            "{key} must be in [0, 1], got {other:?}"
                        )))
                    }
                }
            }
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = int_in(key, value, 0, i64::MAX)?
            }
            "max.compaction.lag.ms" => {
                self.max_compaction_lag_ms = int_in(key, value, 1, i64::MAX)?
            }
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
        assert!(LogConfig::from_pairs([("nope", ConfigValue::Int(1))]).is_err());
        assert!(LogConfig::from_pairs([("segment.bytes", ConfigValue::Int(3))]).is_err());
    }
}
