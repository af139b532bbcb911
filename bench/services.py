"""Processes the benchmark runs and what it reads from the kernel about them.

Starts tansu, librdkafka's mock cluster (through ``kafka-sidecar-bench mock-cluster``), a schema
registry (through ``scripts/schema-registry``) and sidecars on free loopback ports; reads RSS and CPU time from ``/proc/PID``; counts established
TCP connections to given ports from ``/proc/net/tcp{,6}``; samples any of these in a thread.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TCP_ESTABLISHED = "01"


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], limit_s: float, what: str) -> None:
    """Polls ``check`` until it is true; raises after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Service:
    """A started process and how to reach it."""

    name: str
    process: subprocess.Popen
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_tansu(binary: str, log_dir: Path) -> Service:
    """One tansu broker with in-memory storage on a free port."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / "tansu.log", "w")
    process = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT)
    service = Service("tansu", process, {"bootstrap": f"127.0.0.1:{port}", "ports": [port]})
    wait_until(lambda: port_open(port) or process.poll() is not None, 30, "tansu")
    if process.poll() is not None:
        raise RuntimeError(f"tansu exited; see {log_dir / 'tansu.log'}")
    return service


def start_schema_registry(script: Path, bootstrap: str, log_dir: Path) -> Service:
    """A Confluent-compatible schema registry keeping its schemas on ``bootstrap``, on a free port.

    Ready to read when it returns; writes answer 503 for a few seconds more, until it has elected
    itself primary (``kafka-sidecar-bench formats`` retries its registration until then).
    """
    port = free_port()
    log = open(log_dir / "schema-registry.log", "w")
    # The script execs the registry, so this process is the registry itself.
    process = subprocess.Popen([str(script), "run", bootstrap, str(port)], stdout=log, stderr=subprocess.STDOUT)
    service = Service("schema-registry", process, {"url": f"http://127.0.0.1:{port}", "ports": [port]})
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, 60, "the schema registry")
    except RuntimeError:
        service.stop()  # not listening within the limit: not left running behind the benchmark
        raise
    if process.poll() is not None:
        raise RuntimeError(f"the schema registry exited; see {log_dir / 'schema-registry.log'}")
    return service


def start_mock_cluster(bench: str, brokers: int, partitions: int, topics: list[str]) -> Service:
    """librdkafka's mock cluster in its own process; it stops when its stdin closes."""
    command = [bench, "mock-cluster", "--brokers", str(brokers), "--partitions", str(partitions)]
    for topic in topics:
        command += ["--topic", topic]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        raise RuntimeError("the mock cluster did not start")
    bootstrap = json.loads(line)["bootstrap"]
    ports = [int(address.rsplit(":", 1)[1]) for address in bootstrap.split(",")]
    return Service("mock-cluster", process, {"bootstrap": bootstrap, "ports": ports})


def start_sidecar(binary: str, bootstrap: str, work: Path, name: str, settings: list[str],
                  config: Optional[dict[str, Any]] = None) -> Service:
    """A sidecar on free ports (TCP gRPC, a Unix socket, HTTP, admin), ready when it returns.

    ``config``, if given, is written as the sidecar's configuration file (JSON is YAML), for what
    ``--set`` cannot say, such as lists; ``settings`` still override it.
    """
    info_file = work / f"{name}.listen.json"
    socket_path = work / f"{name}.sock"
    for stale in (info_file, socket_path):
        stale.unlink(missing_ok=True)
    command = [binary]
    if config is not None:
        config_file = work / f"{name}.config.yaml"
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        command += ["--config", str(config_file)]
    command += ["--bootstrap-servers", bootstrap, "--grpc-listen", "127.0.0.1:0",
               "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--grpc-unix-socket", str(socket_path), "--listen-info", str(info_file)]
    for setting in settings:
        command += ["--set", setting]
    log = open(work / f"{name}.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: info_file.exists() or process.poll() is not None, 30, f"sidecar {name} to bind")
    if process.poll() is not None:
        raise RuntimeError(f"sidecar {name} exited; see {work / (name + '.log')}")
    info = json.loads(info_file.read_text())
    wait_until(lambda: _ready(info["admin"]), 30, f"sidecar {name} to be ready")
    info["uds"] = f"unix://{info['grpc_unix']}"
    info["command"] = command
    return Service(name, process, info)


def _ready(admin: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``; 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM``: the highest RSS ``pid`` has had since it started."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def established_to(ports: list[int]) -> int:
    """Established TCP connections whose remote end is one of ``ports`` (the client sides)."""
    wanted = {f"{port:04X}" for port in ports}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    columns = row.split()
                    if columns[3] == TCP_ESTABLISHED and columns[2].rsplit(":", 1)[1] in wanted:
                        count += 1
        except OSError:
            continue
    return count


class Sampler:
    """Calls ``probe`` every ``period_s`` in a thread; keeps the peak and the last value."""

    def __init__(self, probe: Callable[[], float], period_s: float = 0.05):
        self.peak = 0.0
        self.last = 0.0
        self._probe = probe
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.last = self._probe()
            self.peak = max(self.peak, self.last)
            if self._stop.wait(self._period):
                return


def metric_series(admin: str, name: str) -> dict[str, float]:
    """Every series of one metric on a sidecar's /metrics, by its label text (``outcome="processed"``)."""
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    series: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            labels, value = line[len(name):].rsplit(" ", 1)
            series[labels.strip().strip("{}")] = float(value)
    return series


def metric_total(admin: str, name: str) -> float:
    """The sum over all series of one metric on a sidecar's /metrics (0 when absent)."""
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
