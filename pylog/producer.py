"""``pylog.Producer``: kafka-python's ``KafkaProducer`` API over a backend.

``log.producer(**config)`` builds one. The producer validates its config, applies the serializers
and checks argument types; partitioning, accumulation, writing and acknowledgement are the
backend's producer core (embedded: pylog/embedded/producer_core.py). This module knows nothing of
storage.

Config (kafka-python's names and defaults):

=================  ==============  =========================================================
key                default         meaning
=================  ==============  =========================================================
key_serializer     None            ``f(key) -> bytes`` or an object with
value_serializer   None            ``serialize(topic, headers, data)`` (kafka-python's
                                   ``Serializer``); without one, keys/values must be bytes-like
acks               -1 ("all")      0/1: acknowledged once written to the OS; "all"/-1: once fsynced
compression_type   None            None, "gzip", "snappy", "lz4", "zstd" (a topic whose
                                   ``compression.type`` is not ``producer`` overrides it, as a broker)
batch_size         16384           bytes per partition batch before it is written
linger_ms          0               how long a batch that is not full may wait for more records
max_request_size   1048576         records larger than this fail (``RecordTooLargeError``)
partitioner        None            Kafka's (murmur2 / sticky); or kafka-python's partitioner
                                   object, or a legacy ``f(key_bytes, all, available)``
client_id          None            a name (kept, shown in ``repr``)
=================  ==============  =========================================================

Other kafka-python keys: the transport-only ones (``bootstrap_servers``, security, sockets,
metrics, retries, timeouts of requests — see ``IGNORED_KEYS``) are accepted and ignored, so a
kafka-python program ports without edits; they have no meaning in-process.
``enable_idempotence`` is accepted (an embedded append is never retried, so it cannot duplicate);
``transactional_id`` other than None is refused (no transactions yet). Any other key, and a bad
value for a key above, raises ``InvalidConfigError``.

A record with neither key nor value is accepted, as Kafka's Java producer does (kafka-python
refuses it). An unknown topic is created on first send when the log auto-creates topics, else
``send`` raises ``UnknownTopicOrPartitionError`` at once (Kafka's producer would wait
``max_block_ms`` for the metadata).

Errors (all ``pylog.errors``): a key/value/header of the wrong type → ``TypeError``; a serializer
that raises or returns something other than bytes → ``SerializationError`` naming the topic (and
partition, when given); a closed producer → ``ClientClosedError``; an unknown partition →
``UnknownTopicOrPartitionError``. Errors of a batch (too large, topic deleted, disk full) reach
its records' futures only.

Futures: ``send`` returns a ``pylog.FutureRecordMetadata`` (pure-Python core, reference engine, or
when serializers or a user partitioner are set), or on the native engine its Rust twin
``pylog._native.RecordFuture``: the same kafka-python API and the same outcome rule
(``pylog.future.record_outcome``); without serializers ``Producer.send`` *is* the Rust
accumulator's ``send`` (no Python frame per record).

Thread-safety: one producer may be shared by any number of threads (as kafka-python's).

fork(): a producer is its process's. In a child forked after it was made it is closed
(``ClientClosedError`` saying so; ``flush``/``close`` do nothing): the records it held are the
parent's to write, and writing them in the child too would append them twice. Make a new
producer in the child.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pylog.errors import ClientClosedError, InvalidConfigError, SerializationError
from pylog.forking import disown_in_forked_child
from pylog.future import BatchMetadata, FutureBatchMetadata, FutureRecordMetadata
from pylog.transport import TRANSPORT_KEYS

COMPRESSION_TYPES = ("gzip", "snappy", "lz4", "zstd")

#: kafka-python producer keys about the network, security, metrics or retries of requests;
#: accepted (so programs port unchanged) and ignored: an embedded producer has none of these.
IGNORED_KEYS = TRANSPORT_KEYS | frozenset(
    {
        "api_version_auto_timeout_ms",
        "buffer_memory",
        "delivery_timeout_ms",
        "max_block_ms",
        "retries",
        "transaction_timeout_ms",
    }
)


@dataclass(frozen=True)
class ProducerConfig:
    """The validated settings a producer core reads."""

    key_serializer: Any = None
    value_serializer: Any = None
    acks: int = -1
    compression_type: str | None = None
    batch_size: int = 16384
    linger_ms: float = 0
    max_request_size: int = 1048576
    partitioner: Any = None
    client_id: str | None = None
    enable_idempotence: bool = True
    #: seed of the sticky partitioner's random choices (tests compare cores with it); not kafka-python's
    sticky_seed: int | None = None
    #: use the pure-Python accumulator even on the native engine (the differential tests); not kafka-python's
    python_core: bool = False
    #: the ``IGNORED_KEYS`` given, as ``(key, value)`` pairs in the order given: meaningless to the
    #: embedded backend, but the kafka backend maps or refuses each (pylog/kafka/settings.py)
    transport_settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_kwargs(cls, config: dict[str, Any]) -> ProducerConfig:
        settings: dict[str, Any] = {}
        transport: list[tuple[str, Any]] = []
        for key, value in config.items():
            if key in IGNORED_KEYS:
                transport.append((key, value))
                continue
            check = _CHECKS.get(key)
            if check is None:
                if key == "transactional_id":
                    if value is not None:
                        raise InvalidConfigError("transactional_id: transactions are not supported")
                    continue
                raise InvalidConfigError(f"unknown producer config key {key!r}")
            settings[key] = check(key, value)
        return cls(**settings, transport_settings=tuple(transport))


def _acks(key: str, value: Any) -> int:
    normalized = {"all": -1, "-1": -1, "0": 0, "1": 1}.get(value, value) if isinstance(value, str) else value
    if isinstance(normalized, bool) or normalized not in (0, 1, -1):
        raise InvalidConfigError(f"acks must be 0, 1, -1 or 'all', not {value!r}")
    return int(normalized)


def _compression(key: str, value: Any) -> str | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, str) or value.lower() not in COMPRESSION_TYPES:
        raise InvalidConfigError(
            f"compression_type must be None or one of {COMPRESSION_TYPES}, not {value!r}"
        )
    return value.lower()


def _int_at_least(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidConfigError(f"{key} must be an integer >= {minimum}, not {value!r}")
        return value

    return check


def _linger(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidConfigError(f"linger_ms must be a number >= 0, not {value!r}")
    return value


def _serializer(key: str, value: Any) -> Any:
    if value is None or callable(value) or callable(getattr(value, "serialize", None)):
        return value
    raise InvalidConfigError(f"{key} must be a callable or have serialize(), not {type(value).__name__}")


def _partitioner(key: str, value: Any) -> Any:
    if value is None or callable(value) or callable(getattr(value, "partition", None)):
        return value
    raise InvalidConfigError(f"partitioner must be callable or have partition(), not {type(value).__name__}")


def _optional_str(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidConfigError(f"{key} must be a string, not {type(value).__name__}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfigError(f"{key} must be True or False, not {value!r}")
    return value


def _seed(key: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidConfigError(f"{key} must be an int or None")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "key_serializer": _serializer,
    "value_serializer": _serializer,
    "acks": _acks,
    "compression_type": _compression,
    "batch_size": _int_at_least(0),
    "linger_ms": _linger,
    "max_request_size": _int_at_least(1),
    "partitioner": _partitioner,
    "client_id": _optional_str,
    "enable_idempotence": _bool,
    "sticky_seed": _seed,
    "python_core": _bool,
}


def _wrap_serializer(serializer: Any) -> Callable[[str, Any, Any], Any] | None:
    """``(topic, headers, data) -> bytes`` for kafka-python's two serializer shapes."""
    if serializer is None:
        return None
    method = getattr(serializer, "serialize", None)
    if callable(method):
        return lambda topic, headers, data: method(topic, headers, data)
    return lambda topic, headers, data: serializer(data)


