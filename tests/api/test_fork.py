"""Clients across ``fork()``: a child never acts for its parent's producers and consumers.

A child forked after a producer or consumer was made inherits a copy of it: the producer's pending
records and the consumer's group membership. Both are the parent's. Before, a child that closed
its copy of the log (or exited normally: the producer's atexit close) wrote the parent's pending
records a second time, and a child's close made the parent's consumer leave its group (its next
commit failed with ``CommitFailedError``). The child finds them closed instead, and can make its
own clients. (A group consumer is handled the same way, but a test of it is not here: SQLite is not
fork-safe while another thread of the parent is inside it, as a heartbeat thread may be, and the
child then hangs; a child should open its own ``Log``.) On the kafka backend the inherited
librdkafka handles are the parent's too (their threads do not exist in the child): the same rules.
"""

from __future__ import annotations

import faulthandler
import os
import time
import traceback
from collections.abc import Callable

import pytest

import pylog
from pylog.errors import ClientClosedError
from pylog.types import TopicPartition

T0 = TopicPartition("t", 0)
READ_DEADLINE_S = 10.0
#: a child still running after this long prints its threads' stacks and exits 1 (a hang, reported)
CHILD_DEADLINE_S = 60.0


def run_in_child(body: Callable[[], None]) -> None:
    """Fork; run ``body`` in the child; fail here if it raised (its traceback on stderr)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 0
        faulthandler.dump_traceback_later(CHILD_DEADLINE_S, exit=True)
        try:
            body()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed or hung (its stacks are above)"


def values(log: pylog.Log) -> list[bytes]:
    """Every value of partition t-0, read up to its end offset (a broker's fetch may come late)."""
    consumer = log.consumer(auto_offset_reset="earliest")
    try:
        consumer.assign([T0])
        end = consumer.end_offsets([T0])[T0]
        got: list[bytes] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while consumer.position(T0) < end:
            assert time.monotonic() < deadline, f"read {len(got)} of {end} records"
            got.extend(r.value for r in consumer.poll(timeout_ms=200).get(T0, []))
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("core", ["default", "python"])
def test_child_never_writes_the_parents_pending_records(log: pylog.Log, core: str) -> None:
    if core == "python" and log.engine == "kafka":
        pytest.skip("python_core picks the embedded backend's pure-Python producer core; kafka has one")
    log.create_topic("t")
    producer = log.producer(linger_ms=60_000, python_core=core == "python")
    pending = producer.send("t", b"parent")

    def child() -> None:
        producer.flush()  # nothing of the parent's is written
        own = log.producer()
        assert own.send("t", b"child").get(timeout=10).offset == 0
        log.close()  # closes both producers: the inherited one writes nothing
        with pytest.raises(ClientClosedError, match="forked"):
            producer.send("t", b"inherited")

    run_in_child(child)
    producer.flush()
    assert pending.get(timeout=10).offset == 1
    assert values(log) == [b"child", b"parent"]
