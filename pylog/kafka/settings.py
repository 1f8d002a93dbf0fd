"""How pylog's settings become librdkafka properties: the one owner of that translation.

Three layers, each with its own function:

- ``client_properties(url, settings)``: the cluster connection, from ``pylog.open("kafka://...",
  **settings)``. The URL's ``host:port`` list becomes ``bootstrap.servers``; every other setting is
  a librdkafka property (CONFIGURATION.md of librdkafka), written with dots or with underscores
  for dots (``security_protocol="SSL"`` is ``security.protocol``), passed to every confluent
  client (producer, consumer, admin) the ``Log`` makes. pylog's own key ``timeout_ms`` (default
  ``DEFAULT_TIMEOUT_MS``) bounds every blocking admin and metadata call. Client-level
  properties that pylog sets itself per client (``group.id``, ``enable.auto.commit``,
  ``bootstrap.servers`` beside the URL...) are refused here with ``InvalidConfigError``.
- ``producer_properties(config)``: a validated ``pylog.producer.ProducerConfig`` (kafka-python's
  names) as librdkafka producer properties (pylog/kafka/producer_core.py's owner fills this in).
- ``consumer_properties(config)``: a validated ``pylog.consumer.ConsumerConfig`` as librdkafka
  consumer properties (pylog/kafka/consumer.py's owner fills this in).

A kafka-python key with no librdkafka counterpart is refused with ``UnsupportedError`` naming it
(never silently ignored); docs/kafka.md has the table. Pure functions; thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pylog.errors import InvalidConfigError

#: how long a blocking admin or metadata call may wait before ``KafkaTimeoutError`` /
#: ``KafkaConnectionError`` (pylog's ``timeout_ms`` setting of ``pylog.open``)
DEFAULT_TIMEOUT_MS = 30_000

#: the scheme of a cluster address (the same constant as ``pylog.log.KAFKA_SCHEME``)
SCHEME = "kafka://"

#: confluent-kafka's Python-level settings (callables and a logger), kept under their own names
PYTHON_SETTINGS = frozenset({"error_cb", "stats_cb", "oauth_cb", "throttle_cb", "logger"})

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")

#: properties pylog sets per client from the client's own (kafka-python) config; giving them to
#: ``pylog.open`` would make every producer and consumer share one, so they are refused there
PER_CLIENT_PROPERTIES = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "group.instance.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "on_delivery",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
    }
)


def bootstrap_servers(url: str) -> str:
    """``"kafka://h1:9092,h2:9092"`` -> ``"h1:9092,h2:9092"``; a URL without at least one
    ``host:port`` (port 1..65535), or with a path or query, raises ``InvalidConfigError``."""
    if not isinstance(url, str) or not url.startswith(SCHEME):
        raise InvalidConfigError(
            f"a Kafka cluster address looks like kafka://host:port[,host:port...], not {url!r}"
        )
    rest = url[len(SCHEME) :].rstrip("/")
    servers = [part.strip() for part in rest.split(",")] if rest else []
    if not servers:
        raise InvalidConfigError(f"{url!r} names no broker: kafka://host:port[,host:port...]")
    for server in servers:
        match = _HOST_PORT.match(server)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise InvalidConfigError(f"{url!r}: {server!r} is not host:port (port 1..65535)")
    return ",".join(servers)


def client_properties(url: str, settings: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The librdkafka properties every client of this cluster gets, and the admin/metadata
    timeout in ms. Keys may use ``_`` for ``.``; values must be str, int, float or bool
    (librdkafka's types), else ``InvalidConfigError``. librdkafka itself checks names and values
    when a client is made (its ``_INVALID_ARG`` becomes ``InvalidConfigError`` there)."""
    properties: dict[str, Any] = {"bootstrap.servers": bootstrap_servers(url)}
    timeout_ms = DEFAULT_TIMEOUT_MS
    for key, value in settings.items():
        if not isinstance(key, str) or not key:
            raise InvalidConfigError(f"a client setting name must be a non-empty string, not {key!r}")
        if key == "timeout_ms":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfigError(f"timeout_ms must be an integer >= 1, not {value!r}")
            timeout_ms = value
            continue
        if key in PYTHON_SETTINGS:
            properties[key] = value
            continue
        name = key.replace("_", ".")
        if name in PER_CLIENT_PROPERTIES:
            raise InvalidConfigError(
                f"{key!r} is set per producer or consumer (log.producer(...) / log.consumer(...)), "
                "not for the whole cluster connection"
            )
        if isinstance(value, int | float | str):  # bool is an int
            properties[name] = value
        else:
            raise InvalidConfigError(
                f"client setting {key!r} must be a str, int, float or bool, not {value!r}"
            )
    return properties, timeout_ms


def producer_properties(config: Any) -> dict[str, Any]:
    """librdkafka producer properties for a ``ProducerConfig`` (filled in by the producer core's owner)."""
    raise NotImplementedError


def consumer_properties(config: Any) -> dict[str, Any]:
    """librdkafka consumer properties for a ``ConsumerConfig`` (filled in by the consumer's owner)."""
    raise NotImplementedError
