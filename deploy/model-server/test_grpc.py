"""Tests for the KServe v2 gRPC API, through a real grpcio server and client.

    /usr/bin/python3 -m unittest deploy/model-server/test_grpc.py
"""

import json
import os
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import app as model_app  # noqa: E402
import grpc_server  # noqa: E402
import open_inference_grpc_pb2 as pb  # noqa: E402
import open_inference_grpc_pb2_grpc as pb_grpc  # noqa: E402

ROW = [float(i) / 10 for i in range(16)]


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class GRPCTest(unittest.TestCase):
    def start(self, load=True, **overrides):
        settings = model_app.Settings(version="v2.7", color="green", **overrides)
        self.server = model_app.ModelServer(settings, sleep=lambda s: None)
        if load:
            self.server.load()
        addr = free_addr()
        self.grpc = grpc_server.serve(self.server, addr, threads=4)
        self.addCleanup(self.grpc.stop, None)
        channel = grpc.insecure_channel(addr)
        self.addCleanup(channel.close)
        self.stub = pb_grpc.GRPCInferenceServiceStub(channel)
        self.http = model_app.create_app(self.server).test_client()

    def infer(self, rows, raw=False, model="mlp"):
        req = pb.ModelInferRequest(model_name=model, id="42")
        tensor = req.inputs.add(name="input", datatype="FP32", shape=[len(rows), 16])
        flat = [v for r in rows for v in r]
        if raw:
            req.raw_input_contents.append(struct.pack(f"<{len(flat)}f", *flat))
        else:
            tensor.contents.fp32_contents.extend(flat)
        return self.stub.ModelInfer(req, timeout=10)

    def test_model_infer_answers_what_predict_answers(self):
        self.start()
        want = json.loads(self.http.post("/predict", json={"inputs": [ROW, ROW]}).data)["outputs"]
        for raw in (False, True):
            with self.subTest(raw_input_contents=raw):
                res = self.infer([ROW, ROW], raw=raw)
                self.assertEqual((res.model_name, res.model_version, res.id), ("mlp", "v2.7", "42"))
                self.assertEqual(res.parameters["color"].string_param, "green")
                out = res.outputs[0]
                self.assertEqual((out.name, out.datatype, list(out.shape)), ("output", "FP32", [2, 4]))
                got = list(out.contents.fp32_contents)
                for g, w in zip(got, [v for r in want for v in r]):
                    self.assertAlmostEqual(g, w, places=5)

    def test_readiness_follows_loading_and_sends_the_boot_id(self):
        self.start(load=False)
        res, call = self.stub.ServerReady.with_call(pb.ServerReadyRequest(), timeout=10)
        self.assertFalse(res.ready)
        self.assertIn(("boot-id", self.server.boot_id), call.initial_metadata())
        self.assertFalse(self.stub.ModelReady(pb.ModelReadyRequest(name="mlp"), timeout=10).ready)
        with self.assertRaises(grpc.RpcError) as err:
            self.infer([ROW])
        self.assertEqual(err.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.server.load()
        self.assertTrue(self.stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready)
        self.assertTrue(self.stub.ModelReady(pb.ModelReadyRequest(name="mlp"), timeout=10).ready)

    def test_model_metadata_describes_the_mlp(self):
        self.start()
        meta = self.stub.ModelMetadata(pb.ModelMetadataRequest(name="mlp"), timeout=10)
        self.assertEqual((meta.name, list(meta.versions), meta.platform), ("mlp", ["v2.7"], "pytorch"))
        self.assertEqual((meta.inputs[0].datatype, list(meta.inputs[0].shape)), ("FP32", [-1, 16]))

    def test_errors_are_grpc_statuses(self):
        self.start(fail_ratio=model_app.Fraction(1))
        cases = [
            ("unknown model", lambda: self.infer([ROW], model="resnet"), grpc.StatusCode.NOT_FOUND),
            ("wrong width", lambda: self.infer([ROW[:15]]), grpc.StatusCode.INVALID_ARGUMENT),
            ("injected failure", lambda: self.infer([ROW]), grpc.StatusCode.INTERNAL),
            ("metadata of an unknown model", lambda: self.stub.ModelMetadata(pb.ModelMetadataRequest(name="x"), timeout=10),
             grpc.StatusCode.NOT_FOUND),
        ]
        for desc, call, code in cases:
            with self.subTest(desc):
                with self.assertRaises(grpc.RpcError) as err:
                    call()
                self.assertEqual(err.exception.code(), code)


if __name__ == "__main__":
    unittest.main()
