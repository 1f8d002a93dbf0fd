#!/usr/bin/env python3
"""A single-node Apache Kafka broker (KRaft, broker + controller in one JVM) for tests and benchmarks.

    python3 tools/kafka_broker.py check                       # Java 17+ and Maven (or cached jars)?
    python3 tools/kafka_broker.py start --dir D [--port P]    # prints the bootstrap 127.0.0.1:P
    python3 tools/kafka_broker.py stop --dir D                # SIGTERM, bounded wait, then SIGKILL

What it owns, in the broker directory D (made if missing; one broker per directory):
- ``server.properties``: the broker's settings (below), ``log4j2.properties``: the broker logs to
  ``D/broker.log``; the JVM's own stdout/stderr (and the storage format's) go to ``D/console.log``.
- ``data/``: the log directory, formatted with ``kafka.tools.StorageTool format`` (what
  ``kafka-storage.sh format`` runs) under a fresh random cluster id when it holds no
  ``meta.properties`` yet; a restart in the same D keeps its data.
- ``broker.json``: pid and start time (``/proc/<pid>/stat`` field 22) of the JVM, its ports and the
  bootstrap. ``stop`` signals that pid only when the start time still matches, so a recycled pid is
  never killed.

Settings: process.roles=broker,controller, node.id=1, a static controller.quorum.voters, PLAINTEXT
listeners bound to 127.0.0.1 only, replication factor 1 for the internal topics,
group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=500 (group tests rebalance in
milliseconds, not the default 3 s), -Xmx512m. Without ``--port`` both ports are free ports picked
by binding port 0; a start that loses the race for them to another process retries on new ones.

Bounds: ``start`` gives up after ``--timeout`` seconds (60 by default) counted from the JVM's launch:
it then prints the tail of both logs to stderr, kills the JVM and exits 1. Ready means a metadata
request (librdkafka's, through confluent-kafka) lists broker 1. ``--owner-pid`` leaves a small
watchdog process that stops the broker when that process is gone, so a test session killed
without its teardown does not leave a JVM behind. ``check`` and a start without Java 17+ (or
without Maven and cached jars) exit 3 and say what is missing. The jars come from
tools/kafka_jars.sh (Maven Central, cached outside the repository).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
JARS_SCRIPT = HERE / "kafka_jars.sh"
NODE_ID = 1
HEAP = "-Xmx512m"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # SIGTERM: a single-node controlled shutdown takes a second or two
KILL_TIMEOUT_S = 10.0
PORT_RETRIES = 3
LOG_TAIL_LINES = 80
EXIT_FAILED = 1
EXIT_MISSING = 3  # Java or Maven missing: the same code as tools/kafka_jars.sh

STATE_FILE = "broker.json"
LOG_FILE = "broker.log"
CONSOLE_FILE = "console.log"


class BrokerError(Exception):
    """The broker could not be started or stopped; ``code`` is the exit status to report."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- the jars -------------------------------------------------------------------------------------


def jars(*, check_only: bool = False) -> Path:
    """Kafka's jar directory from tools/kafka_jars.sh (fetching it unless ``check_only``)."""
    argv = ["bash", str(JARS_SCRIPT)] + (["--check"] if check_only else [])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"tools/kafka_jars.sh did not finish in {exc.timeout:.0f} s") from None
    if done.returncode != 0:
        why = done.stderr.strip() or f"tools/kafka_jars.sh exited {done.returncode}"
        code = EXIT_MISSING if done.returncode == EXIT_MISSING else EXIT_FAILED
        raise BrokerError(why, code)
    return Path(done.stdout.strip().splitlines()[-1])


# --- the broker's files ---------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (held together while picking, so distinct)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def next_free_port(other_than: int) -> int:
    while True:
        (found,) = free_ports(1)
        if found != other_than:
            return found


def server_properties(data: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data,
        "num.partitions": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "group.min.session.timeout.ms": 500,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log4j2_properties(log_file: Path) -> str:
    # log4j2's properties format (log4j-core reads it without extra jars); one file appender
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = file",
            f"appender.file.fileName = {log_file}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            # why: per-request logging would drown the lines that explain a failed start
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "",
        ]
    )


