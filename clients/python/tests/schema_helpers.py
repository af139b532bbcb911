"""Helpers for tests/test_schema_formats.py: the registry's REST API, Confluent's registry client
adapted to the test registry's protobuf limits, the sidecar's produce and active-consumer
calls, the wire format's header, and a TCP proxy a test can cut.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import requests
from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

from harness import random_name, wait_until

REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"
V2_JSON = "application/vnd.kafka.v2+json"


# --- the registry's own REST API ------------------------------------------------------------

def register(registry_url: str, subject: str, schema: str, schema_type: str = "AVRO") -> int:
    """Registers ``schema`` under ``subject`` as an application would; its id."""
    body: dict[str, Any] = {"schema": schema}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    reply = requests.post(f"{registry_url}/subjects/{subject}/versions", json=body,
                          headers={"Content-Type": REGISTRY_JSON}, timeout=10)
    assert reply.status_code == 200, f"registering under {subject}: {reply.text}"
    return int(reply.json()["id"])


def subject_versions(registry_url: str, subject: str) -> list[int]:
    reply = requests.get(f"{registry_url}/subjects/{subject}/versions", timeout=10)
    return list(reply.json()) if reply.status_code == 200 else []


def set_compatibility(registry_url: str, subject: str, level: str) -> None:
    reply = requests.put(f"{registry_url}/config/{subject}", json={"compatibility": level},
                         headers={"Content-Type": REGISTRY_JSON}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert requests.get(f"{registry_url}/config/{subject}",
                        timeout=10).json()["compatibilityLevel"] == level


# --- protobuf: .proto text in, descriptors out ------------------------------------------------

def compile_proto(text: str) -> descriptor_pb2.FileDescriptorProto:
    """Compiles one self-contained ``.proto`` text with protoc (from grpcio-tools)."""
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "schema.proto").write_text(text)
        output = Path(workdir, "schema.pb")
        status = protoc.main(["protoc", f"-I{workdir}", f"--descriptor_set_out={output}",
                              "schema.proto"])
        assert status == 0, f"protoc failed on:\n{text}"
        return descriptor_pb2.FileDescriptorSet.FromString(output.read_bytes()).file[0]


def proto_message_class(text: str, full_name: str) -> Any:
    """The message class ``full_name`` of ``text``, in a pool of its own."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(compile_proto(text))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


class TextProtobufRegistryClient(SchemaRegistryClient):
    """Confluent's registry client, with the one thing Confluent's registry does and the test
    registry does not: ``?format=serialized``. Confluent's protobuf serde asks for schemas in
    that format (a base64 ``FileDescriptorProto``); the test registry ignores the parameter and
    answers ``.proto`` text, so this client compiles the text it got, as Confluent's registry
    would. Every other call, and every other schema type, is Confluent's client unchanged."""

    def get_schema(self, schema_id: int, subject_name: Optional[str] = None,
                   fmt: Optional[str] = None, reference_format: Optional[str] = None) -> Schema:
        schema = super().get_schema(schema_id, subject_name, None, reference_format)
        return self._in_format(schema, fmt)

    def get_latest_version(self, subject_name: str, fmt: Optional[str] = None) -> RegisteredSchema:
        latest = super().get_latest_version(subject_name, None)
        return RegisteredSchema(schema_id=latest.schema_id, guid=latest.guid,
                                subject=latest.subject, version=latest.version,
                                schema=self._in_format(latest.schema, fmt))

    @staticmethod
    def _in_format(schema: Schema, fmt: Optional[str]) -> Schema:
        if fmt != "serialized" or schema.schema_type != "PROTOBUF" or schema.schema_str is None:
            return schema
        compiled = compile_proto(schema.schema_str).SerializeToString()
        return Schema(base64.standard_b64encode(compiled).decode("ascii"), "PROTOBUF",
                      schema.references, schema.metadata, schema.rule_set)


# --- the wire format -----------------------------------------------------------------------

def header(data: bytes) -> tuple[int, int, bytes]:
    """Splits Confluent's framing: (magic byte, schema id, the rest)."""
    assert data is not None and len(data) >= 5, f"too short for Confluent framing: {data!r}"
    magic, schema_id = struct.unpack(">bI", data[:5])
    return magic, schema_id, data[5:]


# --- the sidecar ---------------------------------------------------------------------------

class SidecarHttp:
    """The sidecar's HTTP API (produce paths and the active consumer) and its admin metrics."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.url = f"http://{info['http']}"
        self.admin = f"http://{info['admin']}"

    def produce(self, topic: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.url}/producers/{topic}", json=body, timeout=30)

    def produce_v2(self, topic: str, body: dict[str, Any], embedded: str,
                   partition: Optional[int] = None) -> requests.Response:
        path = f"/topics/{topic}" + (f"/partitions/{partition}" if partition is not None else "")
        return requests.post(self.url + path, data=json.dumps(body), timeout=30, headers={
            "Content-Type": f"application/vnd.kafka.{embedded}.v2+json", "Accept": V2_JSON})

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        text = requests.get(f"{self.admin}/metrics", timeout=10).text
        total = 0.0
        for match in re.finditer(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", text, re.M):
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(match.group(2))
        return total

    def consume(self, topic: str, embedded: str, count: int,
                timeout: float = 60) -> list[dict[str, Any]]:
        """Reads ``count`` records of ``topic`` from the start through a new active consumer
        (Confluent v2 REST) of format ``embedded``; the instance is deleted afterwards."""
        group = random_name("schema-group")
        accept = {"Accept": f"application/vnd.kafka.{embedded}.v2+json"}
        created = requests.post(f"{self.url}/consumers/{group}", headers={"Content-Type": V2_JSON},
                                timeout=30, data=json.dumps({
                                    "name": "reader", "format": embedded,
                                    "auto.offset.reset": "earliest"}))
        assert created.status_code == 200, created.text
        instance = created.json()["base_uri"]
        try:
            subscribed = requests.post(f"{instance}/subscription", timeout=30,
                                       data=json.dumps({"topics": [topic]}),
                                       headers={"Content-Type": V2_JSON})
            assert subscribed.status_code in (200, 204), subscribed.text
            records: list[dict[str, Any]] = []

            def enough() -> bool:
                reply = requests.get(f"{instance}/records", params={"timeout": 1000},
                                     headers=accept, timeout=30)
                assert reply.status_code == 200, reply.text
                records.extend(reply.json())
                return len(records) >= count

            wait_until(enough, timeout, f"{count} {embedded} records from {topic}")
            return records
        finally:
            requests.delete(instance, headers={"Content-Type": V2_JSON}, timeout=30)


# --- a TCP proxy the test can cut ----------------------------------------------------------

class TcpProxy:
    """Forwards 127.0.0.1:port to ``upstream`` until ``close()``, which drops the listener and
    every connection, so the upstream looks gone (connection refused) to whoever used it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.closed:
                    client.close()
                    server.close()
                    return
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self.lock:
            self.closed = True
            sockets, self.sockets = self.sockets, []
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()
        for end in sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
