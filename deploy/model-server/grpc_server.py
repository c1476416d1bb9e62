"""The KServe v2 (Open Inference Protocol) gRPC API of the model server.

It serves the same ModelServer as the Flask app, in the same gunicorn worker
process, on GRPC_BIND (e.g. 0.0.0.0:8001, Triton's gRPC port), so one model
copy answers both protocols. The messages come from the published
open_inference_grpc.proto (proto/inference in the repository); the generated
open_inference_grpc_pb2*.py beside this file are checked in, and `make proto`
regenerates them.

    ServerLive, ServerReady     ready once the model loaded; ServerReady sends a
                                "boot-id" header so a restart is visible
    ModelReady, ModelMetadata   for MODEL_NAME; any other name is NOT_FOUND
    ModelInfer                  one FP32 input of shape [N, 16] (fp32_contents or
                                raw_input_contents), one FP32 output [N, 4];
                                model_version is MODEL_VERSION and the "color"
                                parameter MODEL_COLOR
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import time
from concurrent import futures
from typing import Optional

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import open_inference_grpc_pb2 as pb  # noqa: E402
import open_inference_grpc_pb2_grpc as pb_grpc  # noqa: E402

import app as model_app  # noqa: E402

log = logging.getLogger("model_server.grpc")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over one ModelServer."""

    def __init__(self, server: "model_app.ModelServer") -> None:
        self.server = server
        self.settings = server.settings

    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        context.send_initial_metadata((("boot-id", self.server.boot_id),))
        return pb.ServerReadyResponse(ready=self.server.loaded)

    def _check_model(self, name: str, context) -> None:
        if name != self.settings.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}; this server serves {self.settings.model_name!r}")

    def ModelReady(self, request, context):
        self._check_model(request.name, context)
        return pb.ModelReadyResponse(ready=self.server.loaded)

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="switchyard-model-server", version=self.settings.version, extensions=[])

    def ModelMetadata(self, request, context):
        self._check_model(request.name, context)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=self.settings.model_name, versions=[self.settings.version], platform="pytorch",
            inputs=[tensor(name="input", datatype="FP32", shape=[-1, model_app.IN_FEATURES])],
            outputs=[tensor(name="output", datatype="FP32", shape=[-1, model_app.OUT_FEATURES])],
        )

    def ModelInfer(self, request, context):
        self._check_model(request.model_name, context)
        server = self.server
        with server.in_flight():
            if not server.loaded:
                server.metrics.count_request(503)
                context.abort(grpc.StatusCode.UNAVAILABLE, "model loading" if server.load_error is None else "model failed to load")
            rows = self._rows(request, context)
            n = server.next_request_number()
            if server.should_fail(n):
                server.metrics.count_request(500)
                context.abort(grpc.StatusCode.INTERNAL, f"injected failure (FAIL_RATIO={float(self.settings.fail_ratio):g}, request {n})")
            started = time.perf_counter()
            try:
                outputs = server.predict(rows, n)
            except model_app.InputError as err:
                server.metrics.count_request(400)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            finally:
                server.metrics.observe_latency(time.perf_counter() - started)
            server.metrics.count_request(200)
            flat = [v for row in outputs for v in row]
            return pb.ModelInferResponse(
                model_name=self.settings.model_name, model_version=self.settings.version, id=request.id,
                parameters={"color": pb.InferParameter(string_param=self.settings.color)},
                outputs=[pb.ModelInferResponse.InferOutputTensor(
                    name="output", datatype="FP32", shape=[len(outputs), model_app.OUT_FEATURES],
                    contents=pb.InferTensorContents(fp32_contents=flat),
                )],
            )

    def _rows(self, request, context) -> list:
        """The one FP32 [N, 16] input as rows, validated like /predict's."""
        if len(request.inputs) != 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"want exactly one input tensor, got {len(request.inputs)}")
        tensor = request.inputs[0]
        if tensor.datatype != "FP32":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input {tensor.name!r} is {tensor.datatype}; want FP32")
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != model_app.IN_FEATURES or not 1 <= shape[0] <= model_app.MAX_ROWS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"input shape {shape}; want [N, {model_app.IN_FEATURES}] with 1 <= N <= {model_app.MAX_ROWS}")
        if request.raw_input_contents:
            raw = request.raw_input_contents[0]
            if len(raw) != 4 * shape[0] * shape[1]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"raw input of {len(raw)} bytes does not hold shape {shape} in FP32")
            values = list(struct.unpack(f"<{shape[0] * shape[1]}f", raw))
        else:
            values = list(tensor.contents.fp32_contents)
        if len(values) != shape[0] * shape[1]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input has {len(values)} values; shape {shape} needs {shape[0] * shape[1]}")
        for i, v in enumerate(values):
            if v != v or abs(v) > model_app.FLOAT32_MAX:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input value {i} is not a finite float32")
        width = model_app.IN_FEATURES
        return [values[r * width:(r + 1) * width] for r in range(shape[0])]


def serve(server: "model_app.ModelServer", bind: str, threads: int = 16) -> grpc.Server:
    """Starts the gRPC server on bind (host:port) and returns it; the caller
    stops it. Raises RuntimeError when the address cannot be bound."""
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(server), grpc_server)
    port = grpc_server.add_insecure_port(bind)
    if port == 0:
        raise RuntimeError(f"GRPC_BIND={bind!r}: cannot listen there; pick a free host:port")
    grpc_server.start()
    log.info("KServe v2 gRPC API on %s", bind)
    return grpc_server


def maybe_serve(server: "model_app.ModelServer", env=os.environ) -> Optional[grpc.Server]:
    """Serves gRPC when GRPC_BIND is set (GRPC_THREADS threads, default 16)."""
    bind = env.get("GRPC_BIND", "").strip()
    if not bind:
        return None
    threads = model_app._count(env, "GRPC_THREADS", 16) or 16
    return serve(server, bind, threads)
