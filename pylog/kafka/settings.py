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
import uuid
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


#: kafka-python consumer keys the embedded consumer ignores (``pylog.consumer.IGNORED_KEYS``)
#: that mean something to a Kafka client: their librdkafka property (CONFIGURATION.md), and how
#: the value becomes one (None: as it is)
KAFKA_PYTHON_CONSUMER_PROPERTIES: dict[str, tuple[str, Any]] = {
    "check_crcs": ("check.crcs", None),
    "client_rack": ("client.rack", None),
    "fetch_max_bytes": ("fetch.max.bytes", None),
    "fetch_max_wait_ms": ("fetch.wait.max.ms", None),
    "fetch_min_bytes": ("fetch.min.bytes", None),
    "client_dns_lookup": ("client.dns.lookup", None),
    "connections_max_idle_ms": ("connections.max.idle.ms", None),
    "max_in_flight_requests_per_connection": ("max.in.flight.requests.per.connection", None),
    "metadata_max_age_ms": ("metadata.max.age.ms", None),
    "receive_buffer_bytes": ("socket.receive.buffer.bytes", None),
    "receive_message_max_bytes": ("receive.message.max.bytes", None),
    "reconnect_backoff_max_ms": ("reconnect.backoff.max.ms", None),
    "reconnect_backoff_ms": ("reconnect.backoff.ms", None),
    # librdkafka's consumer has no request.timeout.ms: socket.timeout.ms bounds its requests
    "request_timeout_ms": ("socket.timeout.ms", None),
    "retry_backoff_ms": ("retry.backoff.ms", None),
    "sasl_kerberos_service_name": ("sasl.kerberos.service.name", None),
    "sasl_mechanism": ("sasl.mechanism", None),
    "sasl_plain_password": ("sasl.password", None),
    "sasl_plain_username": ("sasl.username", None),
    "security_protocol": ("security.protocol", None),
    "send_buffer_bytes": ("socket.send.buffer.bytes", None),
    "ssl_cafile": ("ssl.ca.location", None),
    "ssl_certfile": ("ssl.certificate.location", None),
    "ssl_check_hostname": ("ssl.endpoint.identification.algorithm", lambda on: "https" if on else "none"),
    "ssl_ciphers": ("ssl.cipher.suites", None),
    "ssl_crlfile": ("ssl.crl.location", None),
    "ssl_keyfile": ("ssl.key.location", None),
    "ssl_password": ("ssl.key.password", None),
}

#: kafka-python consumer keys with no librdkafka counterpart, and why (``UnsupportedError``)
KAFKA_PYTHON_CONSUMER_UNSUPPORTED: dict[str, str] = {
    "api_version": "librdkafka negotiates the protocol versions with the brokers",
    "bootstrap_servers": "the cluster is the kafka:// URL given to pylog.open",
    "bootstrap_timeout_ms": "pylog.open's timeout_ms bounds the first metadata call",
    "enable_incremental_fetch_sessions": "librdkafka chooses its fetch requests itself",
    "exclude_internal_topics": "pattern subscriptions never match Kafka's internal topics here",
    "kafka_client": "the client is librdkafka",
    "metric_group_prefix": "librdkafka reports metrics through statistics.interval.ms / stats_cb",
    "metric_reporters": "librdkafka reports metrics through statistics.interval.ms / stats_cb",
    "metrics_enabled": "librdkafka reports metrics through statistics.interval.ms / stats_cb",
    "metrics_num_samples": "librdkafka reports metrics through statistics.interval.ms / stats_cb",
    "metrics_sample_window_ms": "librdkafka reports metrics through statistics.interval.ms / stats_cb",
    "proxy_url": "librdkafka has no proxy setting",
    "sasl_kerberos_domain_name": "librdkafka takes the principal as sasl.kerberos.principal",
    "sasl_kerberos_name": "librdkafka takes the principal as sasl.kerberos.principal",
    "sasl_oauth_token_provider": "give pylog.open an oauth_cb",
    "selector": "librdkafka runs its own I/O threads",
    "socket_options": "librdkafka sets its own socket options",
    "socks5_proxy": "librdkafka has no proxy setting",
    "ssl_context": "librdkafka takes the ssl.* file settings, not a Python SSLContext",
}

#: kafka-python's assignor names (``ConsumerConfig.partition_assignment_strategy``) as
#: librdkafka's ``partition.assignment.strategy`` names
ASSIGNOR_NAMES = {"range": "range", "roundrobin": "roundrobin", "cooperative-sticky": "cooperative-sticky"}


def consumer_properties(config: Any, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka consumer properties for a validated ``pylog.consumer.ConsumerConfig``, plus
    those of the kafka-python keys the embedded consumer ignores, found in ``given`` (the raw
    keyword arguments, since ``ConsumerConfig`` drops them): mapped when librdkafka has them,
    ``UnsupportedError`` naming the key when it does not.

    pylog commits itself (``enable.auto.commit`` and ``enable.auto.offset.store`` off) and
    resets positions itself (``auto.offset.reset=error``: an out-of-range fetch comes back as an
    ``_AUTO_OFFSET_RESET`` error the consumer turns into the embedded rule). Without a
    ``group_id`` confluent-kafka still wants a ``group.id``: a name of this consumer's own,
    never joined (every partition is assigned manually) and never committed to."""
    from pylog.errors import UnsupportedError

    group_id = config.group_id
    properties: dict[str, Any] = {
        "group.id": group_id if group_id is not None else f"pylog-no-group-{uuid.uuid4().hex}",
        "client.id": config.client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        # kafka-python's and Java's default; librdkafka's own is read_committed
        "isolation.level": "read_uncommitted",
        "session.timeout.ms": config.session_timeout_ms,
        "heartbeat.interval.ms": config.heartbeat_interval_ms,
        "max.poll.interval.ms": config.max_poll_interval_ms,
        "max.partition.fetch.bytes": config.max_partition_fetch_bytes,
        "partition.assignment.strategy": ",".join(
            ASSIGNOR_NAMES[name] for name in config.partition_assignment_strategy
        ),
    }
    if config.group_instance_id is not None:
        properties["group.instance.id"] = config.group_instance_id
    for key, value in (given or {}).items():
        if key in KAFKA_PYTHON_CONSUMER_UNSUPPORTED:
            raise UnsupportedError(
                f"consumer setting {key!r} has no counterpart on a Kafka cluster: "
                f"{KAFKA_PYTHON_CONSUMER_UNSUPPORTED[key]}"
            )
        mapped = KAFKA_PYTHON_CONSUMER_PROPERTIES.get(key)
        if mapped is None:
            continue
        name, convert = mapped
        if not isinstance(value, int | float | str):  # bool is an int
            raise InvalidConfigError(
                f"consumer setting {key!r} must be a str, int, float or bool, not {value!r}"
            )
        properties[name] = value if convert is None else convert(value)
    return properties
