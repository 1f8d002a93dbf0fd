"""The registry of ``pylog bench`` workloads, and the plug-in points of bench-extras' modules.

Each module of this package owns one concept (produce.py: the producer's send()/send_batch();
durable.py: acks="all"; consume.py: poll()/poll_columns(); seek.py: seeks by offset and by
timestamp; compaction.py; latency.py: end to end; recovery.py: open after a crash) and offers
``workloads(scale) -> list[Workload]``. ``registry(scale)`` lists them all in the suite's order,
then the ``scaling`` group of pylog/bench/scaling.py.

Plug-in points (pylog/bench/twainmq_baseline.py and scaling.py, from the bench-extras work):

- ``twainmq_contender(function, **params)``: the twainmq contender of a workload, calling
  ``pylog.bench.twainmq_baseline.<function>(ctx, **params) -> Sample``; None (the contender is
  left out) when twainmq itself is missing (``twainmq_baseline.available()`` false) or ``twainmq_baseline.supports(function, **params)`` is false (twainmq
  has no batch API, no codec choice, no columnar reads). The functions the workloads call, and
  what ``ctx.shared`` holds then:
    - ``produce(ctx, *, batch: bool, compression: str | None)``: write ``ctx.shared["values"]``
      (a list of bytes) as records, one by one (``batch`` False) or in lists of
      ``ctx.shared["batch_records"]``; amount = records written;
    - ``produce_durable(ctx, *, threads: int, records_per_thread: int)``: each thread writes
      ``ctx.shared["value"]`` ``records_per_thread`` times, each write synced before the next;
      amount = records;
    - ``consume(ctx, *, columns: bool)``: write ``ctx.shared["values"]`` untimed, then read them
      all back timed; amount = records read;
    - ``latency(ctx, *, processes: int) -> LatencySample``: ``ctx.scale.wakeup_rounds`` records,
      one in flight, write to a tailing reader in this process or another (p50, p99, p99.9).
- ``scaling.workloads(scale) -> list[Workload]`` (group ``scaling``), and
  ``scaling.summary(rows: list[dict]) -> dict``: the document's ``"scaling"`` section from the
  JSON rows of that group; it may set ``"ok"`` False and a ``"note"`` on the rows it judges
  (flat append, log-like seek) before the table is printed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pylog.bench import scaling, twainmq_baseline
from pylog.bench.model import Context, Sample, Scale, Workload

#: this package's workload modules, in the suite's order
MODULES = ("produce", "durable", "consume", "seek", "compaction", "latency", "recovery")


def twainmq_note() -> str:
    """What the table says about twainmq: nothing when it ran, why not otherwise."""
    return "" if twainmq_baseline.available() else twainmq_baseline.MISSING_NOTE


def twainmq_contender(function: str, **params: Any) -> Callable[[Context], Sample] | None:
    """The twainmq contender calling ``twainmq_baseline.<function>(ctx, **params)``, or None."""
    if not twainmq_baseline.available() or not twainmq_baseline.supports(function, **params):
        return None
    target = getattr(twainmq_baseline, function)

    def run(ctx: Context) -> Sample:
        return target(ctx, **params)

    return run


def with_twainmq(contenders: dict, function: str, **params: Any) -> dict:
    """``contenders`` plus twainmq's when it is there."""
    twainmq = twainmq_contender(function, **params)
    return contenders | {"twainmq": twainmq} if twainmq is not None else contenders


def registry(scale: Scale) -> list[Workload]:
    """Every workload of the suite at ``scale``, in order."""
    out: list[Workload] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"pylog.bench.workloads.{name}").workloads(scale))
    out.extend(scaling.workloads(scale))
    return out


def sections(rows: list[dict]) -> dict[str, Any]:
    """Extra sections of the JSON document (``"scaling"``) from its rows (which they may mark)."""
    scaling_rows = [row for row in rows if row["group"] == "scaling"]
    if not scaling_rows:
        return {}
    return {"scaling": scaling.summary(scaling_rows)}