def random_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding
    # (clients/src/main/java/org/apache/kafka/common/Uuid.java, randomUuid/toString)
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Uuid.randomUuid avoids these too: they read as a flag
            return text


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def error_lines(path: Path, limit: int = 20) -> str:
    """The first ERROR/FATAL lines of a log: after a failed start its tail is shutdown noise."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    found = [line for line in lines if " ERROR " in line or " FATAL " in line]
    return "\n".join(found[:limit])


def logs_tail(directory: Path) -> str:
    parts = []
    errors = error_lines(directory / LOG_FILE)
    if errors:
        parts.append(f"--- first errors in {directory / LOG_FILE}\n{errors}")
    for name in (LOG_FILE, CONSOLE_FILE):
        parts.append(f"--- last lines of {directory / name}\n{tail(directory / name)}")
    return "\n".join(parts)


# --- processes ------------------------------------------------------------------------------------


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited; only its parent's wait is missing (our PID 1 may never reap)
        return None
    return fields[19]


def alive(pid: int, start_time: str) -> bool:
    return process_start_time(pid) == start_time


def read_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def running_state(directory: Path) -> dict | None:
    """The state of the broker of ``directory`` if its JVM still runs, else None."""
    state = read_state(directory)
    if state is None or not alive(state["pid"], state["start_time"]):
        return None
    return state


def wait_gone(pid: int, start_time: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid, start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, start_time: str) -> str:
    """SIGTERM, a bounded wait, then SIGKILL; says how it ended. Signals the JVM's process group."""
    for sig, timeout_s, outcome in (
        (signal.SIGTERM, STOP_TIMEOUT_S, "stopped"),
        (signal.SIGKILL, KILL_TIMEOUT_S, "killed"),
    ):
        if not alive(pid, start_time):
            return "stopped"
        try:
            os.killpg(pid, sig)  # the JVM leads its own session (start_new_session)
        except ProcessLookupError:
            return "stopped"
        if wait_gone(pid, start_time, timeout_s):
            return outcome
    raise BrokerError(f"broker pid {pid} still runs {KILL_TIMEOUT_S:.0f} s after SIGKILL")


# --- readiness ------------------------------------------------------------------------------------


def cluster_id(directory: Path) -> str:
    """The cluster id ``format`` wrote into ``data/meta.properties``."""
    for line in (directory / "data" / "meta.properties").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    raise BrokerError(f"{directory / 'data' / 'meta.properties'} holds no cluster.id")


def metadata_from_our_broker(
    bootstrap: str, expected_cluster: str, proc: subprocess.Popen, deadline: float
) -> bool:
    """Poll a metadata request until our cluster lists our node, the JVM exits (False) or the deadline.

    why the cluster id: when the port is taken by another broker, that broker answers; only our
    freshly formatted cluster id proves the answer comes from the JVM we started.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("kafka_broker.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False  # connection refused is expected until the broker listens
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 250,  # the default 10 s max would sleep through readiness
            "logger": quiet,
        }
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            metadata = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException:
            continue
        if metadata.cluster_id == expected_cluster and NODE_ID in metadata.brokers:
            return True
    return False


# --- commands -------------------------------------------------------------------------------------


def check() -> str:
    """A line saying Java and the jars are usable; BrokerError(code 3) saying what is missing."""
    libs = jars(check_only=True)
    cached = "cached" if (libs / ".complete").exists() else "to be fetched with Maven"
    return f"ok: Java 17+ found; Kafka's jars {cached} in {libs}"


def format_storage(libs: Path, directory: Path, deadline: float) -> None:
    if (directory / "data" / "meta.properties").exists():
        return  # formatted by an earlier start in this directory: keep its data
    argv = ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format"]
    argv += ["-t", random_cluster_id(), "-c", str(directory / "server.properties")]
    with open(directory / CONSOLE_FILE, "ab") as console:
        try:
            done = subprocess.run(
                argv,
                stdout=console,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired:
            raise BrokerError("kafka.tools.StorageTool format did not finish in time") from None
    if done.returncode != 0:
        raise BrokerError(f"kafka.tools.StorageTool format exited {done.returncode}")


def launch(libs: Path, directory: Path, port: int, controller_port: int, timeout_s: float) -> dict:
    """One attempt: write the settings, format, run the JVM, wait until ready. The state, or raises."""
    data = directory / "data"
    (directory / "server.properties").write_text(server_properties(data, port, controller_port))
    (directory / "log4j2.properties").write_text(log4j2_properties(directory / LOG_FILE))
    deadline = time.monotonic() + timeout_s
    format_storage(libs, directory, deadline)
    argv = ["java", HEAP, "-Xms128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
    argv += [f"-Dlog4j2.configurationFile=file:{directory / 'log4j2.properties'}"]
    argv += ["-cp", f"{libs}/*", "kafka.Kafka", str(directory / "server.properties")]
    with open(directory / CONSOLE_FILE, "ab") as console:
        proc = subprocess.Popen(
            argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C of a test run reaches our stop, not the JVM
        )
    start_time = process_start_time(proc.pid) or ""
    bootstrap = f"127.0.0.1:{port}"
    state = {
        "pid": proc.pid,
        "start_time": start_time,
        "port": port,
        "controller_port": controller_port,
        "bootstrap": bootstrap,
    }
    (directory / STATE_FILE).write_text(json.dumps(state))
    if metadata_from_our_broker(bootstrap, cluster_id(directory), proc, deadline):
        return state
    exited = proc.poll()
    if exited is None:
        terminate(proc.pid, start_time)
        proc.wait()
        why = f"no metadata answer from {bootstrap} within {timeout_s:.0f} s"
    else:
        why = f"the broker exited with status {exited} before answering on {bootstrap}"
    (directory / STATE_FILE).unlink(missing_ok=True)
    raise BrokerError(why)


def lost_port_race(directory: Path) -> bool:
    return any(
        "Address already in use" in tail(directory / name, 10_000) for name in (LOG_FILE, CONSOLE_FILE)
    )


def start(
    directory: Path, port: int | None = None, timeout_s: float = START_TIMEOUT_S, owner_pid: int | None = None
) -> dict:
    """Start the broker of ``directory`` and return its state (``bootstrap`` is what clients use)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if running_state(directory) is not None:
        raise BrokerError(f"a broker already runs in {directory} (stop it first)")
    libs = jars()
    attempts = 1 if port is not None else PORT_RETRIES
    for attempt in range(1, attempts + 1):
        ports = free_ports(2) if port is None else [port, next_free_port(other_than=port)]
        try:
            state = launch(libs, directory, ports[0], ports[1], timeout_s)
            break
        except BrokerError as exc:
            if attempt == attempts or not lost_port_race(directory):
                raise BrokerError(f"{exc}\n{logs_tail(directory)}") from None
            # another process took a port between our pick and the JVM's bind: a fresh start
            print(f"kafka_broker: port taken meanwhile ({exc}); retrying on new ports", file=sys.stderr)
            for name in (LOG_FILE, CONSOLE_FILE):
                (directory / name).unlink(missing_ok=True)
    if owner_pid is not None:
        watch_owner(directory, owner_pid)
    return state


