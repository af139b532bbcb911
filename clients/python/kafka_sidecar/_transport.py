"""The gRPC edge: one channel to the sidecar, its calls, and the health check.

Each channel uses a local subchannel pool: gRPC otherwise shares TCP connections between channels
with the same target process-wide, and a forked child would then write into its parent's socket
(seen as ``UNAVAILABLE: Wrong file descriptor generation``). The standard health service is
spoken with a two-field hand-written codec rather than an extra dependency.
"""

from __future__ import annotations

from typing import Any, Optional

import grpc

from ._proto import producer_pb2, producer_pb2_grpc

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVICE_NAME = "kafka_sidecar.v1.ProducerSidecar"
EMIT_BATCH = f"/{SERVICE_NAME}/EmitBatch"
SERVING = 1
ERROR_CODE_METADATA = "kafka-sidecar-error-code"
RETRY_AFTER_METADATA = "retry-after-ms"
# grpc.experimental.ChannelOptions.SingleThreadedUnaryStream (a Python-side channel option).
SINGLE_THREADED_UNARY_STREAM = "SingleThreadedUnaryStream"

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def target(address: str) -> str:
    """A gRPC target for ``unix:///path``, ``unix:/path`` or ``host:port``."""
    if address.startswith("unix:"):
        return address
    if address.startswith("/"):
        return f"unix://{address}"
    return address


def encode_health_request(service: str) -> bytes:
    """``grpc.health.v1.HealthCheckRequest{service}``: field 1, length-delimited."""
    data = service.encode()
    return b"\n" + _varint(len(data)) + data if data else b""


def decode_health_response(data: bytes) -> int:
    """``grpc.health.v1.HealthCheckResponse.status`` (field 1, varint); 0 when absent."""
    if len(data) >= 2 and data[0] == 0x08:
        return data[1]
    return 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class SidecarChannel:
    """A gRPC channel to the sidecar and the calls this client makes on it."""

    def __init__(self, address: str) -> None:
        self.address = address
        options: list[tuple[str, Any]] = []
        if target(address).startswith("unix:"):
            # gRPC-core's default :authority for a unix target is the percent-encoded socket
            # path, which Rust's h2 server rejects (RST_STREAM PROTOCOL_ERROR).
            options.append(("grpc.default_authority", "localhost"))
        self._channel = grpc.insecure_channel(
            target(address),
            options=options + [
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                # Reconnect quickly after the sidecar restarts.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                ("grpc.keepalive_time_ms", 30000),
                ("grpc.keepalive_timeout_ms", 10000),
                # The delivery stream is read by the thread that iterates it, instead of by
                # gRPC's channel-spin thread handing each message over through a condition
                # variable: two thread switches fewer per message.
                (SINGLE_THREADED_UNARY_STREAM, 1),
            ],
        )
        self._stub = producer_pb2_grpc.ProducerSidecarStub(self._channel)
        # Requests arrive already serialized (see _wire); acks are parsed by protobuf.
        self._emit_batch = self._channel.unary_unary(
            EMIT_BATCH,
            request_serializer=None,
            response_deserializer=producer_pb2.ProduceBatchAck.FromString,
            _registered_method=True,
        )
        self._health = self._channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=lambda request: request,
            response_deserializer=lambda response: response,
        )

    def healthy(self, timeout_s: float, wait_for_ready: bool = True) -> bool:
        """True when the sidecar answers SERVING within ``timeout_s``.

        ``wait_for_ready`` waits out connection attempts (start-up); without it a refused
        connection fails at once (probing while on the direct route).
        """
        try:
            response = self._health(
                encode_health_request(SERVICE_NAME),
                timeout=max(timeout_s, 0.01),
                wait_for_ready=wait_for_ready,
            )
        except grpc.RpcError:
            return False
        return decode_health_response(response) == SERVING

    def emit_batch(self, batch: bytes, timeout_s: float) -> Any:
        """Send one serialized ``ProduceBatch``; returns its ``ProduceBatchAck`` or raises
        ``grpc.RpcError``."""
        return self._emit_batch(batch, timeout=timeout_s)

    def delivery_stream(self, session_id: str, after_seq: int) -> Any:
        """Open the session's delivery-report stream: an iterator with ``cancel()``."""
        request = producer_pb2.DeliveryStreamRequest(session_id=session_id, after_seq=after_seq)
        return self._stub.DeliveryStream(request)

    def close(self) -> None:
        self._channel.close()


def error_code_of(error: grpc.RpcError) -> Optional[str]:
    """The sidecar's machine code from a failed call's trailing metadata, if any."""
    try:
        for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == ERROR_CODE_METADATA:
                return value if isinstance(value, str) else value.decode()
    except Exception:  # noqa: BLE001 - metadata is best effort
        return None
    return None


def retry_hint_s(error: grpc.RpcError) -> float:
    """The sidecar's retry hint in seconds from a failed call's trailing metadata; 0 when none."""
    try:
        for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == RETRY_AFTER_METADATA:
                return float(value) / 1000
    except (TypeError, ValueError):
        return 0.0
    return 0.0
