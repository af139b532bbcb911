"""The checked-in gRPC stubs must match what scripts/gen-python-stubs makes from the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import REPO

CHECKED_IN = REPO / "clients" / "python" / "kafka_sidecar" / "_proto"
FILES = ("producer_pb2.py", "producer_pb2.pyi", "producer_pb2_grpc.py")


def test_checked_in_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run([str(REPO / "scripts" / "gen-python-stubs"), str(tmp_path)], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    stale = [name for name in FILES
             if (tmp_path / name).read_bytes() != (CHECKED_IN / name).read_bytes()]
    assert not stale, (f"stale stubs {stale}: run scripts/gen-python-stubs and commit the result")


def test_stubs_import_inside_the_package() -> None:
    from kafka_sidecar._proto import producer_pb2, producer_pb2_grpc

    assert producer_pb2_grpc.ProducerSidecarStub is not None
    assert producer_pb2.ProduceBatch(batch_id=1).batch_id == 1
