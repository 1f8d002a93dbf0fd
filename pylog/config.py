"""Partition-level configuration: Kafka's topic config names, defaults and validation.

The owner of every config rule for both engines (the reference engine must run without the native
extension): ``LogConfig.from_mapping`` validates what the user gave (Kafka's ranges and string
forms) and ``LogConfig.to_kafka_dict`` hands the complete normalized dict (ints, floats, canonical
strings) to the native engine, which keeps only type guards and refuses an incomplete dict. Its
defaults (native/src/config.rs, needed by the Rust-only tests) are held equal to these by
tests/test_partition_log.py through ``_native.default_config()``.
Defaults are Kafka's (apache/kafka storage/src/main/java/org/apache/kafka/storage/internals/log/LogConfig.java
and server-common/src/main/java/org/apache/kafka/server/config/ServerLogConfigs.java).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pylog.errors import InvalidConfigError

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

#: codecs understood by ``append(compression=...)``, with their attribute ids (Kafka CompressionType)
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
#: ``compression.type`` values (Kafka's, plus "none"); "producer"/"uncompressed" mean no codec here
COMPRESSION_TYPES = ("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")


@dataclass(frozen=True)
class LogConfig:
    """Validated configuration of one partition log (Kafka names mapped to snake_case)."""

    segment_bytes: int = 1024**3
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10 * 1024 * 1024
    max_message_bytes: int = 1024 * 1024 + 12
    message_timestamp_type: str = "CreateTime"
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    compression_type: str = "producer"
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    delete_retention_ms: int = 24 * 3600 * 1000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | LogConfig | None) -> LogConfig:
        """Validate Kafka-named settings; unknown keys and bad values raise InvalidConfigError."""
        if config is None:
            return cls()
        if isinstance(config, LogConfig):
            return config
        if not isinstance(config, Mapping):
            raise InvalidConfigError(f"config must be a mapping of Kafka config names, not {config!r}")
        values: dict[str, Any] = {}
        for key, raw in config.items():
            if not isinstance(key, str) or key not in _RULES:
                known = ", ".join(sorted(_RULES))
                raise InvalidConfigError(f"unknown config key {key!r}; known keys: {known}")
            values[key.replace(".", "_")] = _RULES[key](key, raw)
        return cls(**values)

    def to_kafka_dict(self) -> dict[str, int | float | str]:
        """The normalized settings under their Kafka names (what the native engine receives)."""
        out: dict[str, int | float | str] = {}
        for f in fields(self):
            out[f.name.replace("_", ".")] = getattr(self, f.name)
        return out

    @property
    def default_codec(self) -> str:
        """The codec ``append`` uses when none is given: ``compression.type`` resolved."""
        return "none" if self.compression_type in ("producer", "uncompressed") else self.compression_type

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"


def resolve_codec(compression: str | None, config: LogConfig) -> str:
    """Map ``append(compression=...)`` to a codec name; unknown names raise InvalidConfigError."""
    if compression is None:
        return config.default_codec
    if not isinstance(compression, str):
        raise InvalidConfigError(f"compression must be a codec name, not {compression!r}")
    name = compression.lower()
    if name == "uncompressed":
        name = "none"
    if name not in CODEC_IDS:
        raise InvalidConfigError(
            f"unknown compression codec {compression!r}; expected one of {', '.join(CODEC_IDS)}"
        )
    return name


def int_setting(minimum: int, maximum: int = LONG_MAX):
    """A parser of an integer setting in ``[minimum, maximum]`` (an int or its string form, never a
    bool), raising ``InvalidConfigError`` naming the key; shared by topic and broker settings."""

    def parse(key: str, raw: Any) -> int:
        if isinstance(raw, bool):
            raise InvalidConfigError(f"{key} must be an integer, not {raw!r}")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise InvalidConfigError(f"{key} must be an integer, not {raw!r}") from None
        else:
            raise InvalidConfigError(f"{key} must be an integer, not {raw!r}")
        if not minimum <= value <= maximum:
            raise InvalidConfigError(f"{key} must be in [{minimum}, {maximum}], got {value}")
        return value

    return parse


def _ratio(key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidConfigError(f"{key} must be a number in [0, 1], not {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidConfigError(f"{key} must be a number in [0, 1], not {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidConfigError(f"{key} must be in [0, 1], got {value}")
    return value


def _choice(choices: tuple[str, ...], *, case_sensitive: bool):
    def parse(key: str, raw: Any) -> str:
        if not isinstance(raw, str):
            raise InvalidConfigError(f"{key} must be one of {', '.join(choices)}, not {raw!r}")
        value = raw.strip().replace(" ", "")
        for choice in choices:
            if value == choice or (not case_sensitive and value.lower() == choice.lower()):
                return choice
        if key == "cleanup.policy" and value.lower() == "delete,compact":
            return "compact,delete"
        raise InvalidConfigError(f"{key} must be one of {', '.join(choices)}, not {raw!r}")

    return parse


_RULES = {
    "segment.bytes": int_setting(14, INT_MAX),
    "segment.ms": int_setting(1),
    "index.interval.bytes": int_setting(0, INT_MAX),
    "segment.index.bytes": int_setting(12, INT_MAX),
    "max.message.bytes": int_setting(0, INT_MAX),
    "message.timestamp.type": _choice(TIMESTAMP_TYPES, case_sensitive=True),
    "flush.messages": int_setting(1),
    "flush.ms": int_setting(0),
    "compression.type": _choice(COMPRESSION_TYPES, case_sensitive=False),
    "cleanup.policy": _choice(CLEANUP_POLICIES, case_sensitive=False),
    "retention.ms": int_setting(-1),
    "retention.bytes": int_setting(-1),
    "delete.retention.ms": int_setting(0),
    "min.cleanable.dirty.ratio": _ratio,
    "min.compaction.lag.ms": int_setting(0),
    "max.compaction.lag.ms": int_setting(1),
}
