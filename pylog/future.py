"""Futures of produced records, with kafka-python's API.

``FutureRecordMetadata`` (what ``Producer.send`` returns) and ``FutureBatchMetadata`` (what
``Producer.send_batch`` returns) both follow kafka-python's ``kafka.future.Future``:
``get(timeout=None)``, ``add_callback(f, *args, **kwargs)``, ``add_errback``, ``add_both``,
``is_done`` (an attribute-like property, as in kafka-python), ``succeeded()``, ``failed()``,
``value`` and ``exception``.

Cost model: a record's future holds only its batch's shared ``ProduceResult`` and its index in the
batch (plus its sizes and timestamp); the ``RecordMetadata`` is built when first asked for. One
``threading.Event`` and one callback list exist per *batch*, not per record.

Thread-safety: a ``ProduceResult`` is completed once, by whichever thread wrote (and, for
``acks="all"``, synced) its batch; callbacks run in that thread, after the result is visible to
``get``. A callback registered after completion runs at once in the registering thread. A callback
that raises is logged (logger ``pylog.producer``) and does not stop the others, as in kafka-python.
"""

from __future__ import annotations

import bisect
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from pylog.errors import KafkaTimeoutError
from pylog.types import RecordMetadata, TopicPartition

_log = logging.getLogger("pylog.producer")


#: ``fill_ts`` of a segment whose engine-stamped time is read on demand (``ProduceResult.resolver``)
UNKNOWN_TIMESTAMP = -2


class BatchMetadata(NamedTuple):
    """One engine batch written by ``send_batch``: records ``base_offset .. base_offset+count-1``
    of ``partition``, in the order given (a list too large for one batch is written as several)."""

    topic: str
    partition: int
    base_offset: int
    count: int
    timestamp: int  # the batch's timestamp when the records had none (or LogAppendTime), else -1


class ProduceResult:
    """The outcome of one accumulated batch, shared by the futures of its records.

    ``segments``: ``[(first_index, base_offset, fill_ts, append_ts)]``, ascending — one per engine
    batch (several when a batch too large for the log was split); ``fill_ts`` is the timestamp
    records without ``timestamp_ms`` got (-1 when all had one), ``append_ts`` the LogAppendTime
    that overrides every record's (-1 on a CreateTime topic). ``record_errors``: the
    error of single records that failed alone (too large even in a batch of their own).
    """

    __slots__ = (
        "_callbacks",
        "_latch",
        "_lock",
        "done",
        "driver",
        "error",
        "record_errors",
        "resolver",
        "segments",
        "tp",
    )

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        self.done = False
        self.error: BaseException | None = None
        self.segments: list[tuple[int, int, int, int]] = []
        self.record_errors: dict[int, BaseException] | None = None
        # why a held lock, not a threading.Event: one is made per batch, and an Event (a
        # Condition, its lock and waiter deque) cost more than the rest of the result; released
        # once when the result finishes, every waiter acquires and re-releases it
        self._latch = threading.Lock()
        self._latch.acquire()
        self._lock = threading.Lock()
        self._callbacks: list[tuple[Any, Callable[[Any], Any] | None, Callable[[Any], Any] | None]] = []
        #: set by the producer core: ``driver()`` lets a waiting ``get`` write a batch that is due
        #: (linger passed) in the waiting thread, so waiters share a group commit
        self.driver: Callable[[], None] | None = None
        #: set by the producer core: ``resolver(base_offset)`` reads the timestamp the engine gave
        #: a batch whose ``fill_ts`` is ``UNKNOWN_TIMESTAMP`` (read only when someone asks)
        self.resolver: Callable[[int], int] | None = None

    def complete(
        self,
        segments: list[tuple[int, int, int, int]],
        record_errors: dict[int, BaseException] | None = None,
    ) -> None:
        self.segments = segments
        self.record_errors = record_errors or None
        self._finish()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._finish()

    def _finish(self) -> None:
        self.driver = None
        with self._lock:
            if self.done:  # why: a close() that gave up and a late writer may both finish it
                return
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
        self._latch.release()
        for owner, on_success, on_error in callbacks:
            owner._run(on_success, on_error)

    def wait(self, timeout: float | None) -> bool:
        driver = self.driver
        if driver is not None and not self.done:
            driver()
        if self.done:
            return True
        latch = self._latch
        if latch.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            latch.release()
        return self.done

    def locate(self, index: int) -> tuple[int, int, int]:
        """(offset, fill_ts, append_ts) of record ``index``."""
        segments = self.segments
        if len(segments) == 1:
            first, base, fill_ts, append_ts = segments[0]
        else:
            first, base, fill_ts, append_ts = segments[bisect.bisect_right(segments, (index, 2**63)) - 1]
        if fill_ts == UNKNOWN_TIMESTAMP and self.resolver is not None:
            fill_ts = self.resolver(base)
            self.segments = [(f, b, fill_ts if b == base else t, a) for f, b, t, a in self.segments]
        return base + index - first, fill_ts, append_ts

    def subscribe(self, owner: Any, on_success: Any, on_error: Any) -> bool:
        """Register ``owner``'s callbacks; False when already done (the caller runs them)."""
        with self._lock:
            if self.done:
                return False
            self._callbacks.append((owner, on_success, on_error))
            return True


