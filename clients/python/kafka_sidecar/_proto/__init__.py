"""Generated gRPC stubs for ``proto/kafka_sidecar/v1/producer.proto``.

Do not edit the ``producer_pb2*`` files: run ``scripts/gen-python-stubs`` from the repository root.
"""