def watch_owner(directory: Path, owner_pid: int) -> None:
    """Leave a detached watchdog that stops the broker once ``owner_pid`` has exited."""
    owner_start = process_start_time(owner_pid)
    if owner_start is None:
        raise BrokerError(f"--owner-pid {owner_pid}: no such process")
    argv = [sys.executable, "-P", str(Path(__file__).resolve()), "watch", "--dir", str(directory)]
    argv += ["--owner-pid", str(owner_pid), "--owner-start", owner_start]
    subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def watch(directory: Path, owner_pid: int, owner_start: str) -> None:
    """The watchdog's loop: exits when the broker is gone; stops it when the owner is gone."""
    while True:
        state = running_state(directory)
        if state is None:
            return
        if not alive(owner_pid, owner_start):
            stop(directory)
            return
        time.sleep(0.5)


def stop(directory: Path) -> str:
    """Stop the broker of ``directory`` (none running is fine); says what happened."""
    directory = directory.resolve()
    state = read_state(directory)
    if state is None:
        return f"no broker state in {directory}: nothing to stop"
    outcome = terminate(state["pid"], state["start_time"])
    (directory / STATE_FILE).unlink(missing_ok=True)
    return f"broker pid {state['pid']} on {state['bootstrap']} {outcome}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="are Java 17+ and Maven (or cached jars) present?")
    start_cmd = commands.add_parser("start", help="start a broker; prints its bootstrap")
    start_cmd.add_argument("--dir", required=True, type=Path, help="the broker's directory")
    start_cmd.add_argument("--port", type=int, help="client port (default: a free one)")
    start_cmd.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds (default 60)")
    start_cmd.add_argument("--owner-pid", type=int, help="stop the broker when this process exits")
    stop_cmd = commands.add_parser("stop", help="stop the broker of a directory")
    stop_cmd.add_argument("--dir", required=True, type=Path)
    watch_cmd = commands.add_parser("watch")  # internal: the --owner-pid watchdog
    watch_cmd.add_argument("--dir", required=True, type=Path)
    watch_cmd.add_argument("--owner-pid", required=True, type=int)
    watch_cmd.add_argument("--owner-start", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(check())
        elif args.command == "start":
            print(start(args.dir, args.port, args.timeout, args.owner_pid)["bootstrap"])
        elif args.command == "stop":
            print(stop(args.dir), file=sys.stderr)
        else:
            watch(args.dir, args.owner_pid, args.owner_start)
    except BrokerError as exc:
        print(f"kafka_broker {args.command}: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
