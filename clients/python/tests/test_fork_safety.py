"""No librdkafka handle made in a parent is ever destroyed in a forked child.

Destroying an inherited handle joins librdkafka threads that exist only in the parent; the child
then aborts, crashes or hangs, depending on which of its own threads reuse those threads'
stacks. Each test leaves a handle where a child could destroy it (garbage the collector has not
reached, or the last reference to it), forks, and lets the child collect from fresh threads, as
a worker that starts its own threads does. The child checks that every handle it inherited is
still there (deterministic) and exits 0; a crash shows as a signal in its exit status, a hang as
a missed deadline.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import confluent_kafka
import pytest
from confluent_kafka import cimpl

from harness import Broker, free_port, random_name, wait_until
from kafka_sidecar import Producer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

HANDLE_TYPES = (cimpl.Producer, cimpl.Consumer, cimpl._AdminClientImpl)
CHILD_THREADS = 8
CHILD_DEADLINE_S = 60
NOWHERE = f"127.0.0.1:{free_port()}"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep garbage uncollected in the parent, as it is whenever a fork beats the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def handle_ids() -> set[int]:
    """Ids, not objects: holding the handles themselves would keep them alive in the child."""
    return {id(candidate) for candidate in gc.get_objects() if isinstance(candidate, HANDLE_TYPES)}


def collect_from_new_threads() -> None:
    """Collect from threads born in the child: they reuse the stacks of the parent's librdkafka
    threads, which is what turns a destroy in the child into an abort or a crash."""
    start = threading.Barrier(CHILD_THREADS)

    def collect() -> None:
        start.wait()
        gc.collect()

    threads = [threading.Thread(target=collect) for _ in range(CHILD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()


def fork_and_collect(in_child: Any = None) -> None:
    """Fork; the child runs ``in_child``, collects garbage and checks every handle survived.

    The child lists what it inherited itself: the parent's threads may still destroy a handle
    (safely, there) between any list the parent makes and the fork. The collector is paused
    (see :func:`collector_paused`), so nothing is collected in the child before it looks.
    """
    assert not gc.isenabled()
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            inherited = handle_ids()
            if in_child is not None:
                in_child()
            collect_from_new_threads()
            code = 0 if inherited <= handle_ids() else 1
        finally:
            os._exit(code)
    assert_exited_cleanly(pid)


def assert_exited_cleanly(pid: int) -> None:
    statuses: list[int] = []

    def exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        statuses.append(status)
        return done == pid

    try:
        wait_until(exited, CHILD_DEADLINE_S, "the forked child to exit")
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the child hung destroying an inherited librdkafka handle")
    status = statuses[-1]
    assert not os.WIFSIGNALED(status), (
        f"the child was killed by {signal.Signals(os.WTERMSIG(status)).name}")
    assert os.WEXITSTATUS(status) == 0, (
        "the child destroyed an inherited librdkafka handle" if os.WEXITSTATUS(status) == 1
        else f"the child failed with exit status {os.WEXITSTATUS(status)}")


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "not-closed"])
@pytest.mark.parametrize("mode", ["direct", "auto"])
def test_dropped_producer_survives_a_collection_in_a_forked_child(
        broker: Broker, mode: str, closed: bool) -> None:
    topic = broker.create_topic(random_name("fork-dropped"))
    errors: list[Any] = []
    with collector_paused():
        # error_cb is forwarded from the direct producer: the case that used to close a cycle.
        producer = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "pytest-fork",
                             "sidecar.mode": mode, "sidecar.address": NOWHERE,
                             "sidecar.connect.timeout.ms": 100, "error_cb": errors.append})
        producer.produce(topic, b"before the fork")
        assert producer.flush(30) == 0
        assert producer.stats()["route"] == "direct"
        if closed:
            assert producer.close() == 0
        del producer
        fork_and_collect()


def test_an_apps_garbage_producer_survives_a_collection_in_a_forked_child(
        broker: Broker) -> None:
    topic = broker.create_topic(random_name("fork-garbage"))
    with collector_paused():
        plain = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap,
                                          "error_cb": lambda error: None})
        plain.produce(topic, b"before the fork")
        assert plain.flush(30) == 0
        cycle: list[Any] = [plain]
        cycle.append(cycle)
        del plain, cycle
        fork_and_collect()


def test_an_apps_producer_dropped_in_a_forked_child_is_not_destroyed(broker: Broker) -> None:
    topic = broker.create_topic(random_name("fork-held"))
    plain = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce(topic, b"before the fork")
    assert plain.flush(30) == 0
    held = [plain]
    del plain
    with collector_paused():
        fork_and_collect(in_child=held.clear)  # the child drops the last reference
