"""``pylog bench --plot`` (pylog/bench/plot.py): a PNG from the JSON document alone, both from a
synthetic document and from a real quick run (and re-drawn from its saved JSON), and a clear
error naming the extra to install when matplotlib is missing."""

from __future__ import annotations

import json
import struct
import sys

import pytest
from helpers import skip_if_engine_missing

from pylog.bench import plot
from pylog.cli.common import CliError

pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install 'pylog[plot]'")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"  # written to the end
    return struct.unpack(">II", data[16:24])


def assert_sane_png(path) -> None:
    width, height = png_size(path)
    assert 800 <= width <= 8000 and 800 <= height <= 8000, (width, height)
    assert path.stat().st_size > 20_000  # drawn panels, not a blank canvas


def row(workload, group, metric, unit, figures, ok=True, higher=True):
    return {
        "workload": workload,
        "title": workload,
        "group": group,
        "metric": metric,
        "unit": unit,
        "higher_is_better": higher,
        "figures": figures,
        "samples": {k: [v] for k, v in figures.items()},
        "ratios": {},
        "ok": ok,
        "note": "",
    }


SYNTHETIC = {
    "command": ["pylog", "bench"],
    "started": "2026-12-02T04:00:00+00:00",
    "seconds": 12.5,
    "machine": {"cpu": "test cpu", "cores": 2, "memory_bytes": 1 << 33, "os": "Linux", "filesystem": "ext4"},
    "versions": {"pylog": "0", "python": "3", "sqlite": "3", "numpy": "2", "twainmq": "0.2.3"},
    "quick": False,
    "repeat": 5,
    "rows": [
        row(
            "send-100b-none",
            "produce",
            "throughput",
            "k rec/s",
            {"native": 800, "reference": 80, "os.write": 9000, "sqlite3": 140, "twainmq": 9},
        ),
        row(
            "send-batch-1kib-lz4",
            "produce",
            "throughput",
            "k rec/s",
            {"native": 2000, "reference": 300, "os.write": 7000},
        ),
        row(
            "poll-100b",
            "consume",
            "throughput",
            "M rec/s",
            {"native": 3.1, "reference": 0.2, "twainmq": 0.02},
            ok=False,
        ),
        row(
            "latency-1p",
            "latency",
            "p50",
            "us",
            {"native": 30, "reference": 300, "twainmq": 600},
            higher=False,
        ),
        row(
            "latency-1p",
            "latency",
            "p99",
            "us",
            {"native": 90, "reference": 900, "twainmq": 900},
            higher=False,
        ),
        row("scaling-append-1k", "scaling", "throughput", "k rec/s", {"native": 400, "reference": 55}),
    ],
    "notes": [],
    "scaling": {
        "sizes": [1_000, 10_000, 100_000],
        "append": {"native": [4e5, 4.1e5, 3.9e5], "reference": [5.5e4, 5.6e4, None]},
        "seek_offset_us": {"native": [2.8, 3.0, 3.3], "reference": [37, 39, 55]},
        "seek_timestamp_us": {"native": [4.7, 5.0, 5.5], "reference": [104, 107, 121]},
        "findings": {"native": {"append_flat": True, "seek_log_like": True}},
    },
}


def test_a_synthetic_document_gives_a_png(tmp_path):
    target = tmp_path / "bench.png"
    plot.plot(SYNTHETIC, target)
    assert_sane_png(target)


def test_the_panels_pick_their_rows():
    assert [r["workload"] for r in plot.throughput_rows(SYNTHETIC)] == [
        "send-100b-none",
        "send-batch-1kib-lz4",
        "poll-100b",
    ]
    assert [r["metric"] for r in plot.latency_rows(SYNTHETIC)] == ["p50", "p99"]
    assert plot.contenders_of(plot.throughput_rows(SYNTHETIC)) == [
        "native",
        "reference",
        "os.write",
        "sqlite3",
        "twainmq",
    ]


def test_a_document_without_latency_or_scaling_still_draws(tmp_path):
    bare = {**SYNTHETIC, "rows": SYNTHETIC["rows"][:2]}
    del bare["scaling"]
    target = tmp_path / "bare.png"
    plot.plot(bare, target)
    assert_sane_png(target)


def test_a_quick_run_plots_and_its_json_replots(run_pylog, tmp_path):
    skip_if_engine_missing("native")
    figures, picture = tmp_path / "bench.json", tmp_path / "bench.png"
    result = run_pylog(
        "bench", "--quick", "--repeat", "1", "--workload", "send-100b-none", "--workload", "scaling",
        "--json", figures, "--plot", picture, "--dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert_sane_png(picture)
    again = tmp_path / "again.png"
    plot.plot(json.loads(figures.read_text()), again)  # from the saved document alone
    assert_sane_png(again)
    assert png_size(again) == png_size(picture)


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails
    with pytest.raises(CliError) as info:
        plot.plot(SYNTHETIC, tmp_path / "never.png")
    assert str(info.value) == "--plot needs matplotlib: pip install 'pylog[plot]'"
    assert info.value.code == 2
    assert not (tmp_path / "never.png").exists()


def test_from_json_replots_a_saved_document(run_pylog, tmp_path):
    saved, picture = tmp_path / "saved.json", tmp_path / "replot.png"
    saved.write_text(json.dumps(SYNTHETIC))
    result = run_pylog("bench", "--from-json", saved, "--plot", picture)
    assert result.returncode == 0, result.stderr.decode()
    assert_sane_png(picture)
    assert result.stdout == b""  # it ran nothing, so there is no table


@pytest.mark.parametrize(
    ("content", "plot_arg", "message"),
    [
        (None, True, "cannot read"),
        ("{not json", True, "is not JSON"),
        ('{"rows": 3}', True, "is not a pylog bench document"),
        ('{"rows": [1]}', True, "is not a pylog bench document"),
        ('{"rows": [{"workload": "x"}]}', True, "is not a pylog bench document"),
        (json.dumps(SYNTHETIC), False, "--from-json needs --plot FILE.png"),
    ],
)
def test_from_json_refuses_bad_input_in_one_line(run_pylog, tmp_path, content, plot_arg, message):
    saved = tmp_path / "saved.json"
    if content is not None:
        saved.write_text(content)
    args = ["bench", "--from-json", saved] + (["--plot", tmp_path / "out.png"] if plot_arg else [])
    result = run_pylog(*args)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
