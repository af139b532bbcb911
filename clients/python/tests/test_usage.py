"""Bad usage raises what confluent-kafka raises; local queue limits, purge and compat shim.

These tests need neither broker nor sidecar: an unreachable sidecar address keeps records in
the local queue (``auto`` mode with a long connect timeout never gets to fall back).
"""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest

import kafka_sidecar
from harness import free_port
from kafka_sidecar import KafkaError, KafkaException, Producer
from kafka_sidecar import compat

NOWHERE = f"127.0.0.1:{free_port()}"
# Nothing reaches anything in these tests: records stay queued locally.
STUCK = {"sidecar.mode": "auto", "sidecar.address": NOWHERE,
         "sidecar.connect.timeout.ms": 60000, "bootstrap.servers": NOWHERE}


def test_error_classes_are_confluent_kafkas() -> None:
    assert KafkaException is confluent_kafka.KafkaException
    assert KafkaError is confluent_kafka.KafkaError


@pytest.mark.parametrize("conf", [
    {"no.such.property": 1},
    {"sidecar.no.such": 1},
    {"linger.ms": "soon"},
    {"linger.ms": [5]},
    {"batch.num.messages": "many"},
    {"enable.idempotence": "maybe"},
    {"sidecar.mode": "sometimes"},
    {"sidecar.connect.timeout.ms": "long"},
    {"on_delivery": 5},
])
def test_bad_config_raises_like_confluent_kafka(conf: dict[str, Any]) -> None:
    with pytest.raises(KafkaException) as raised:
        Producer({**STUCK, **conf})
    assert raised.value.args[0].code() == KafkaError._INVALID_ARG
    plain = {key: value for key, value in conf.items() if not key.startswith("sidecar.")}
    if plain:  # the same dict minus sidecar keys fails the same way in confluent-kafka
        with pytest.raises(confluent_kafka.KafkaException) as expected:
            confluent_kafka.Producer({**plain, "log_level": 0})
        assert expected.value.args[0].code() == raised.value.args[0].code()


def test_non_dict_and_bad_callbacks_raise_type_error() -> None:
    with pytest.raises(TypeError):
        Producer(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Producer({**STUCK, "error_cb": 5})


def test_environment_overrides_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SIDECAR_MODE", "bogus")
    with pytest.raises(KafkaException):
        Producer(dict(STUCK))
    monkeypatch.setenv("KAFKA_SIDECAR_MODE", "direct")
    assert Producer(dict(STUCK)).mode == "direct"


def test_unreachable_sidecar_in_sidecar_mode_raises_transport_error() -> None:
    with pytest.raises(KafkaException) as raised:
        Producer({"sidecar.mode": "sidecar", "sidecar.address": NOWHERE,
                  "sidecar.connect.timeout.ms": 200})
    assert raised.value.args[0].code() == KafkaError._TRANSPORT


def test_unreachable_unix_socket_in_sidecar_mode(tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    monkeypatch.setenv("KAFKA_SIDECAR_ADDRESS", f"unix://{tmp_path}/missing.sock")
    with pytest.raises(KafkaException):
        Producer({"sidecar.mode": "sidecar", "sidecar.connect.timeout.ms": 200})


@pytest.mark.parametrize("arguments, keywords", [
    ((), {}),
    ((5,), {}),
    (("t",), {"value": 5}),
    (("t",), {"key": 5.0}),
    (("t",), {"headers": 5}),
    (("t",), {"headers": [("a",)]}),
    (("t",), {"headers": {"a": 5}}),
    (("t",), {"partition": "x"}),
    (("t",), {"timestamp": "x"}),
    (("t",), {"bogus": 1}),
])
def test_bad_produce_arguments_raise_type_error(arguments: tuple[Any, ...],
                                                keywords: dict[str, Any]) -> None:
    producer = Producer(dict(STUCK))
    reference = confluent_kafka.Producer({"log_level": 0})
    with pytest.raises(TypeError):
        reference.produce(*arguments, **keywords)
    with pytest.raises(TypeError):
        producer.produce(*arguments, **keywords)


def test_oversized_record_raises_msg_size_too_large() -> None:
    producer = Producer({**STUCK, "message.max.bytes": 1000})
    with pytest.raises(KafkaException) as raised:
        producer.produce("t", b"x" * 5000)
    assert raised.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_full_queue_raises_buffer_error_and_purge_fails_records() -> None:
    producer = Producer({**STUCK, "queue.buffering.max.messages": 5})
    errors: list[Any] = []
    for index in range(5):
        producer.produce("t", str(index), on_delivery=lambda error, message: errors.append(error))
    with pytest.raises(BufferError):
        producer.produce("t", b"one too many")
    assert len(producer) == 5
    producer.purge()
    assert producer.poll(0) == 5
    assert [error.code() for error in errors] == [KafkaError._PURGE_QUEUE] * 5
    assert len(producer) == 0 and producer.flush(0) == 0


def test_byte_limit_raises_buffer_error() -> None:
    producer = Producer({**STUCK, "queue.buffering.max.kbytes": 1})
    producer.produce("t", b"x" * 800)
    with pytest.raises(BufferError):
        producer.produce("t", b"x" * 800)


def test_flush_times_out_with_records_pending() -> None:
    producer = Producer(dict(STUCK))
    producer.produce("t", b"v")
    assert producer.flush(0.2) == 1
    assert producer.stats()["queue_depth"] == 1


def test_compat_picks_the_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SIDECAR_MODE", raising=False)
    plain = compat.Producer({"bootstrap.servers": NOWHERE, "sidecar.address": NOWHERE,
                             "log_level": 0})
    assert isinstance(plain, confluent_kafka.Producer)
    monkeypatch.setenv("KAFKA_SIDECAR_MODE", "auto")
    sidecar = compat.Producer(dict(STUCK))
    assert isinstance(sidecar, kafka_sidecar.Producer) and sidecar.mode == "auto"
    with pytest.raises(KafkaException):
        compat.Producer({"no.such.property": 1})


@pytest.mark.parametrize("conf, expected_s", [
    ({}, 0.0),  # natural batching: the sidecar lingers across workers anyway
    ({"linger.ms": 20}, 0.0),  # linger.ms is the sidecar's (and the fallback producer's)
    ({"queue.buffering.max.ms": 7}, 0.0),
    ({"linger.ms": 20, "sidecar.linger.ms": 1}, 0.001),
])
def test_client_linger_defaults_to_natural_batching(conf: dict[str, Any], expected_s: float) -> None:
    from kafka_sidecar._config import parse
    settings = parse({**STUCK, **conf}, {}, "auto")
    assert settings.linger_s == pytest.approx(expected_s)


def test_bad_sidecar_linger_is_rejected_like_librdkafka_would() -> None:
    with pytest.raises(KafkaException) as raised:
        Producer({**STUCK, "sidecar.linger.ms": "soon"})
    assert raised.value.args[0].code() == KafkaError._INVALID_ARG
