"""Shared fixtures: one tansu broker per session, a shared sidecar, fresh sidecars on demand, and
one schema registry per session (started only by the tests that ask for it)."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from harness import Broker, SchemaRegistry, Sidecar


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    started = Broker.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def schema_registry(broker: Broker) -> Iterator[SchemaRegistry]:
    started = SchemaRegistry.start(broker.bootstrap)
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
