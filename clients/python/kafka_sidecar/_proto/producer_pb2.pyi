from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class ProduceRequest(_message.Message):
    __slots__ = ("topic", "key", "headers", "value", "partition", "client_id", "session_id", "record_id", "timestamp_ms", "key_schema", "value_schema")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    VALUE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    topic: str
    key: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    value: bytes
    partition: int
    client_id: str
    session_id: str
    record_id: int
    timestamp_ms: int
    key_schema: SchemaSpec
    value_schema: SchemaSpec
    def __init__(self, topic: _Optional[str] = ..., key: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., value: _Optional[bytes] = ..., partition: _Optional[int] = ..., client_id: _Optional[str] = ..., session_id: _Optional[str] = ..., record_id: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., key_schema: _Optional[_Union[SchemaSpec, _Mapping]] = ..., value_schema: _Optional[_Union[SchemaSpec, _Mapping]] = ...) -> None: ...

class SchemaSpec(_message.Message):
    __slots__ = ("format", "schema", "id", "version", "subject")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    format: str
    schema: str
    id: int
    version: int
    subject: str
    def __init__(self, format: _Optional[str] = ..., schema: _Optional[str] = ..., id: _Optional[int] = ..., version: _Optional[int] = ..., subject: _Optional[str] = ...) -> None: ...

class ProduceAck(_message.Message):
    __slots__ = ("record_id", "received", "error_code", "error_message", "retry_after_ms")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    record_id: int
    received: bool
    error_code: str
    error_message: str
    retry_after_ms: int
    def __init__(self, record_id: _Optional[int] = ..., received: _Optional[bool] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class ProduceBatch(_message.Message):
    __slots__ = ("batch_id", "client_id", "session_id", "records", "key_schema", "value_schema")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    KEY_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    VALUE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    client_id: str
    session_id: str
    records: _containers.RepeatedCompositeFieldContainer[ProduceRequest]
    key_schema: SchemaSpec
    value_schema: SchemaSpec
    def __init__(self, batch_id: _Optional[int] = ..., client_id: _Optional[str] = ..., session_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[ProduceRequest, _Mapping]]] = ..., key_schema: _Optional[_Union[SchemaSpec, _Mapping]] = ..., value_schema: _Optional[_Union[SchemaSpec, _Mapping]] = ...) -> None: ...

class ProduceBatchAck(_message.Message):
    __slots__ = ("batch_id", "acks", "accepted", "rejected", "retry_after_ms")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    acks: _containers.RepeatedCompositeFieldContainer[ProduceAck]
    accepted: int
    rejected: int
    retry_after_ms: int
    def __init__(self, batch_id: _Optional[int] = ..., acks: _Optional[_Iterable[_Union[ProduceAck, _Mapping]]] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class DeliveryStreamRequest(_message.Message):
    __slots__ = ("session_id", "after_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class DeliveryReportBatch(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[DeliveryReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[DeliveryReport, _Mapping]]] = ...) -> None: ...

class DeliveryReport(_message.Message):
    __slots__ = ("seq", "record_id", "topic", "partition", "offset", "timestamp_ms", "error_code", "error_message", "latency_us")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    seq: int
    record_id: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    error_code: str
    error_message: str
    latency_us: int
    def __init__(self, seq: _Optional[int] = ..., record_id: _Optional[int] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., latency_us: _Optional[int] = ...) -> None: ...