_BYTES_LIKE = (bytes, bytearray, memoryview)


def _check_bytes(what: str, data: Any) -> Any:
    if data is None or isinstance(data, _BYTES_LIKE):
        return data
    raise TypeError(
        f"{what} must be bytes, bytearray, memoryview or None (set {what}_serializer for other types), "
        f"not {type(data).__name__}"
    )


def _check_headers(headers: Any) -> list[tuple[str, Any]]:
    if not isinstance(headers, list | tuple):
        raise TypeError(f"headers must be a list of (str, bytes) tuples, not {type(headers).__name__}")
    for item in headers:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not (item[1] is None or isinstance(item[1], _BYTES_LIKE))
        ):
            raise TypeError(f"each header must be a (str, bytes | None) tuple, not {item!r}")
    return list(headers)


def _check_timestamp(timestamp_ms: Any) -> None:
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
        raise TypeError(f"timestamp_ms must be an int, not {type(timestamp_ms).__name__}")
    if not 0 <= timestamp_ms < 2**63:
        raise ValueError(f"timestamp_ms must be in [0, 2**63), not {timestamp_ms}")


class Producer:
    """kafka-python's ``KafkaProducer`` over a backend (see the module docs)."""

    def __init__(self, backend: Any, **config: Any):
        self.config = ProducerConfig.from_kwargs(config)
        self._key_serializer = _wrap_serializer(self.config.key_serializer)
        self._value_serializer = _wrap_serializer(self.config.value_serializer)
        self._core = backend.producer_core(self.config)
        self._closed = False
        self._closed_message = "the producer is closed"
        disown_in_forked_child(self)
        native_send = getattr(self._core, "native_send", None)
        if native_send is not None and self._key_serializer is None and self._value_serializer is None:
            # why: without serializers there is nothing to do in Python per record; the Rust
            # accumulator checks the arguments the same way (same errors) and accumulates
            self.send = native_send  # type: ignore[method-assign]

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<pylog.Producer client_id={self.config.client_id!r} {state}>"

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> FutureRecordMetadata:
        """Accumulate one record; the future resolves to ``pylog.RecordMetadata``."""
        if self._closed:
            raise ClientClosedError(self._closed_message)
        if type(topic) is not str:
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        if headers is not None:
            headers = _check_headers(headers)
        key_object = value_object = None
        if self._key_serializer is not None and key is not None:
            key_object = key
            key = self._serialize(self._key_serializer, "key", topic, partition, headers, key)
        elif key is not None and type(key) is not bytes:
            key = _check_bytes("key", key)
        if self._value_serializer is not None and value is not None:
            value_object = value
            value = self._serialize(self._value_serializer, "value", topic, partition, headers, value)
        elif value is not None and type(value) is not bytes:
            value = _check_bytes("value", value)
        if timestamp_ms is not None:
            _check_timestamp(timestamp_ms)
        if key_object is None and value_object is None:
            return self._core.send(topic, value, key, headers, partition, timestamp_ms)
        return self._core.send(
            topic,
            value,
            key,
            headers,
            partition,
            timestamp_ms,
            key_object=key_object,
            value_object=value_object,
        )

    def send_batch(
        self,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None = None,
        partition: int | None = None,
        headers: Sequence[Any] | None = None,
        timestamps_ms: Sequence[int] | None = None,
    ) -> FutureBatchMetadata:
        """Hand whole columns to the engine (no serializers, no object per record): ``values`` (and
        ``keys``, ``headers``, ``timestamps_ms``) as the engine's ``append`` takes them — sequences
        of bytes-like or None (a 2-D ``uint8`` numpy array is a sequence of fixed-width rows),
        timestamps as ints or an integer numpy array; they are not copied or converted here. The records go to
        ``partition``, else (no keys) to the sticky partition, else to each key's partition.
        Returns a future of a list of ``BatchMetadata(topic, partition, base_offset, count,
        timestamp)``: the records of each batch got ``base_offset .. base_offset + count - 1``, in
        order. Bad columns fail the future with the engine's error (``TypeError``,
        ``InvalidRecordError``)."""
        if self._closed:
            raise ClientClosedError(self._closed_message)
        if type(topic) is not str:
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        if len(values) == 0:
            raise ValueError("send_batch needs at least one value")
        for name, column in (("keys", keys), ("headers", headers), ("timestamps_ms", timestamps_ms)):
            if column is not None and len(column) != len(values):
                raise ValueError(f"{name} has {len(column)} items, values has {len(values)}")
        return self._core.send_batch(topic, values, keys, partition, headers, timestamps_ms)

    def _serialize(
        self,
        serializer: Callable[[str, Any, Any], Any],
        what: str,
        topic: str,
        partition: int | None,
        headers: Any,
        data: Any,
    ) -> Any:
        where = f"topic {topic!r}" + (f" partition {partition}" if partition is not None else "")
        try:
            out = serializer(topic, headers, data)
        except Exception as error:
            raise SerializationError(f"the {what} serializer failed for {where}: {error!r}") from error
        if out is not None and not isinstance(out, _BYTES_LIKE):
            raise SerializationError(
                f"the {what} serializer returned {type(out).__name__}, not bytes, for {where}"
            )
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Write every accumulated record now and wait for their acknowledgement; ``timeout`` in
        seconds → ``KafkaTimeoutError``."""
        if self._closed:
            return
        self._core.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush and close (idempotent). Records not acknowledged within ``timeout`` seconds fail
        with ``KafkaTimeoutError``."""
        if self._closed:
            return
        self._closed = True
        self._core.close(timeout)
        self.__dict__.pop("send", None)  # the closed check of the Python send applies again

    def partitions_for(self, topic: str) -> set[int]:
        """The partition ids of ``topic`` (auto-created when the log allows it), as kafka-python."""
        if self._closed:
            raise ClientClosedError(self._closed_message)
        return self._core.partitions_for(topic)

    def metrics(self, raw: bool = False) -> dict[str, Any]:
        """kafka-python compatibility: no metrics are collected."""
        return {}

    def __enter__(self) -> Producer:
        return self

    def _disown_after_fork(self) -> None:
        """In a forked child (``pylog.forking``): closed, saying why."""
        self._closed = True
        self._closed_message = f"the producer was made in process {os.getppid()} before this process forked from it; make a new one here"
        self.__dict__.pop("send", None)  # the Rust accumulator's send: its records are the parent's

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BatchMetadata", "Producer", "ProducerConfig"]
