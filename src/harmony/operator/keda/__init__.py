"""KEDA's external scaler (externalscaler.proto), served from the operator's current decisions.

- `externalscaler.proto`: harmony's transcription of KEDA's interface (the names and field numbers are KEDA's).
- `externalscaler_pb2.py`, `externalscaler_pb2_grpc.py`: generated from it and checked in, as gRPC projects
  usually do: installing harmony then needs grpcio and protobuf only, not a protoc at build time, and the code
  that talks to KEDA is reviewable in the repository. They are regenerated only when the proto changes, with
  grpcio-tools matching the runtime pins in pyproject.toml (gencode protobuf 7.35, grpcio 1.85), from the
  repository root:
  `python -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src harmony/operator/keda/externalscaler.proto`
- `scaler`: the servicer over `harmony.operator.decisions.DecisionBoard`, and `serve`.

Imported only when the operator runs with a KEDA scaler port (`harmony operator run --keda-scaler-port`), so
the operator without it never loads grpc.
"""
