"""Shared fixtures: one tansu broker per session, a shared sidecar, fresh sidecars on demand."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from harness import Broker, Sidecar


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    started = Broker.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def sidecar(broker: Broker) -> Iterator[Sidecar]:
    started = Sidecar.start(broker.bootstrap)
    yield started
    started.stop()


@pytest.fixture
def new_sidecar(broker: Broker) -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars this test may kill; whatever is left is stopped afterwards."""
    started: list[Sidecar] = []

    def start(**kwargs: object) -> Sidecar:
        instance = Sidecar.start(broker.bootstrap, **kwargs)  # type: ignore[arg-type]
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.kill()
