"""pytest-benchmark setup: every benchmark runs on both engines and checks its own result.

CI runs these with ``--benchmark-disable`` (each body once, as a smoke test). For figures, build
in release mode and run ``pytest benchmarks --benchmark-only -p no:xdist`` with
``PYLOG_BENCH_SCALE=full``; ``pylog bench`` prints the same workloads as one table of ratios.
"""

from __future__ import annotations

import os

import pytest

from pylog.bench import Scale

FULL = os.environ.get("PYLOG_BENCH_SCALE", "smoke") == "full"


@pytest.fixture(params=["native", "reference"])
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale() if FULL else Scale.quick()
