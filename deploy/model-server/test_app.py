"""Tests for the model server, through Flask's test client.

    /usr/bin/python3 -m unittest deploy/model-server/test_app.py

No test sleeps: the server's sleep is replaced by a recorder or by a function
that blocks on an Event the test controls.
"""

import json
import math
import os
import re
import sys
import threading
import unittest
import uuid
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import app as model_app  # noqa: E402  (needs the path above)

ROW = [float(i) / 10 for i in range(16)]
WAIT = 10  # seconds: a deadline for background work, never a sleep


def new_server(version="v2.6", color="blue", load=True, sleep=None, **overrides):
    settings = model_app.Settings(version=version, color=color, **overrides)
    server = model_app.ModelServer(settings, sleep=sleep or (lambda s: None))
    if load:
        server.load()
    return server, model_app.create_app(server).test_client()


def predict(client, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/predict", data=data, content_type="application/json")


class SettingsTest(unittest.TestCase):
    def test_from_env_reads_every_variable(self):
        s = model_app.Settings.from_env({
            "MODEL_VERSION": "v2.7", "MODEL_COLOR": "green", "MODEL_NAME": "net",
            "LOAD_DELAY_SECONDS": "1.5", "WARMUP_SLOW_REQUESTS": "3",
            "WARMUP_SLOW_SECONDS": "0.25", "FAIL_RATIO": "0.1",
        })
        self.assertEqual(s, model_app.Settings(
            version="v2.7", color="green", model_name="net", load_delay_seconds=1.5,
            warmup_slow_requests=3, warmup_slow_seconds=0.25, fail_ratio=Fraction(1, 10),
        ))

    def test_from_env_defaults(self):
        s = model_app.Settings.from_env({"MODEL_VERSION": "v2.6", "MODEL_COLOR": "blue"})
        self.assertEqual((s.model_name, s.load_delay_seconds, s.warmup_slow_requests, s.fail_ratio), ("mlp", 0.0, 0, 0))

    def test_from_env_rejects_bad_values_naming_the_variable(self):
        base = {"MODEL_VERSION": "v2.6", "MODEL_COLOR": "blue"}
        test_cases = [
            ("missing version", {"MODEL_VERSION": ""}, "MODEL_VERSION"),
            ("unknown color", {"MODEL_COLOR": "red"}, "MODEL_COLOR"),
            ("negative delay", {"LOAD_DELAY_SECONDS": "-1"}, "LOAD_DELAY_SECONDS"),
            ("non-numeric delay", {"LOAD_DELAY_SECONDS": "soon"}, "LOAD_DELAY_SECONDS"),
            ("infinite delay", {"WARMUP_SLOW_SECONDS": "inf"}, "WARMUP_SLOW_SECONDS"),
            ("fractional count", {"WARMUP_SLOW_REQUESTS": "1.5"}, "WARMUP_SLOW_REQUESTS"),
            ("ratio above one", {"FAIL_RATIO": "1.5"}, "FAIL_RATIO"),
            ("ratio not a number", {"FAIL_RATIO": "half"}, "FAIL_RATIO"),
        ]
        for desc, env, want in test_cases:
            with self.subTest(desc):
                with self.assertRaisesRegex(ValueError, want):
                    model_app.Settings.from_env({**base, **env})


class PredictTest(unittest.TestCase):
    def test_answers_one_row_of_four_outputs_per_input_row(self):
        _, client = new_server()
        for n in (1, 2, 64):
            with self.subTest(rows=n):
                resp = predict(client, {"inputs": [ROW] * n})
                self.assertEqual(resp.status_code, 200, resp.get_json())
                doc = resp.get_json()
                self.assertEqual(len(doc["outputs"]), n)
                for out in doc["outputs"]:
                    self.assertEqual(len(out), 4)
                    self.assertTrue(all(isinstance(v, float) and math.isfinite(v) for v in out))
                self.assertEqual((doc["model_version"], doc["color"]), ("v2.6", "blue"))

    def test_accepts_integers_and_any_content_type(self):
        _, client = new_server()
        resp = client.post("/predict", data=json.dumps({"inputs": [[1] * 16]}), content_type="text/plain")
        self.assertEqual(resp.status_code, 200, resp.get_json())

    def test_same_version_gives_same_outputs(self):
        _, a = new_server(version="v2.6", color="blue")
        _, b = new_server(version="v2.6", color="green")
        first = predict(a, {"inputs": [ROW]}).get_json()["outputs"]
        self.assertEqual(predict(a, {"inputs": [ROW]}).get_json()["outputs"], first)
        self.assertEqual(predict(b, {"inputs": [ROW]}).get_json()["outputs"], first)

    def test_versions_give_different_outputs(self):
        _, blue = new_server(version="v2.6", color="blue")
        _, green = new_server(version="v2.7", color="green")
        self.assertNotEqual(
            predict(blue, {"inputs": [ROW]}).get_json()["outputs"],
            predict(green, {"inputs": [ROW]}).get_json()["outputs"],
        )

    def test_rows_are_independent(self):
        # Batching must not change a row's answer.
        _, client = new_server()
        other = [1.0] * 16
        batch = predict(client, {"inputs": [ROW, other]}).get_json()["outputs"]
        single = predict(client, {"inputs": [other]}).get_json()["outputs"]
        for got, want in zip(batch[1], single[0]):
            self.assertAlmostEqual(got, want, places=5)

    def test_rejects_bad_bodies_with_400_naming_the_problem(self):
        _, client = new_server()
        row15 = ROW[:15]
        test_cases = [
            ("empty body", b"", "body is empty"),
            ("not JSON", b"inputs=1", "not valid JSON"),
            ("not UTF-8", b"\xff\xfe{", "not valid JSON"),
            ("truncated JSON", b'{"inputs": [[1,2', "not valid JSON"),
            ("top-level array", [ROW], "JSON array; want an object"),
            ("missing inputs", {}, 'missing key "inputs"'),
            ("misspelt key", {"input": [ROW]}, 'unknown key(s) "input"'),
            ("extra key", {"inputs": [ROW], "debug": True}, 'unknown key(s) "debug"'),
            ("inputs not a list", {"inputs": "ROW"}, '"inputs" is a JSON string'),
            ("no rows", {"inputs": []}, '"inputs" has 0 rows; want 1 to 64'),
            ("too many rows", {"inputs": [ROW] * 65}, '"inputs" has 65 rows; want 1 to 64'),
            ("flat row", {"inputs": ROW}, "inputs[0] is a JSON number; want a list of 16 numbers"),
            ("short row", {"inputs": [ROW, row15]}, "inputs[1] has 15 values; want exactly 16"),
            ("long row", {"inputs": [ROW + [0.0]]}, "inputs[0] has 17 values; want exactly 16"),
            ("string value", {"inputs": [["1"] + ROW[1:]]}, "inputs[0][0] is a JSON string; want a number"),
            ("boolean value", {"inputs": [ROW[:3] + [True] + ROW[4:]]}, "inputs[0][3] is a JSON boolean"),
            ("null value", {"inputs": [ROW[:15] + [None]]}, "inputs[0][15] is a JSON null"),
            ("nested value", {"inputs": [[[1]] + ROW[1:]]}, "inputs[0][0] is a JSON array"),
            ("NaN literal", '{"inputs": [[NaN,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}', "inputs[0][0] is NaN"),
            ("Infinity literal", '{"inputs": [[0,-Infinity,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}', "inputs[0][1] = -inf is outside the float32 range"),
            ("beyond float32", {"inputs": [[1e39] + ROW[1:]]}, "inputs[0][0] = 1e+39 is outside the float32 range"),
            ("huge integer", '{"inputs": [[1' + "0" * 400 + ',0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}', "outside the float32 range"),
            ("deeply nested", "[" * 100000, "not valid JSON"),
        ]
        for desc, body, want in test_cases:
            with self.subTest(desc):
                resp = predict(client, body)
                self.assertEqual(resp.status_code, 400, resp.get_data(as_text=True))
                self.assertIn(want, resp.get_json()["error"])

    def test_rejects_outputs_that_overflow(self):
        _, client = new_server()
        resp = predict(client, {"inputs": [[3e38] * 16]})
        self.assertEqual(resp.status_code, 400)
        self.assertIn("non-finite outputs", resp.get_json()["error"])

    def test_rejects_oversized_body_with_413(self):
        _, client = new_server()
        resp = predict(client, b" " * (model_app.MAX_BODY_BYTES + 1))
        self.assertEqual(resp.status_code, 413)
        self.assertIn("error", resp.get_json())

    def test_fail_ratio_fails_an_exact_evenly_spread_share(self):
        _, client = new_server(fail_ratio=Fraction(1, 4))
        codes = [predict(client, {"inputs": [ROW]}).status_code for _ in range(8)]
        self.assertEqual(codes, [200, 200, 200, 500] * 2)

    def test_bad_requests_do_not_advance_the_fail_counter(self):
        _, client = new_server(fail_ratio=Fraction(1, 2))
        self.assertEqual(predict(client, {"inputs": []}).status_code, 400)
        self.assertEqual(predict(client, {"inputs": [ROW]}).status_code, 200)
        self.assertEqual(predict(client, {"inputs": [ROW]}).status_code, 500)

    def test_first_calls_are_slow_while_warming_up(self):
        slept = []
        _, client = new_server(sleep=slept.append, warmup_slow_requests=2, warmup_slow_seconds=0.5)
        for _ in range(4):
            self.assertEqual(predict(client, {"inputs": [ROW]}).status_code, 200)
        self.assertEqual(slept, [0.5, 0.5])


class LoadingTest(unittest.TestCase):
    def test_answers_503_until_the_model_is_loaded(self):
        server, client = new_server(load=False)
        resp = predict(client, {"inputs": [ROW]})
        self.assertEqual((resp.status_code, resp.get_json()), (503, {"error": "model loading"}))
        resp = client.get("/health")
        self.assertEqual(resp.status_code, 503)
        self.assertEqual((resp.get_json()["status"], resp.get_json()["model_loaded"]), ("loading", False))
        self.assertEqual(client.get("/v2/health/ready").status_code, 503)
        self.assertEqual(client.get("/v2/models/mlp/ready").status_code, 503)
        self.assertEqual(client.get("/v2/health/live").status_code, 200)

        server.load()
        self.assertEqual(predict(client, {"inputs": [ROW]}).status_code, 200)
        self.assertEqual(client.get("/health").status_code, 200)
        self.assertEqual(client.get("/v2/health/ready").status_code, 200)

    def test_background_load_waits_out_the_load_delay(self):
        release = threading.Event()
        asked = []

        def blocking_sleep(seconds):
            asked.append(seconds)
            release.wait(WAIT)

        server, client = new_server(load=False, sleep=blocking_sleep, load_delay_seconds=30)
        thread = server.start_loading()
        self.assertEqual(client.get("/health").status_code, 503)
        release.set()
        self.assertTrue(server.wait_loaded(WAIT))
        thread.join(WAIT)
        self.assertEqual(asked, [30])
        self.assertEqual(client.get("/health").status_code, 200)

    def test_failed_load_is_reported_by_health(self):
        def broken_sleep(seconds):
            raise RuntimeError("CUDA error: out of memory")

        server, client = new_server(load=False, sleep=broken_sleep, load_delay_seconds=1)
        with self.assertLogs("model_server", "ERROR"):
            server.load()
        self.assertFalse(server.wait_loaded(0))
        resp = client.get("/health")
        self.assertEqual(resp.status_code, 503)
        self.assertEqual(resp.get_json()["status"], "failed")
        self.assertIn("out of memory", resp.get_json()["error"])
        self.assertEqual(predict(client, {"inputs": [ROW]}).get_json(), {"error": "model failed to load"})


class HealthTest(unittest.TestCase):
    def test_reports_switchyard_json_probe_fields(self):
        server, client = new_server(version="v2.7", color="green")
        resp = client.get("/health")
        self.assertEqual(resp.status_code, 200)
        doc = resp.get_json()
        self.assertEqual(set(doc), {
            "status", "model_loaded", "cuda_available", "device", "gpu_uuid", "gpu_memory_used_bytes",
            "gpu_memory_total_bytes", "gpu_utilization", "queue_depth", "boot_id", "version", "color",
        })
        self.assertEqual((doc["status"], doc["model_loaded"]), ("ok", True))
        self.assertEqual((doc["version"], doc["color"], doc["queue_depth"]), ("v2.7", "green", 0))
        self.assertEqual(uuid.UUID(doc["boot_id"]).version, 4)
        self.assertIsInstance(doc["cuda_available"], bool)
        if doc["cuda_available"]:
            self.assertEqual(doc["device"], "cuda:0")
            self.assertIsInstance(doc["gpu_memory_total_bytes"], int)
        else:
            self.assertEqual(doc["device"], "cpu")
            for key in ("gpu_uuid", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_utilization"):
                self.assertIsNone(doc[key], key)

    def test_boot_id_is_stable_per_process_and_new_per_server(self):
        _, a = new_server()
        _, b = new_server()
        self.assertEqual(a.get("/health").get_json()["boot_id"], a.get("/health").get_json()["boot_id"])
        self.assertNotEqual(a.get("/health").get_json()["boot_id"], b.get("/health").get_json()["boot_id"])

    def test_queue_depth_counts_predictions_in_flight(self):
        entered, release = threading.Event(), threading.Event()

        def blocking_sleep(seconds):
            entered.set()
            release.wait(WAIT)

        server, client = new_server(sleep=blocking_sleep, warmup_slow_requests=1)
        codes = []
        caller = threading.Thread(target=lambda: codes.append(predict(client, {"inputs": [ROW]}).status_code))
        caller.start()
        self.assertTrue(entered.wait(WAIT))
        self.assertEqual(client.get("/health").get_json()["queue_depth"], 1)
        self.assertIn("model_queue_depth{version=\"v2.6\",color=\"blue\"} 1", client.get("/metrics").get_data(as_text=True))
        release.set()
        caller.join(WAIT)
        self.assertEqual(codes, [200])
        self.assertEqual(client.get("/health").get_json()["queue_depth"], 0)

    def test_kserve_model_ready_checks_the_name(self):
        _, client = new_server(model_name="mlp")
        self.assertEqual(client.get("/v2/models/mlp/ready").status_code, 200)
        resp = client.get("/v2/models/resnet/ready")
        self.assertEqual(resp.status_code, 404)
        self.assertIn("resnet", resp.get_json()["error"])


class MetricsTest(unittest.TestCase):
    # One sample line of the text format: name{labels} value
    SAMPLE = re.compile(r'^[a-z_]+\{([a-z_]+="(?:[^"\\]|\\.)*",?)*\} [0-9.e+-]+$')

    def test_counts_predictions_by_code_in_prometheus_text(self):
        _, client = new_server()
        predict(client, {"inputs": [ROW]})
        predict(client, {"inputs": [ROW]})
        predict(client, {"inputs": []})
        resp = client.get("/metrics")
        self.assertEqual(resp.status_code, 200)
        self.assertTrue(resp.content_type.startswith("text/plain; version=0.0.4"))
        text = resp.get_data(as_text=True)
        labels = 'version="v2.6",color="blue"'
        for line in (
            f'model_requests_total{{{labels},code="200"}} 2',
            f'model_requests_total{{{labels},code="400"}} 1',
            f'model_inference_seconds_count{{{labels}}} 2',
            f'model_inference_seconds_bucket{{{labels},le="+Inf"}} 2',
            f'model_queue_depth{{{labels}}} 0',
            f'model_loaded{{{labels}}} 1',
        ):
            self.assertIn(line + "\n", text)
        for line in text.splitlines():
            if not line.startswith("#"):
                self.assertRegex(line, self.SAMPLE)

    def test_escapes_label_values(self):
        _, client = new_server(version='v"2\\6')
        self.assertIn('model_loaded{version="v\\"2\\\\6",color="blue"} 1', client.get("/metrics").get_data(as_text=True))


class RoutingTest(unittest.TestCase):
    def test_unknown_paths_and_methods_answer_json(self):
        _, client = new_server()
        resp = client.get("/nope")
        self.assertEqual((resp.status_code, "error" in resp.get_json()), (404, True))
        resp = client.get("/predict")
        self.assertEqual((resp.status_code, "error" in resp.get_json()), (405, True))

    def test_importing_the_module_builds_no_app(self):
        # gunicorn asks for app:app; plain imports (like this file's) must not
        # read the environment or start loading.
        self.assertNotIn("app", vars(model_app))


if __name__ == "__main__":
    unittest.main()
