"""Test harness: a real tansu broker and a real kafka-sidecar, started and stopped by the tests.

``Broker.start()`` runs ``scripts/tansu run PORT`` (or uses ``KAFKA_SIDECAR_TEST_BOOTSTRAP``) and
polls until it answers a metadata request. ``Sidecar.start()`` runs the daemon on ``:0``
listeners and reads the bound addresses from its ``--listen-info`` file.
``SchemaRegistry.start()`` runs ``scripts/schema-registry run`` on the broker (or uses
``KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY``) and polls until it accepts writes. Nothing sleeps for
readiness: every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[3]
SIDECAR_BINARY = Path(os.environ.get("KAFKA_SIDECAR_BINARY",
                                     REPO / "target" / "debug" / "kafka-sidecar"))


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def random_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Broker:
    """A tansu broker on loopback (or the one ``KAFKA_SIDECAR_TEST_BOOTSTRAP`` names)."""

    def __init__(self, bootstrap: str, process: Optional[subprocess.Popen[bytes]]) -> None:
        self.bootstrap = bootstrap
        self.process = process
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    @classmethod
    def start(cls) -> "Broker":
        existing = os.environ.get("KAFKA_SIDECAR_TEST_BOOTSTRAP")
        if existing:
            broker = cls(existing, None)
        else:
            port = free_port()
            log = open(tempfile.mktemp(prefix="tansu-", suffix=".log"), "wb")
            process = subprocess.Popen([str(REPO / "scripts" / "tansu"), "run", str(port)],
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            broker = cls(f"127.0.0.1:{port}", process)
        wait_until(broker._accepts_connections, 120, f"tansu at {broker.bootstrap}")
        wait_until(broker._answers_metadata, 60, f"metadata from {broker.bootstrap}")
        return broker

    def _accepts_connections(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"tansu exited with {self.process.returncode}")
        host, port = self.bootstrap.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return True
        except OSError:
            return False

    def _answers_metadata(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"tansu exited with {self.process.returncode}")
        try:
            self.admin.list_topics(timeout=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def create_topic(self, name: str, partitions: int = 4) -> str:
        futures = self.admin.create_topics([NewTopic(name, partitions, 1)])
        futures[name].result(30)
        wait_until(lambda: name in self.admin.list_topics(timeout=5).topics, 30,
                   f"topic {name} in metadata")
        return name

    def read_all(self, topic: str, expected: int, timeout: float = 60) -> list[Any]:
        """Read ``topic`` from the start until ``expected`` records arrive (or ``timeout``)."""
        return self.read_until(topic, lambda messages: len(messages) >= expected, timeout)

    def read_until(self, topic: str, done: Callable[[list[Any]], bool], timeout: float = 60,
                   drain_s: float = 0.0) -> list[Any]:
        """Read every partition of ``topic`` from offset 0 until ``done(messages)``; then, with
        ``drain_s``, keep reading until nothing arrives for that long (to count duplicates).

        tansu's high watermarks under-report, so the end of a topic is judged by content.
        """
        metadata = self.admin.list_topics(topic, timeout=10).topics[topic]
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": random_name("g"),
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition(topic, partition, 0) for partition in metadata.partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while not done(messages) and time.monotonic() < deadline:
                messages.extend(message for message in consumer.consume(1000, 0.5)
                                if message.error() is None)
            quiet_since = time.monotonic()
            while drain_s and time.monotonic() - quiet_since < drain_s:
                batch = [message for message in consumer.consume(1000, 0.2)
                         if message.error() is None]
                if batch:
                    messages.extend(batch)
                    quiet_since = time.monotonic()
        finally:
            consumer.close()
        return messages

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class SchemaRegistry:
    """A Confluent-compatible schema registry on the broker (or the one
    ``KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY`` names), keeping its schemas in the broker's topic."""

    def __init__(self, url: str, process: Optional[subprocess.Popen[bytes]]) -> None:
        self.url = url.rstrip("/")
        self.process = process

    @classmethod
    def start(cls, bootstrap: str) -> "SchemaRegistry":
        existing = os.environ.get("KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY")
        if existing:
            registry = cls(existing, None)
        else:
            script = str(REPO / "scripts" / "schema-registry")
            # Builds the registry the first time (minutes, then cached), so the start below can
            # have a short deadline.
            subprocess.run([script, "path"], check=True, stdout=subprocess.DEVNULL, timeout=1800)
            port = free_port()
            log = open(tempfile.mktemp(prefix="schema-registry-", suffix=".log"), "wb")
            process = subprocess.Popen([script, "run", bootstrap, str(port)], stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            registry = cls(f"http://127.0.0.1:{port}", process)
        probe = random_name("probe")
        wait_until(lambda: registry._accepts_writes(probe), 60,
                   f"the schema registry at {registry.url} to accept writes", interval=0.2)
        return registry

    def _accepts_writes(self, subject: str) -> bool:
        """Writes answer 503 until the registry has elected itself primary: probe with one."""
        import urllib.request

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the schema registry exited with {self.process.returncode}")
        request = urllib.request.Request(
            f"{self.url}/subjects/{subject}/versions", method="POST",
            data=json.dumps({"schema": '"string"'}).encode(),
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return bool(reply.status == 200)
        except Exception:  # noqa: BLE001 - not up, or not primary yet
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class Sidecar:
    """A kafka-sidecar process with its bound addresses."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log: Path) -> None:
        self.process = process
        self.info = info
        self.log = log

    @property
    def grpc_address(self) -> str:
        return str(self.info["grpc"])

    @property
    def unix_address(self) -> Optional[str]:
        path = self.info.get("grpc_unix")
        return f"unix://{path}" if path else None

    @classmethod
    def start(cls, bootstrap: str, grpc_port: int = 0, unix_socket: Optional[str] = None,
              settings: Optional[dict[str, Any]] = None) -> "Sidecar":
        """Start the daemon; ``settings`` become ``--set key=value`` flags."""
        if not SIDECAR_BINARY.exists():
            raise FileNotFoundError(
                f"{SIDECAR_BINARY} is missing: run `cargo build -p kafka-sidecar` first")
        workdir = Path(tempfile.mkdtemp(prefix="sidecar-"))
        info_path = workdir / "listen.json"
        log = workdir / "sidecar.log"
        command = [str(SIDECAR_BINARY), "--bootstrap-servers", bootstrap,
                   "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", "127.0.0.1:0",
                   "--admin-listen", "127.0.0.1:0", "--listen-info", str(info_path)]
        if unix_socket:
            command += ["--grpc-unix-socket", unix_socket]
        for key, value in (settings or {}).items():
            command += ["--set", f"{key}={value}"]
        process = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT)

        def listening() -> Optional[dict[str, Any]]:
            if process.poll() is not None:
                raise RuntimeError(f"kafka-sidecar exited with {process.returncode}: "
                                   f"{log.read_text()[-2000:]}")
            if info_path.exists():
                return json.loads(info_path.read_text())
            return None

        info = wait_until(listening, 60, "kafka-sidecar listen info")
        sidecar = cls(process, info, log)
        wait_until(sidecar.ready, 60, "kafka-sidecar /readyz")
        return sidecar

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.info['admin']}/readyz", timeout=1) as reply:
                return bool(reply.status == 200)
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then wait for the graceful drain."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
