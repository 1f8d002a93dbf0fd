"""Log-directory-level configuration: Kafka's broker config names for the log manager and cleaner.

What ``pylog.open(path, config=...)`` takes (topic-level settings are ``pylog.config.LogConfig``'s,
given per topic). The owner of these names, their defaults and their validation. Defaults are
Kafka's (server-common/src/main/java/org/apache/kafka/server/config/ServerLogConfigs.java and
storage/src/main/java/org/apache/kafka/storage/internals/log/CleanerConfig.java), except
``log.cleaner.max.failures``, which is pylog's own: how many failures in a row of the background
cleaner on one partition mark it uncleanable (Kafka marks it at the first one).

- ``log.cleaner.enable`` (bool, True): run the background compaction of compacted topics. As in
  Kafka, retention (``retention.ms`` / ``retention.bytes``) is applied in the background even when
  it is False; only compaction stops.
- ``log.cleaner.backoff.ms`` (15000, >= 0): the cleaner's sleep when nothing was due, and the base of
  its retry backoff after a failure.
- ``log.cleaner.dedupe.buffer.size`` (134217728 = 128 MiB, >= 1024): the offset map's memory per
  compaction (Kafka's is shared by its cleaner threads; pylog has one cleaner per ``Log``).
- ``log.retention.check.interval.ms`` (300000, >= 1): how often retention is applied.
- ``log.cleaner.max.failures`` (3, >= 1).

Immutable; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pylog.config import INT_MAX, LONG_MAX, int_setting
from pylog.errors import InvalidConfigError

#: the smallest offset map the engines accept (both refuse a smaller ``map_bytes``)
MIN_DEDUPE_BUFFER_SIZE = 1024


@dataclass(frozen=True)
class BrokerConfig:
    """Validated log-directory settings (Kafka names mapped to snake_case minus ``log.``)."""

    cleaner_enable: bool = True
    cleaner_backoff_ms: int = 15_000
    cleaner_dedupe_buffer_size: int = 128 * 1024 * 1024
    retention_check_interval_ms: int = 300_000
    cleaner_max_failures: int = 3

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | BrokerConfig | None) -> BrokerConfig:
        """Validate Kafka-named settings; unknown keys and bad values raise ``InvalidConfigError``."""
        if config is None:
            return cls()
        if isinstance(config, BrokerConfig):
            return config
        if not isinstance(config, Mapping):
            raise InvalidConfigError(f"config must be a mapping of Kafka broker config names, not {config!r}")
        values: dict[str, Any] = {}
        for key, raw in config.items():
            if not isinstance(key, str) or key not in _RULES:
                known = ", ".join(sorted(_RULES))
                raise InvalidConfigError(f"unknown log config key {key!r}; known keys: {known}")
            values[_field_name(key)] = _RULES[key](key, raw)
        return cls(**values)

    def to_kafka_dict(self) -> dict[str, bool | int]:
        """The settings under their Kafka names."""
        return {"log." + f.name.replace("_", "."): getattr(self, f.name) for f in fields(self)}


def _field_name(key: str) -> str:
    return key.removeprefix("log.").replace(".", "_")


def _bool(key: str, raw: Any) -> bool:
    # Kafka's ConfigDef.Type.BOOLEAN: a bool, or the strings "true"/"false" in any case
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise InvalidConfigError(f"{key} must be a bool (or 'true'/'false'), not {raw!r}")


_RULES = {
    "log.cleaner.enable": _bool,
    "log.cleaner.backoff.ms": int_setting(0, LONG_MAX),
    "log.cleaner.dedupe.buffer.size": int_setting(MIN_DEDUPE_BUFFER_SIZE, LONG_MAX),
    "log.retention.check.interval.ms": int_setting(1, LONG_MAX),
    "log.cleaner.max.failures": int_setting(1, INT_MAX),
}
