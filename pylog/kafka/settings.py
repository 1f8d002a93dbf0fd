"""How pylog's settings become librdkafka properties: the one owner of that translation.

Three layers, each with its own function:

- ``client_properties(url, settings)``: the cluster connection, from ``pylog.open("kafka://...",
  **settings)``. The URL's ``host:port`` list becomes ``bootstrap.servers``; every other setting is
  a librdkafka property (CONFIGURATION.md of librdkafka), written with dots or with underscores
  for dots (``security_protocol="SSL"`` is ``security.protocol``), passed to every confluent
  client (producer, consumer, admin) the ``Log`` makes. pylog's own key ``timeout_ms`` (default
  ``DEFAULT_TIMEOUT_MS``) bounds every blocking admin and metadata call. librdkafka's own log lines go
  to the Python logger ``pylog.kafka`` (``logger=`` chooses another). Client-level
  properties that pylog sets itself per client (``group.id``, ``enable.auto.commit``,
  ``bootstrap.servers`` beside the URL...) are refused here with ``InvalidConfigError``.
- ``producer_properties(config)``: a validated ``pylog.producer.ProducerConfig`` (kafka-python's
  names) as librdkafka producer properties; ``producer_block_ms`` and ``check_bootstrap`` read the
  two kafka-python keys that are not librdkafka properties.
- ``consumer_properties(config, given, url)``: a validated ``pylog.consumer.ConsumerConfig`` as librdkafka
  consumer properties (pylog/kafka/consumer.py's owner fills this in).

A kafka-python key with no librdkafka counterpart is refused with ``UnsupportedError`` naming it
(never silently ignored); docs/kafka.md has the table. Pure functions; thread-safe.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pylog.errors import InvalidConfigError, UnsupportedError
from pylog.log import KAFKA_SCHEME

#: how long a blocking admin or metadata call may wait before ``KafkaTimeoutError`` /
#: ``KafkaConnectionError`` (pylog's ``timeout_ms`` setting of ``pylog.open``)
DEFAULT_TIMEOUT_MS = 30_000


#: confluent-kafka's Python-level settings (callables and a logger), kept under their own names
PYTHON_SETTINGS = frozenset({"error_cb", "stats_cb", "oauth_cb", "throttle_cb", "logger"})

#: where librdkafka's own log lines go unless ``pylog.open(..., logger=...)`` says otherwise
LIBRDKAFKA_LOGGER = logging.getLogger("pylog.kafka")

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
    if not isinstance(url, str) or not url.startswith(KAFKA_SCHEME):
        raise InvalidConfigError(
            f"a Kafka cluster address looks like kafka://host:port[,host:port...], not {url!r}"
        )
    rest = url[len(KAFKA_SCHEME) :].rstrip("/")
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
    # why: librdkafka's own log lines (a broker down, a failed connect) go through Python's
    # logging (logger ``pylog.kafka``), not straight to stderr past the application's handlers
    properties.setdefault("logger", LIBRDKAFKA_LOGGER)
    return properties, timeout_ms


#: kafka-python's default ``delivery_timeout_ms`` (librdkafka's own default is 300000): how long a
#: record may wait for delivery, retries included, before its future fails with KafkaTimeoutError
DEFAULT_DELIVERY_TIMEOUT_MS = 120_000

#: kafka-python's default ``max_block_ms``: how long ``send`` waits for room when librdkafka's
#: queue is full (``queue.buffering.max.messages`` / ``.kbytes``) before KafkaTimeoutError
DEFAULT_MAX_BLOCK_MS = 60_000

#: librdkafka's smallest ``batch.size`` (CONFIGURATION.md: range 1 .. 2147483647)
MIN_BATCH_SIZE = 1


def _kbytes(key: str, value: Any) -> int:
    """kafka-python's ``buffer_memory`` (bytes) as librdkafka's ``queue.buffering.max.kbytes``."""
    return max(-(-_int(key, value) // 1024), 1)


def _endpoint_check(key: str, value: Any) -> str:
    return "https" if value else "none"


#: kafka-python's network and security keys both clients take (``pylog.transport.TRANSPORT_KEYS``)
#: that librdkafka has too: its property (CONFIGURATION.md) and how the value becomes one (None:
#: as it is). One table for both clients; each adds its own keys below.
_TRANSPORT_PROPERTIES: dict[str, tuple[str, Any]] = {
    "client_dns_lookup": ("client.dns.lookup", None),
    "connections_max_idle_ms": ("connections.max.idle.ms", None),
    "max_in_flight_requests_per_connection": ("max.in.flight.requests.per.connection", None),
    # why not librdkafka's metadata.max.age.ms (how long its cache may be used): Java's
    # metadata.max.age.ms is the period of a forced refresh (CommonClientConfigs.java), which is
    # librdkafka's topic.metadata.refresh.interval.ms
    "metadata_max_age_ms": ("topic.metadata.refresh.interval.ms", None),
    "receive_buffer_bytes": ("socket.receive.buffer.bytes", None),
    "receive_message_max_bytes": ("receive.message.max.bytes", None),
    "reconnect_backoff_max_ms": ("reconnect.backoff.max.ms", None),
    "reconnect_backoff_ms": ("reconnect.backoff.ms", None),
    "retry_backoff_ms": ("retry.backoff.ms", None),
    "sasl_kerberos_service_name": ("sasl.kerberos.service.name", None),
    "sasl_mechanism": ("sasl.mechanism", None),
    "sasl_plain_password": ("sasl.password", None),
    "sasl_plain_username": ("sasl.username", None),
    "security_protocol": ("security.protocol", None),
    "send_buffer_bytes": ("socket.send.buffer.bytes", None),
    "ssl_cafile": ("ssl.ca.location", None),
    "ssl_certfile": ("ssl.certificate.location", None),
    "ssl_check_hostname": ("ssl.endpoint.identification.algorithm", _endpoint_check),
    "ssl_ciphers": ("ssl.cipher.suites", None),
    "ssl_crlfile": ("ssl.crl.location", None),
    "ssl_keyfile": ("ssl.key.location", None),
    "ssl_password": ("ssl.key.password", None),
}

_NO_METRICS = (
    "pylog collects no client metrics (librdkafka's are statistics.interval.ms + stats_cb on pylog.open)"
)

#: kafka-python's transport keys with no librdkafka counterpart, and what to do instead
#: (``UnsupportedError``; never silently ignored)
_TRANSPORT_UNSUPPORTED: dict[str, str] = {
    "api_version": "librdkafka negotiates the protocol version with the broker itself",
    "bootstrap_timeout_ms": "librdkafka has no bootstrap timeout; pylog.open's timeout_ms bounds metadata calls",
    "kafka_client": "the client is librdkafka",
    "selector": "librdkafka runs its own I/O threads",
    "socket_options": "librdkafka sets its own socket options (see socket.* properties on pylog.open)",
    "proxy_url": "librdkafka has no proxy support",
    "socks5_proxy": "librdkafka has no proxy support",
    "ssl_context": "librdkafka uses OpenSSL files, not a Python SSLContext: give ssl_cafile/ssl_certfile/ssl_keyfile",
    "sasl_oauth_token_provider": "give confluent-kafka's oauth_cb to pylog.open instead",
    "sasl_kerberos_name": "librdkafka takes sasl.kerberos.principal (a string) on pylog.open",
    "sasl_kerberos_domain_name": "librdkafka has no such setting (sasl.kerberos.* on pylog.open)",
    "metric_reporters": _NO_METRICS,
    "metrics_num_samples": _NO_METRICS,
    "metrics_sample_window_ms": _NO_METRICS,
}

#: the producer's own keys (``pylog.producer.IGNORED_KEYS``) beside the shared ones
PRODUCER_TRANSPORT_PROPERTIES: dict[str, tuple[str, Any]] = {
    **_TRANSPORT_PROPERTIES,
    "retries": ("retries", None),
    "delivery_timeout_ms": ("delivery.timeout.ms", None),
    "request_timeout_ms": ("request.timeout.ms", None),
    "api_version_auto_timeout_ms": ("api.version.request.timeout.ms", None),
    "transaction_timeout_ms": ("transaction.timeout.ms", None),
    "buffer_memory": ("queue.buffering.max.kbytes", _kbytes),
}
PRODUCER_TRANSPORT_UNSUPPORTED = _TRANSPORT_UNSUPPORTED

#: the consumer's own keys (``pylog.consumer.IGNORED_KEYS``) beside the shared ones
CONSUMER_TRANSPORT_PROPERTIES: dict[str, tuple[str, Any]] = {
    **_TRANSPORT_PROPERTIES,
    "check_crcs": ("check.crcs", None),
    "client_rack": ("client.rack", None),
    "fetch_max_bytes": ("fetch.max.bytes", None),
    "fetch_max_wait_ms": ("fetch.wait.max.ms", None),
    "fetch_min_bytes": ("fetch.min.bytes", None),
    # librdkafka's consumer has no request.timeout.ms: socket.timeout.ms bounds its requests
    "request_timeout_ms": ("socket.timeout.ms", None),
}
CONSUMER_TRANSPORT_UNSUPPORTED: dict[str, str] = {
    **_TRANSPORT_UNSUPPORTED,
    "enable_incremental_fetch_sessions": "librdkafka chooses its fetch requests itself",
    "exclude_internal_topics": "pattern subscriptions never match Kafka's internal topics here",
    "metric_group_prefix": _NO_METRICS,
}

#: kafka-python keys that are not librdkafka properties: read by ``producer_block_ms`` and
#: ``check_bootstrap``
_READ_ELSEWHERE = frozenset({"max_block_ms", "bootstrap_servers"})


def transport_properties(
    client: str,
    settings: Any,
    table: Mapping[str, tuple[str, Any]],
    unsupported: Mapping[str, str],
) -> dict[str, Any]:
    """librdkafka properties for a client's kafka-python transport keys (``settings``: ``(key,
    value)`` pairs of keys in ``table`` or ``unsupported``): a value of None means "not set"
    (kafka-python's default) and is left out; ``metrics_enabled=False`` and an empty
    ``metric_reporters`` ask for nothing; a key without counterpart raises ``UnsupportedError``
    naming it; a value librdkafka cannot take raises ``InvalidConfigError``."""
    properties: dict[str, Any] = {}
    for key, value in settings:
        if value is None or key in _READ_ELSEWHERE:
            continue
        if key == "metrics_enabled" or (key == "metric_reporters" and not value):
            if value:
                raise UnsupportedError(f"{client} setting {key}=True: {_NO_METRICS}")
            continue
        if key in unsupported:
            raise UnsupportedError(
                f"{client} setting {key!r} has no counterpart on a Kafka cluster: {unsupported[key]}"
            )
        if key not in table:  # a key added to the client's IGNORED_KEYS without a decision here
            raise UnsupportedError(f"{client} setting {key!r} is not supported on the kafka backend")
        name, convert = table[key]
        if not isinstance(value, int | float | str):  # bool is an int
            raise InvalidConfigError(
                f"{client} setting {key!r} must be a str, int, float or bool, not {value!r}"
            )
        properties[name] = value if convert is None else convert(key, value)
    return properties


def producer_properties(config: Any) -> dict[str, Any]:
    """librdkafka producer properties for a validated ``pylog.producer.ProducerConfig``.

    kafka-python's names map to librdkafka's (docs/kafka.md, "What differs"); its transport keys
    (``config.transport_settings``) map where librdkafka has the same setting and raise
    ``UnsupportedError`` where it has none; a value of None means "not set" (kafka-python's
    default) and is left out. pylog's test-only keys (``python_core``, ``sticky_seed``) are
    embedded-only. ``max_block_ms`` and ``bootstrap_servers`` are not librdkafka properties: the
    core reads them with ``producer_block_ms`` and checks the latter with ``check_bootstrap``."""
    if config.python_core:
        raise UnsupportedError("python_core: the kafka backend has one producer core (librdkafka's)")
    if config.sticky_seed is not None:
        raise UnsupportedError(
            "sticky_seed: librdkafka chooses sticky partitions itself (sticky.partitioning.linger.ms)"
        )
    acks_all = config.acks == -1
    properties: dict[str, Any] = {
        "acks": "all" if acks_all else str(config.acks),
        "compression.type": config.compression_type or "none",
        # why max(): librdkafka refuses 0; kafka-python's 0 ("no batching") is a batch of one record
        "batch.size": max(int(config.batch_size), MIN_BATCH_SIZE),
        "linger.ms": config.linger_ms,
        "message.max.bytes": int(config.max_request_size),
        # why only with acks=all: Kafka's Java producer turns idempotence off when acks != all was
        # asked (clients/src/main/java/org/apache/kafka/clients/producer/ProducerConfig.java,
        # postProcessAndValidateIdempotenceConfigs); librdkafka would refuse the combination
        "enable.idempotence": bool(config.enable_idempotence) and acks_all,
        "delivery.timeout.ms": DEFAULT_DELIVERY_TIMEOUT_MS,
        # why: Java's murmur2 of the key (BuiltInPartitioner.partitionForKey), random/sticky
        # partitions for null keys; a user partitioner chooses the partition in Python instead
        "partitioner": "murmur2_random",
        # why: librdkafka's producer would create unknown topics itself (its default), even
        # when the Log was opened with auto_create_topics=False; pylog creates them through
        # the backend (KafkaBackend.partitions_for), which knows that setting
        "allow.auto.create.topics": False,
    }
    if config.client_id is not None:
        properties["client.id"] = config.client_id
    properties.update(
        transport_properties(
            "producer",
            config.transport_settings,
            PRODUCER_TRANSPORT_PROPERTIES,
            PRODUCER_TRANSPORT_UNSUPPORTED,
        )
    )
    return properties


def producer_block_ms(config: Any) -> int:
    """``max_block_ms`` of a ``ProducerConfig``: how long ``send`` may wait for queue room."""
    for key, value in config.transport_settings:
        if key == "max_block_ms" and value is not None:
            return _int(key, value)
    return DEFAULT_MAX_BLOCK_MS


def check_bootstrap(settings: Any, url: str) -> None:
    """A client's own ``bootstrap_servers`` (kafka-python programs pass it; ``settings``: ``(key,
    value)`` pairs) must name the Log's cluster: the brokers are the URL's; a different list
    raises ``InvalidConfigError``."""
    for key, value in settings:
        if key != "bootstrap_servers" or value is None:
            continue
        given = [value] if isinstance(value, str) else list(value)
        servers = {s.strip() for item in given for s in str(item).split(",") if s.strip()}
        if servers != set(bootstrap_servers(url).split(",")):
            raise InvalidConfigError(
                f"bootstrap_servers={value!r} differs from the cluster of the Log ({url}); "
                "the Log's URL names the brokers"
            )


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidConfigError(f"{key} must be an integer >= 0, not {value!r}")
    return value


#: kafka-python's assignor names (``ConsumerConfig.partition_assignment_strategy``) as
#: librdkafka's ``partition.assignment.strategy`` names
ASSIGNOR_NAMES = {"range": "range", "roundrobin": "roundrobin", "cooperative-sticky": "cooperative-sticky"}


def librdkafka_assignors(names: tuple[str, ...]) -> list[str]:
    """librdkafka's assignor list for kafka-python's. librdkafka refuses a list mixing the
    cooperative assignor with eager ones; Java's consumer runs such a list with the protocol all
    of them support, eager (clients/src/main/java/org/apache/kafka/clients/consumer/internals/
    ConsumerCoordinator.java, ``protocol``), so the eager ones are kept, as there."""
    mapped = [ASSIGNOR_NAMES[name] for name in names]
    eager = [name for name in mapped if name != "cooperative-sticky"]
    return eager or mapped


def consumer_properties(config: Any, given: Mapping[str, Any] | None, url: str) -> dict[str, Any]:
    """librdkafka consumer properties for a validated ``pylog.consumer.ConsumerConfig``, plus
    those of the kafka-python keys the embedded consumer ignores, found in ``given`` (the raw
    keyword arguments, since ``ConsumerConfig`` drops them): mapped when librdkafka has them,
    ``UnsupportedError`` naming the key when it does not (``transport_properties``, the rule the
    producer follows too); its ``bootstrap_servers`` must name the cluster at ``url``
    (``check_bootstrap``).

    pylog commits itself (``enable.auto.commit`` and ``enable.auto.offset.store`` off) and
    resets positions itself (``auto.offset.reset=error``: an out-of-range fetch comes back as an
    ``_AUTO_OFFSET_RESET`` error the consumer turns into the embedded rule). Without a
    ``group_id`` confluent-kafka still wants a ``group.id``: a name of this consumer's own,
    never joined (every partition is assigned manually) and never committed to."""
    from pylog.consumer import IGNORED_KEYS as IGNORED_CONSUMER_KEYS

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
        "partition.assignment.strategy": ",".join(librdkafka_assignors(config.partition_assignment_strategy)),
    }
    if config.group_instance_id is not None:
        properties["group.instance.id"] = config.group_instance_id
    transport = [(key, value) for key, value in (given or {}).items() if key in IGNORED_CONSUMER_KEYS]
    check_bootstrap(transport, url)
    properties.update(
        transport_properties(
            "consumer", transport, CONSUMER_TRANSPORT_PROPERTIES, CONSUMER_TRANSPORT_UNSUPPORTED
        )
    )
    return properties
