"""tools/kafka_broker.py: the check says what is missing, a broker starts, answers, stops and is gone.

The start/stop tests run brokers of their own (fresh directories and ports), never the session's
``kafka_bootstrap`` broker. Each start takes a JVM's few seconds: these are the script's own tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import kafka_broker
from kafka_broker import EXIT_MISSING, admin_client, run_script

START_BOUND_S = 60.0


def require_java_and_jars() -> None:
    checked = run_script("check", timeout_s=60)
    if checked.returncode == EXIT_MISSING:
        kafka_broker.skip_or_fail(checked.stderr.strip())
    assert checked.returncode == 0, checked.stderr


def fake_path(tmp_path: Path, **scripts: str) -> dict[str, str]:
    """An environment whose PATH holds bash, sed and the given fake commands only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!{bin_dir / 'bash'}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYLOG_KAFKA_CACHE": str(tmp_path / "cache")}


def check_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", str(kafka_broker.SCRIPT), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_passes_here_or_says_what_is_missing() -> None:
    checked = run_script("check", timeout_s=60)
    if checked.returncode == EXIT_MISSING:
        kafka_broker.skip_or_fail(checked.stderr.strip())
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: Java 17+ found; Kafka's jars ")


def test_check_names_a_missing_java(tmp_path: Path) -> None:
    checked = check_with(fake_path(tmp_path))
    assert checked.returncode == EXIT_MISSING
    assert "java not found" in checked.stderr and "Java 17+" in checked.stderr


def test_check_names_an_old_java(tmp_path: Path) -> None:
    old_java = 'echo "    java.specification.version = 11" >&2'
    checked = check_with(fake_path(tmp_path, java=old_java))
    assert checked.returncode == EXIT_MISSING
    assert "Java 11 found" in checked.stderr and "needs Java 17+" in checked.stderr


def test_check_names_a_missing_maven_when_the_jars_are_not_cached(tmp_path: Path) -> None:
    java_17 = 'echo "    java.specification.version = 17" >&2'
    checked = check_with(fake_path(tmp_path, java=java_17))
    assert checked.returncode == EXIT_MISSING
    assert "mvn (Maven) not found" in checked.stderr


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def jvms_of(directory: Path) -> list[int]:
    """Live (non-zombie) processes whose command line names ``directory``'s server.properties."""
    found = []
    needle = str(directory / "server.properties").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if needle in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def test_start_answers_metadata_then_stop_leaves_nothing(tmp_path: Path) -> None:
    require_java_and_jars()
    directory = tmp_path / "broker"
    started = run_script("start", "--dir", str(directory), timeout_s=START_BOUND_S + 30)
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.strip()
    state = json.loads((directory / "broker.json").read_text())
    assert bootstrap == f"127.0.0.1:{state['port']}"
    try:
        metadata = admin_client(bootstrap).list_topics(timeout=10)
        meta_properties = (directory / "data" / "meta.properties").read_text()
        assert f"cluster.id={metadata.cluster_id}\n" in meta_properties
        assert list(metadata.brokers) == [1]
        assert (metadata.brokers[1].host, metadata.brokers[1].port) == ("127.0.0.1", state["port"])
        # the log4j2 binding works: the broker logs to its directory, not to a NOP logger
        assert "Kafka Server started" in (directory / "broker.log").read_text()
        assert jvms_of(directory) == [state["pid"]]
    finally:
        stopped = run_script("stop", "--dir", str(directory), timeout_s=60)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stderr
    assert jvms_of(directory) == []
    assert port_is_free(state["port"]) and port_is_free(state["controller_port"])
    assert not (directory / "broker.json").exists()
    again = run_script("stop", "--dir", str(directory), timeout_s=60)
    assert again.returncode == 0 and "nothing to stop" in again.stderr


def test_a_start_on_a_taken_port_fails_with_the_log_in_bounded_time(tmp_path: Path) -> None:
    require_java_and_jars()
    directory = tmp_path / "broker"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        began = time.monotonic()
        started = run_script(
            "start",
            "--dir",
            str(directory),
            "--port",
            str(taken.getsockname()[1]),
            "--timeout",
            "30",
            timeout_s=90,
        )
        took_s = time.monotonic() - began
    assert started.returncode == 1, started.stdout
    assert took_s < 45, f"a failed start took {took_s:.0f} s"
    assert "Address already in use" in started.stderr
    assert f"--- last lines of {directory.resolve() / 'broker.log'}" in started.stderr
    assert jvms_of(directory.resolve()) == []


def test_the_watchdog_stops_the_broker_when_its_owner_exits(tmp_path: Path) -> None:
    require_java_and_jars()
    directory = tmp_path / "broker"
    owner = subprocess.Popen(["sleep", "600"])
    try:
        started = run_script(
            "start", "--dir", str(directory), "--owner-pid", str(owner.pid), timeout_s=START_BOUND_S + 30
        )
        assert started.returncode == 0, started.stderr
        state = json.loads((directory / "broker.json").read_text())
        assert jvms_of(directory.resolve()) == [state["pid"]]
    finally:
        owner.kill()
        owner.wait()
    try:
        wait_until(lambda: not jvms_of(directory.resolve()), 40, "the broker stopped after its owner")
        assert port_is_free(state["port"])
    finally:
        run_script("stop", "--dir", str(directory), timeout_s=60)


def test_the_session_broker_is_ours_or_the_given_one(kafka_bootstrap: str) -> None:
    metadata = admin_client(kafka_bootstrap).list_topics(timeout=10)
    assert metadata.brokers, metadata
    given = os.environ.get("PYLOG_KAFKA_BOOTSTRAP")
    assert kafka_bootstrap == (given or kafka_bootstrap)
    if not given:  # ours: started by tools/kafka_broker.py on 127.0.0.1 only
        assert kafka_bootstrap.startswith("127.0.0.1:")
