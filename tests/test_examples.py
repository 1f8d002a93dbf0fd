"""The programs in examples/ run and print what they promise, so they never rot.

Each runs as its own process (as a user would run it), on a fresh directory, with the checkout's
pylog (the one this test run imports) first on the path; the consumer-group example starts two more processes itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pylog.bench_processes import same_pylog_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, directory: Path) -> str:
    env = same_pylog_env()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(params=["native", "reference"])
def example_env(request, monkeypatch):
    monkeypatch.setenv("PYLOG_ENGINE", request.param)
    return request.param


def test_word_count(tmp_path: Path, example_env: str) -> None:
    lines = run_example("word_count.py", tmp_path).splitlines()
    assert lines[0] == "the 5"
    assert lines[1] == "log 4"


def test_consumer_group_of_two_processes(tmp_path: Path, example_env: str) -> None:
    out = run_example("consumer_group.py", tmp_path).strip()
    assert out.startswith("processed 1000 records: member a ")
    counts = [int(part.split()[-1]) for part in out.split(": ", 1)[1].split(", ")]
    assert sum(counts) >= 1000  # duplicates only where a commit had not happened


def test_replay_after_fix(tmp_path: Path, example_env: str) -> None:
    out = run_example("replay_after_fix.py", tmp_path).strip()
    assert out == "buggy total of all orders 100.00; replayed last 50 orders: 62.50"