class FutureAPI:
    """kafka-python's Future API over ``self._result`` (a ``ProduceResult``, or anything with its
    ``done``, ``wait(timeout)`` and ``subscribe(owner, on_success, on_error)``) and
    ``self._outcome()``. No ``__init__`` and no slots of its own, so that a subclass may be made
    without one (the kafka backend's per-record future, pylog/kafka/producer_core.py)."""

    __slots__ = ()
    _result: Any

    def _outcome(self) -> tuple[Any, BaseException | None]:
        raise NotImplementedError

    @property
    def is_done(self) -> bool:
        return self._result.done

    def succeeded(self) -> bool:
        return self._result.done and self._outcome()[1] is None

    def failed(self) -> bool:
        return self._result.done and self._outcome()[1] is not None

    @property
    def value(self) -> Any:
        return self._outcome()[0] if self._result.done else None

    @property
    def exception(self) -> BaseException | None:
        return self._outcome()[1] if self._result.done else None

    def get(self, timeout: float | None = None) -> Any:
        """Block until the batch is written (and synced for ``acks="all"``); the metadata, or the
        batch's error raised. ``timeout`` in seconds → ``KafkaTimeoutError`` when it runs out."""
        if not self._result.done and not self._result.wait(timeout):
            raise KafkaTimeoutError(f"the record was not written within {timeout} s")
        value, error = self._outcome()
        if error is not None:
            raise error
        return value

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureAPI:
        """Call ``f(*args, value, **kwargs)`` on success (at once if already succeeded)."""
        return self._add(functools.partial(f, *args, **kwargs) if args or kwargs else f, None)

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureAPI:
        """Call ``f(*args, exception, **kwargs)`` on failure (at once if already failed)."""
        return self._add(None, functools.partial(f, *args, **kwargs) if args or kwargs else f)

    def add_both(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureAPI:
        self.add_callback(f, *args, **kwargs)
        return self.add_errback(f, *args, **kwargs)

    def _add(self, on_success: Any, on_error: Any) -> FutureAPI:
        if not self._result.subscribe(self, on_success, on_error):
            self._run(on_success, on_error)
        return self

    def _run(self, on_success: Any, on_error: Any) -> None:
        value, error = self._outcome()
        callback, arg = (on_success, value) if error is None else (on_error, error)
        if callback is None:
            return
        run_callback(callback, arg)


class _Future(FutureAPI):
    """``FutureAPI`` over a ``ProduceResult``; subclasses define ``_compute``."""

    __slots__ = ("_result", "_value")

    def __init__(self, result: ProduceResult):
        self._result = result
        self._value: Any = None

    def _compute(self) -> tuple[Any, BaseException | None]:
        raise NotImplementedError

    def _outcome(self) -> tuple[Any, BaseException | None]:
        if self._value is None:
            self._value = self._compute()
        return self._value


class FutureRecordMetadata(_Future):
    """The future of one ``send``: resolves to ``pylog.RecordMetadata``."""

    __slots__ = ("_header_size", "_index", "_key_size", "_timestamp_ms", "_value_size")

    def __init__(
        self,
        result: ProduceResult,
        index: int,
        timestamp_ms: int | None,
        key_size: int,
        value_size: int,
        header_size: int,
    ):
        self._result = result
        self._value = None
        self._index = index
        self._timestamp_ms = timestamp_ms
        self._key_size = key_size
        self._value_size = value_size
        self._header_size = header_size

    def _compute(self) -> tuple[Any, BaseException | None]:
        return record_outcome(
            self._result, self._index, self._timestamp_ms, self._key_size, self._value_size, self._header_size
        )


def record_outcome(
    result: ProduceResult,
    index: int,
    timestamp_ms: int | None,
    key_size: int,
    value_size: int,
    header_size: int,
) -> tuple[RecordMetadata | None, BaseException | None]:
    """``(metadata, None)`` or ``(None, error)`` of record ``index`` of a completed batch: the one
    rule both future types use (this class and the Rust ``pylog._native.RecordFuture``)."""
    if result.error is not None:
        return None, result.error
    if result.record_errors is not None and index in result.record_errors:
        return None, result.record_errors[index]
    offset, fill_ts, append_ts = result.locate(index)
    timestamp = append_ts if append_ts >= 0 else fill_ts if timestamp_ms is None else timestamp_ms
    tp = result.tp
    return (
        RecordMetadata(
            tp.topic, tp.partition, tp, offset, timestamp, None, key_size, value_size, header_size
        ),
        None,
    )


def run_callback(callback: Callable[[Any], Any], arg: Any) -> None:
    """Run a future's callback; one that raises is logged, as kafka-python does."""
    try:
        callback(arg)
    except Exception:
        _log.exception("a producer future's callback raised")


class FutureBatchMetadata(_Future):
    """The future of one ``send_batch``: resolves to a list of ``BatchMetadata`` (usually one)."""

    __slots__ = ("_count",)

    def __init__(self, result: ProduceResult, count: int):
        self._result = result
        self._value = None
        self._count = count

    def _compute(self) -> tuple[Any, BaseException | None]:
        result = self._result
        if result.error is not None:
            return None, result.error
        if result.record_errors:
            return None, next(iter(result.record_errors.values()))
        for first, *_ in result.segments:
            result.locate(first)  # resolves engine-stamped times
        bounds = [s[0] for s in result.segments[1:]] + [self._count]
        return [
            BatchMetadata(
                result.tp.topic,
                result.tp.partition,
                base,
                end - first,
                append_ts if append_ts >= 0 else fill_ts,
            )
            for (first, base, fill_ts, append_ts), end in zip(result.segments, bounds, strict=True)
        ], None


def failed_record_future(tp: TopicPartition, error: BaseException, key_size: int, value_size: int) -> Any:
    """A future that failed before reaching a batch (Kafka's producer returns one rather than
    raising for per-record errors such as a record over ``max_request_size``)."""
    result = ProduceResult(tp)
    result.fail(error)
    return FutureRecordMetadata(result, 0, None, key_size, value_size, -1)


__all__ = ["BatchMetadata", "FutureBatchMetadata", "FutureRecordMetadata", "ProduceResult"]
