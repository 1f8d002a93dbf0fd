"""The scaling group of ``pylog bench`` (pylog/bench/scaling.py): a tiny run gives the JSON
shape with sane, growing sizes; the findings judge flat append and log-like seek (and say when
they do not hold) without ever failing a row; the CLI puts the section in its document."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
from helpers import skip_if_engine_missing

from pylog.bench import runner, scaling
from pylog.bench.model import Scale


@pytest.fixture
def tiny(monkeypatch):
    """Quick scale with one repetition and log sizes of 100 to 10,000 records."""
    monkeypatch.setattr(scaling, "QUICK_SIZES", (100, 1_000, 10_000))
    scale = Scale.quick()
    scale.repeat = 1
    return scale


def test_the_sizes_span_100x_over_three_sizes():
    for scale in (Scale(), Scale.quick()):
        sizes = scaling.sizes(scale)
        assert len(sizes) >= 3 and list(sizes) == sorted(set(sizes))
        assert sizes[-1] >= 100 * sizes[0]
    assert max(scaling.QUICK_SIZES) < max(scaling.SIZES)


def test_a_tiny_run_gives_the_json_shape(tiny, tmp_path):
    skip_if_engine_missing("native")
    suite = scaling.workloads(tiny)
    assert [w.name for w in suite] == ["scaling-append", "scaling-seek"]
    assert suite[0].metrics == ("100", "1k", "10k")
    assert suite[1].metrics == (
        "offset-100",
        "offset-1k",
        "offset-10k",
        "timestamp-100",
        "timestamp-1k",
        "timestamp-10k",
    )
    rows = [asdict(row) for row in runner.run_suite(suite, tiny, str(tmp_path))]
    assert all(row["ok"] for row in rows), [row["note"] for row in rows]
    section = scaling.summary(rows)
    assert section["sizes"] == [100, 1_000, 10_000]
    for key in ("append", "seek_offset_us", "seek_timestamp_us"):
        assert set(section[key]) == {"native", "reference"}
        for figures in section[key].values():
            assert len(figures) == 3 and all(f is not None and f > 0 and math.isfinite(f) for f in figures)
    # the JSON is records per second; the row shows k rec/s
    by_metric = {(row["workload"], row["metric"]): row for row in rows}
    append_100 = by_metric[("scaling-append", "100")]["figures"]["native"]
    assert section["append"]["native"][0] == pytest.approx(append_100 * 1e3)
    assert set(section["findings"]) == {"native", "reference"}
    for found in section["findings"].values():
        assert isinstance(found["append_flat"], bool) and isinstance(found["seek_log_like"], bool)
        assert found["seek_log_bound"] == pytest.approx(scaling.LOG_SLACK * math.log(10_000) / math.log(100))
    # the findings went into the largest size's notes, and failed no row
    assert "scaling, native: append" in by_metric[("scaling-append", "10k")]["note"]
    assert "scaling, reference: seek" in by_metric[("scaling-seek", "offset-10k")]["note"]
    assert all(row["ok"] for row in rows)
    json.dumps(section)  # plain JSON


def synthetic(append: list[float], seek: list[float]) -> dict:
    return {
        "sizes": [1_000, 10_000, 100_000],
        "append": {"native": append},
        "seek_offset_us": {"native": seek},
        "seek_timestamp_us": {"native": seek},
    }


def test_findings_accept_flat_append_and_log_like_seek():
    found = scaling.findings(synthetic([100.0, 95.0, 90.0], [2.0, 2.5, 3.0]))["native"]
    assert found["append_flat"] and found["append_last_over_first"] == pytest.approx(0.9)
    assert found["seek_log_like"] and found["seek_offset_growth"] == pytest.approx(1.5)
    (line,) = scaling.findings_lines(
        {**synthetic([100.0, 95.0, 90.0], [2.0, 2.5, 3.0]), "findings": {"native": found}}
    )
    assert "append stayed flat" in line and "seek grew log-like" in line


def test_findings_flag_falling_append_and_linear_seek():
    data = synthetic([100.0, 30.0, 10.0], [2.0, 20.0, 200.0])  # what a scan of the whole log does
    found = scaling.findings(data)["native"]
    assert found["append_flat"] is False and found["seek_log_like"] is False
    (line,) = scaling.findings_lines({**data, "findings": {"native": found}})
    assert "did NOT stay flat" in line and "MORE than log-like" in line


def test_a_missing_end_figure_gives_no_verdict():
    data = synthetic([100.0, 90.0, None], [None, 2.0, 3.0])
    found = scaling.findings(data)
    assert "native" not in found  # neither question can be judged without both ends
    assert scaling.findings_lines({**data, "findings": found}) == []
    partial = scaling.findings(synthetic([100.0, 90.0, 80.0], [None, 2.0, 3.0]))["native"]
    assert partial["append_flat"] is True and partial["seek_log_like"] is None


def test_size_labels_round_trip():
    for size in (100, 1_000, 10_000, 1_000_000, 2_500):
        assert scaling.size_of(scaling.label(size)) == size
    assert scaling.label(1_000_000) == "1M" and scaling.label(10_000) == "10k"
    assert scaling.size_of("p99") is None


def test_each_run_visits_the_sizes_in_a_rotated_order(tiny, tmp_path):
    from pylog.bench.model import Context

    ctx = Context(tiny, str(tmp_path), str(tmp_path), {})
    orders = [scaling.size_order(ctx, "native") for _ in range(3)]
    assert orders == [[100, 1_000, 10_000], [1_000, 10_000, 100], [10_000, 100, 1_000]]
    assert scaling.size_order(ctx, "reference") == [100, 1_000, 10_000]  # counted per engine


def test_the_cli_writes_the_scaling_section(run_pylog, tmp_path):
    skip_if_engine_missing("native")
    out = tmp_path / "bench.json"
    result = run_pylog(
        "bench", "--quick", "--repeat", "1", "--workload", "scaling", "--json", out, "--dir", tmp_path
    )
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(out.read_text())
    sizes = document["scaling"]["sizes"]
    assert sizes == list(scaling.QUICK_SIZES)
    assert {row["group"] for row in document["rows"]} == {"scaling"}
    assert "scaling, native: append" in result.stdout.decode()
