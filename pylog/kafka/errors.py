"""How Kafka's error codes become ``pylog.errors`` classes: the one owner of that mapping.

confluent-kafka reports an error as a ``confluent_kafka.KafkaError`` (``code()``, ``name()``,
``str()``, ``retriable()``), alone (delivery reports, ``Message.error()``, futures of the admin
client) or inside a ``confluent_kafka.KafkaException``. Its codes are Kafka's protocol error codes
(clients/src/main/java/org/apache/kafka/common/protocol/Errors.java: ``UNKNOWN_TOPIC_OR_PART`` = 3,
``TOPIC_ALREADY_EXISTS`` = 36...) and librdkafka's local ones, which are negative and named with a
leading underscore (``_TIMED_OUT``, ``_TRANSPORT``, ``_ALL_BROKERS_DOWN``...).

``translate(error, context)`` gives the ``pylog.errors`` instance the embedded backend raises in
the same situation, with ``context`` (what was being done: "create topic 'x'") in front of
Kafka's own text; ``__cause__`` is set to the confluent exception when there is one. A code that
no narrower class covers becomes ``BrokerResponseError`` carrying ``code``, ``name`` and
``retriable``, so nothing is lost. Pure functions; thread-safe.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pylog import errors

# Kafka's codes (Errors.java) and librdkafka's local ones, by name, to the class pylog raises.
# Names rather than numbers keep the table readable; KafkaError has one attribute per name.
_BY_NAME: dict[str, type[errors.PylogError]] = {
    # topics and partitions
    "UNKNOWN_TOPIC_OR_PART": errors.UnknownTopicOrPartitionError,
    "_UNKNOWN_TOPIC": errors.UnknownTopicOrPartitionError,
    "_UNKNOWN_PARTITION": errors.UnknownTopicOrPartitionError,
    "UNKNOWN_TOPIC_ID": errors.UnknownTopicOrPartitionError,
    "TOPIC_ALREADY_EXISTS": errors.TopicAlreadyExistsError,
    "TOPIC_EXCEPTION": errors.InvalidTopicError,
    "INVALID_PARTITIONS": errors.InvalidPartitionsError,
    "INVALID_CONFIG": errors.InvalidConfigError,
    "INVALID_REPLICATION_FACTOR": errors.InvalidConfigError,
    "INVALID_REPLICA_ASSIGNMENT": errors.InvalidConfigError,
    "POLICY_VIOLATION": errors.InvalidConfigError,
    "_INVALID_ARG": errors.InvalidConfigError,
    # records
    "MSG_SIZE_TOO_LARGE": errors.RecordTooLargeError,
    "RECORD_LIST_TOO_LARGE": errors.RecordTooLargeError,
    "INVALID_RECORD": errors.InvalidRecordError,
    "INVALID_TIMESTAMP": errors.InvalidRecordError,
    "INVALID_MSG": errors.InvalidRecordError,
    "_BAD_MSG": errors.InvalidRecordError,
    "OFFSET_OUT_OF_RANGE": errors.OffsetOutOfRangeError,
    "_AUTO_OFFSET_RESET": errors.NoOffsetForPartitionError,
    # time and transport
    "_TIMED_OUT": errors.KafkaTimeoutError,
    "_MSG_TIMED_OUT": errors.KafkaTimeoutError,
    "REQUEST_TIMED_OUT": errors.KafkaTimeoutError,
    "_TIMED_OUT_QUEUE": errors.KafkaTimeoutError,
    "_TRANSPORT": errors.KafkaConnectionError,
    "_ALL_BROKERS_DOWN": errors.KafkaConnectionError,
    "_RESOLVE": errors.KafkaConnectionError,
    "BROKER_NOT_AVAILABLE": errors.KafkaConnectionError,
    "NETWORK_EXCEPTION": errors.KafkaConnectionError,
    # security
    "SASL_AUTHENTICATION_FAILED": errors.AuthenticationError,
    "_AUTHENTICATION": errors.AuthenticationError,
    "_SSL": errors.AuthenticationError,
    "TOPIC_AUTHORIZATION_FAILED": errors.AuthorizationError,
    "GROUP_AUTHORIZATION_FAILED": errors.AuthorizationError,
    "CLUSTER_AUTHORIZATION_FAILED": errors.AuthorizationError,
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": errors.AuthorizationError,
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED": errors.AuthorizationError,
    # groups
    "GROUP_ID_NOT_FOUND": errors.GroupIdNotFoundError,
    "NON_EMPTY_GROUP": errors.NonEmptyGroupError,
    "INVALID_GROUP_ID": errors.InvalidGroupIdError,
    "ILLEGAL_GENERATION": errors.CommitFailedError,
    "UNKNOWN_MEMBER_ID": errors.CommitFailedError,
    "REBALANCE_IN_PROGRESS": errors.CommitFailedError,
    "_ASSIGNMENT_LOST": errors.CommitFailedError,
    "STALE_MEMBER_EPOCH": errors.CommitFailedError,
    "FENCED_MEMBER_EPOCH": errors.CommitFailedError,
    "INCONSISTENT_GROUP_PROTOCOL": errors.InconsistentGroupProtocolError,
    "FENCED_INSTANCE_ID": errors.FencedInstanceIdError,
    # the client itself
    "_DESTROY": errors.ClientClosedError,
    "_UNSUPPORTED_FEATURE": errors.UnsupportedError,
    "UNSUPPORTED_VERSION": errors.UnsupportedError,
    "UNSUPPORTED_FOR_MESSAGE_FORMAT": errors.UnsupportedError,
    "TOPIC_DELETION_DISABLED": errors.UnsupportedError,
}

_BY_CODE: dict[int, type[errors.PylogError]] = {
    getattr(KafkaError, name): cls for name, cls in _BY_NAME.items() if hasattr(KafkaError, name)
}


def kafka_error_of(error: BaseException | KafkaError) -> KafkaError | None:
    """The ``KafkaError`` a confluent exception carries (or ``error`` itself), else None."""
    if isinstance(error, KafkaError):
        return error
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0]
    return None


def error_class(code: int) -> type[errors.PylogError] | None:
    """The ``pylog.errors`` class of a Kafka/librdkafka error code, or None when unmapped."""
    return _BY_CODE.get(code)


def translate(error: BaseException | KafkaError, context: str = "") -> BaseException:
    """The ``pylog.errors`` exception for a confluent ``KafkaError``/``KafkaException``.

    ``context`` says what was being done and comes first in the message ("create topic 'x': ...").
    Exceptions that are not Kafka's (``TypeError``, ``BufferError``, a ``pylog.errors`` one) are
    returned unchanged, so callers can pass anything they caught."""
    if isinstance(error, errors.PylogError):
        return error
    kafka_error = kafka_error_of(error)
    if kafka_error is None:
        return error  # type: ignore[return-value]
    text = kafka_error.str() or kafka_error.name()
    message = f"{context}: {text}" if context else text
    cls = _BY_CODE.get(kafka_error.code())
    made: BaseException
    if cls is None:
        made = errors.BrokerResponseError(
            f"{message} ({kafka_error.name()})",
            code=kafka_error.code(),
            name=kafka_error.name(),
            retriable=bool(kafka_error.retriable()),
        )
    else:
        made = cls(message)
    if isinstance(error, BaseException):
        made.__cause__ = error
    return made


def raise_for(error: BaseException | KafkaError | None, context: str = "") -> None:
    """Raise ``translate(error, context)`` unless ``error`` is None (a ``Message.error()`` of a
    good message, a delivery report without error)."""
    if error is None:
        return
    made = translate(error, context)
    if made is error and isinstance(error, BaseException):
        raise error
    raise made


def is_code(error: Any, *names: str) -> bool:
    """Whether a ``KafkaError``/``KafkaException`` has one of the codes ``names`` (KafkaError's
    attribute names, e.g. ``"_PARTITION_EOF"``)."""
    kafka_error = kafka_error_of(error)
    if kafka_error is None:
        return False
    code = kafka_error.code()
    return any(getattr(KafkaError, name, None) == code for name in names)
