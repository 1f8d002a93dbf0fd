"""The command line: ``pylog bench`` end to end (quick scale) and its refusals."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest
from helpers import skip_if_engine_missing

from pylog import bench
from pylog.cli import main


def test_bench_quick_prints_one_table_and_saves_json(tmp_path, capsys):
    skip_if_engine_missing("native")
    out_json = tmp_path / "figures.json"
    assert (
        main(["bench", "--quick", "--repeat", "1", "--dir", str(tmp_path / "work"), "--json", str(out_json)])
        == 0
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("pylog bench:")
    for workload in ("append", "records()", "read_columns()", "random read", "recovery", "wake-up"):
        assert any(line.startswith(workload) for line in lines), workload
    assert "wrong" not in out
    # the progress reached the last step, and counted the steps right
    assert err.splitlines()[-1].endswith("wake-up in another process, p50: reference run 1")
    one_run = bench.Scale.quick()
    one_run.repeat = 1
    steps = bench.Bench(".", one_run).steps()
    assert f"] {steps}/{steps} " in err.splitlines()[-1]
    figures = json.loads(out_json.read_text())
    rows = {row["workload"]: row for row in figures["rows"]}
    append = rows["append 1000-record batches"]
    assert append["correct"] and append["native"] > 0 and append["reference"] > 0
    assert set(append["baselines"]) == {"os.write", "sqlite3"}
    assert all(row["correct"] for row in figures["rows"])


def test_bench_refuses_a_directory_without_room(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(1 << 30, 1 << 30, 1 << 20))
    assert bench.main(str(tmp_path), quick=True, repeat=None, json_path=None) == 2
    assert "needs about" in capsys.readouterr().err


def test_bench_rejects_a_bad_repeat(capsys):
    assert main(["bench", "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_bench_shows_no_ratio_for_a_latency_at_or_below_zero():
    """A waiter can return before the writer's ``append`` does (a latency below zero); a ratio of
    such figures means nothing, so the table shows none, and the row keeps its figures."""
    woken_early = bench.Row("wake-up", "us", native=-3.0, reference=100.0, lower_is_better=True)
    assert woken_early.speedup is None
    fields = bench.format_table([woken_early]).splitlines()[-1].split()
    assert fields[2:5] == ["-3.00", "100", "-"]  # native, reference, no native/ref ratio
    assert bench.Row("wake-up", "us", native=20.0, reference=100.0, lower_is_better=True).speedup == 5.0
    assert bench.Row("append", "MB/s", native=200.0, reference=100.0).speedup == 2.0
