"""The registry of ``pylog bench`` workloads, and the plug-in points of bench-extras' modules.

Each module of this package owns one concept (produce.py: the producer's send()/send_batch();
durable.py: acks="all"; consume.py: poll()/poll_columns(); seek.py: seeks by offset and by
timestamp; compaction.py; latency.py: end to end; recovery.py: open after a crash) and offers
``workloads(scale) -> list[Workload]``. ``registry(scale)`` lists them all in the suite's order,
then the ``scaling`` group of pylog/bench/scaling.py when that module exists.

Plug-in points (pylog/bench/twainmq_baseline.py and scaling.py are bench-extras'; absent modules
are skipped cleanly):

- ``twainmq_contender(function, **params)``: the twainmq contender of a workload, calling
  ``pylog.bench.twainmq_baseline.<function>(ctx, **params) -> Sample``; None (the contender is
  left out) when the module, twainmq itself (``twainmq_baseline.available()`` false) or the
  function is missing, or ``twainmq_baseline.supports(function, **params)`` is false (twainmq
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
from types import ModuleType
from typing import Any

from pylog.bench.model import Context, Sample, Scale, Workload

#: this package's workload modules, in the suite's order
MODULES = ("produce", "durable", "consume", "seek", "compaction", "latency", "recovery")

TWAINMQ_MISSING = "twainmq not installed: pip install 'pylog[bench]'"


def _optional(module: str) -> ModuleType | None:
    """``pylog.bench.<module>`` or None when that file does not exist (not the import errors
    inside it: those must show)."""
    try:
        return importlib.import_module(f"pylog.bench.{module}")
    except ModuleNotFoundError as error:
        if error.name == f"pylog.bench.{module}":
            return None
        raise


def twainmq_module() -> ModuleType | None:
    """pylog/bench/twainmq_baseline.py when it exists and twainmq is installed, else None."""
    module = _optional("twainmq_baseline")
    if module is None:
        return None
    available = getattr(module, "available", None)
    return module if available is None or available() else None


def twainmq_note() -> str:
    """What the table says about twainmq: nothing when it ran, why not otherwise."""
    module = _optional("twainmq_baseline")
    if module is None:
        return ""
    return "" if twainmq_module() is not None else TWAINMQ_MISSING


def twainmq_contender(function: str, **params: Any) -> Callable[[Context], Sample] | None:
    """The twainmq contender calling ``twainmq_baseline.<function>(ctx, **params)``, or None."""
    module = twainmq_module()
    target = getattr(module, function, None) if module is not None else None
    supports = getattr(module, "supports", None)
    if target is None or (supports is not None and not supports(function, **params)):
        return None

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
    scaling = _optional("scaling")
    if scaling is not None:
        out.extend(scaling.workloads(scale))
    return out


def sections(rows: list[dict]) -> dict[str, Any]:
    """Extra sections of the JSON document (``"scaling"``) from its rows (which they may mark)."""
    scaling = _optional("scaling")
    scaling_rows = [row for row in rows if row["group"] == "scaling"]
    if scaling is None or not scaling_rows or not hasattr(scaling, "summary"):
        return {}
    return {"scaling": scaling.summary(scaling_rows)}
