"""``pylog bench``: the engines' workloads against plain baselines, measured in one run.

The package (one concept per module):
- model.py: ``Sample``, ``LatencySample``, ``Workload``, ``Context``, ``Scale``, ``Row``;
- runner.py: interleaved repetitions, medians, ratios;
- report.py: the table and the JSON document, through one number formatter (``format_figure``);
- workloads/: the workloads, one module per concept, and the registry with the plug-in points;
- os_write_baseline.py, sqlite3_baseline.py: the baselines; twainmq_baseline.py, scaling.py and
  plot.py come from the bench-extras work and plug in where workloads/__init__.py says;
- measure.py: helpers shared with the pytest benchmarks of benchmarks/ (re-exported here, the
  names they import from ``pylog.bench``);
- the command itself (arguments, the run, the output files) is pylog/cli/bench_command.py.
"""

from __future__ import annotations

from pylog.bench.measure import (
    BATCH_RECORDS,
    OS_WRITE_CHUNK_BYTES,
    VALUE_BYTES,
    Interleaved,
    batch_spans,
    fill_log,
    idle_wait_cpu_share,
    interleaved_append,
    make_text_values,
    make_unclean,
    make_values,
    percentile,
    settle_page_cache,
    tight_appenders,
    wakeup_latencies,
)
from pylog.bench.model import Context, LatencySample, Row, Sample, Scale, Workload

__all__ = [
    "BATCH_RECORDS",
    "OS_WRITE_CHUNK_BYTES",
    "VALUE_BYTES",
    "Context",
    "Interleaved",
    "LatencySample",
    "Row",
    "Sample",
    "Scale",
    "Workload",
    "batch_spans",
    "fill_log",
    "idle_wait_cpu_share",
    "interleaved_append",
    "make_text_values",
    "make_unclean",
    "make_values",
    "percentile",
    "settle_page_cache",
    "tight_appenders",
    "wakeup_latencies",
]
