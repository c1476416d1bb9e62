"""A small, real PyTorch model server that Switchyard routes to.

It serves an MLP (16 -> 32 -> 4) whose weights are derived from MODEL_VERSION,
so two versions answer the same input differently and a blue/green switch is
visible in the responses. Run it with gunicorn:

    gunicorn --config gunicorn.conf.py app:app

Environment (read once, at start; a bad value stops the worker from booting):

    MODEL_VERSION         required, e.g. v2.6; also seeds the weights
    MODEL_COLOR           required, blue | green
    MODEL_NAME            KServe model name for /v2/models/<name>/ready (default mlp)
    LOAD_DELAY_SECONDS    extra artificial load time in seconds (default 0)
    WARMUP_SLOW_REQUESTS  the first N /predict calls that reach the model are slow,
                          imitating a cold GPU (default 0)
    WARMUP_SLOW_SECONDS   how much slower each of those calls is, in seconds (default 1)
    FAIL_RATIO            share 0..1 of /predict calls answered 500, spread evenly by
                          request counter, for rollback drills (default 0)
    GRPC_BIND             also serve the KServe v2 gRPC API here, e.g. 0.0.0.0:8001
                          (grpc_server.py; default: off)
    GRPC_THREADS          threads of the gRPC server (default 16)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
import time
import uuid
from fractions import Fraction
from typing import Callable, Iterator, Mapping, Optional

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("model_server")

IN_FEATURES = 16
HIDDEN = 32
OUT_FEATURES = 4
MAX_ROWS = 64
# 64 rows x 16 numbers is ~30 KiB even with long literals; 1 MiB leaves room for
# whitespace and still stops a client from making us buffer something huge.
MAX_BODY_BYTES = 1 << 20
FLOAT32_MAX = float(torch.finfo(torch.float32).max)

# Buckets for model_inference_seconds: sub-millisecond CPU runs up to
# multi-second cold starts (WARMUP_SLOW_SECONDS).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """What this process serves and which faults it injects."""

    version: str
    color: str
    model_name: str = "mlp"
    load_delay_seconds: float = 0.0
    warmup_slow_requests: int = 0
    warmup_slow_seconds: float = 1.0
    # A Fraction, so that FAIL_RATIO=0.1 fails exactly every tenth call.
    fail_ratio: Fraction = Fraction(0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Reads the settings, raising ValueError naming the variable on a bad value."""
        version = env.get("MODEL_VERSION", "").strip()
        if not version:
            raise ValueError("MODEL_VERSION is not set; set it to the model version, e.g. MODEL_VERSION=v2.6")
        color = env.get("MODEL_COLOR", "").strip()
        if color not in ("blue", "green"):
            raise ValueError(f"MODEL_COLOR={color!r}: want blue or green")
        name = env.get("MODEL_NAME", "mlp").strip()
        if not name:
            raise ValueError("MODEL_NAME is empty; unset it for the default 'mlp' or name the model")
        return cls(
            version=version,
            color=color,
            model_name=name,
            load_delay_seconds=_seconds(env, "LOAD_DELAY_SECONDS", 0.0),
            warmup_slow_requests=_count(env, "WARMUP_SLOW_REQUESTS", 0),
            warmup_slow_seconds=_seconds(env, "WARMUP_SLOW_SECONDS", 1.0),
            fail_ratio=_ratio(env, "FAIL_RATIO"),
        )


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key}={raw!r}: want a number of seconds >= 0, e.g. {key}=2.5")
    return value


def _count(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{key}={raw!r}: want a whole number >= 0, e.g. {key}=3")
    return value


def _ratio(env: Mapping[str, str], key: str) -> Fraction:
    raw = env.get(key, "").strip()
    if not raw:
        return Fraction(0)
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        value = Fraction(-1)
    if not 0 <= value <= 1:
        raise ValueError(f"{key}={raw!r}: want a share between 0 and 1, e.g. {key}=0.2")
    return value


# --------------------------------------------------------------------------- model


def seed_for(version: str) -> int:
    """A stable 63-bit seed from the version string (sha256), so weights are a pure
    function of the version: every replica of v2.7 answers alike, v2.6 differently."""
    digest = hashlib.sha256(version.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def build_model(version: str) -> torch.nn.Module:
    """The MLP for version, on CPU, in eval mode.

    Weights come from a private generator rather than the global RNG so that
    loading in a background thread cannot disturb (or be disturbed by) anything
    else drawing random numbers. The ranges match nn.Linear's default init.
    """
    model = torch.nn.Sequential(
        torch.nn.Linear(IN_FEATURES, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, OUT_FEATURES),
    )
    gen = torch.Generator().manual_seed(seed_for(version))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            for param in (layer.weight, layer.bias):
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * bound)
    return model.eval()


class InputError(ValueError):
    """The /predict body is not what the model takes; the message says why."""


def parse_inputs(body: bytes) -> list:
    """Validates a /predict body and returns its rows (1..64 lists of 16 floats)."""
    if not body.strip():
        raise InputError('request body is empty; want JSON {"inputs": [[16 numbers], ...]}')
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise InputError(f"request body is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise InputError(f'request body is a JSON {_json_type(doc)}; want an object {{"inputs": [[16 numbers], ...]}}')
    unknown = sorted(set(doc) - {"inputs"})
    if unknown:
        raise InputError(f'unknown key(s) {", ".join(map(json.dumps, unknown))}; the only accepted key is "inputs"')
    if "inputs" not in doc:
        raise InputError('missing key "inputs"; want {"inputs": [[16 numbers], ...]}')
    rows = doc["inputs"]
    if not isinstance(rows, list):
        raise InputError(f'"inputs" is a JSON {_json_type(rows)}; want a list of rows')
    if not 1 <= len(rows) <= MAX_ROWS:
        raise InputError(f'"inputs" has {len(rows)} rows; want 1 to {MAX_ROWS}')
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InputError(f"inputs[{i}] is a JSON {_json_type(row)}; want a list of {IN_FEATURES} numbers")
        if len(row) != IN_FEATURES:
            raise InputError(f"inputs[{i}] has {len(row)} value{'' if len(row) == 1 else 's'}; want exactly {IN_FEATURES}")
        for j, x in enumerate(row):
            # bool is an int subclass in Python; JSON true is not a number.
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise InputError(f"inputs[{i}][{j}] is a JSON {_json_type(x)}; want a number")
            try:
                value = float(x)
            except OverflowError:  # an integer literal with hundreds of digits
                value = math.inf
            if math.isnan(value):
                raise InputError(f"inputs[{i}][{j}] is NaN; want a finite number")
            if abs(value) > FLOAT32_MAX:
                raise InputError(f"inputs[{i}][{j}] = {x!r} is outside the float32 range the model computes in")
    return rows


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------- server state


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """Set once, as a whole, when loading succeeds; readers never see half of it."""

    model: torch.nn.Module
    device: torch.device
    load_seconds: float


class _Metrics:
    """Counters for /metrics. Guarded by one lock: this is Python, a request
    takes milliseconds, and a consistent scrape matters more than contention."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[int, int] = {}  # HTTP status code -> count
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def count_request(self, code: int) -> None:
        with self.lock:
            self.requests[code] = self.requests.get(code, 0) + 1

    def observe_latency(self, seconds: float) -> None:
        with self.lock:
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1


class ModelServer:
    """Loads the model once and answers predictions; shared by all gunicorn threads.

    sleep is injected so tests can stand in for the artificial delays
    (LOAD_DELAY_SECONDS, WARMUP_SLOW_SECONDS) without waiting on the clock.
    """

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.boot_id = str(uuid.uuid4())
        self.cuda_available = torch.cuda.is_available()
        self._sleep = sleep
        self._loaded: Optional[_Loaded] = None
        self._load_error: Optional[str] = None
        self._done = threading.Event()  # set when loading finished, either way
        self._lock = threading.Lock()
        self._in_flight = 0
        self._served = 0  # /predict calls that reached the model; drives warmup and FAIL_RATIO
        self.metrics = _Metrics()

    # Loading ---------------------------------------------------------------

    def start_loading(self) -> threading.Thread:
        """Loads in a daemon thread, so the worker answers /health (503) meanwhile
        and gunicorn's worker heartbeat is never blocked by a slow load."""
        thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        started = time.monotonic()
        try:
            if self.settings.load_delay_seconds:
                self._sleep(self.settings.load_delay_seconds)
            device = torch.device("cuda:0" if self.cuda_available else "cpu")
            model = build_model(self.settings.version).to(device)
            self._loaded = _Loaded(model=model, device=device, load_seconds=time.monotonic() - started)
            log.info(
                "model %s (%s) loaded on %s in %.2fs, boot_id %s",
                self.settings.version, self.settings.color, device, self._loaded.load_seconds, self.boot_id,
            )
        except Exception as err:  # reported by /health; the pod stays unready
            self._load_error = f"{type(err).__name__}: {err}"
            log.exception("loading model %s failed", self.settings.version)
        finally:
            self._done.set()

    def wait_loaded(self, timeout: float) -> bool:
        """True once loading finished successfully; False on timeout or failure."""
        return self._done.wait(timeout) and self._loaded is not None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def load_error(self) -> Optional[str]:
        """Why loading failed, or None (still loading, or loaded)."""
        return self._load_error

    @property
    def device(self) -> str:
        return "cuda:0" if self.cuda_available else "cpu"

    # Requests --------------------------------------------------------------

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    @property
    def queue_depth(self) -> int:
        return self._in_flight

    def next_request_number(self) -> int:
        with self._lock:
            self._served += 1
            return self._served

    def should_fail(self, n: int) -> bool:
        """Whether the n-th call (1-based) is one of the injected failures.

        floor(n*r) steps up exactly once per 1/r calls, so r=0.25 fails calls
        4, 8, 12, ...: the share is exact and the pattern repeatable.
        """
        r = self.settings.fail_ratio
        return math.floor(n * r) != math.floor((n - 1) * r)

    def predict(self, rows: list, n: int) -> list:
        """Runs the model; n is the call's number from next_request_number."""
        loaded = self._loaded
        assert loaded is not None, "predict called before the model loaded"
        if n <= self.settings.warmup_slow_requests:
            self._sleep(self.settings.warmup_slow_seconds)
        x = torch.tensor(rows, dtype=torch.float32, device=loaded.device)
        with torch.inference_mode():
            y = loaded.model(x)
        if not bool(torch.isfinite(y).all()):
            # Finite float32 inputs near the range limit can still overflow.
            raise InputError("inputs are too large: the model produced non-finite outputs")
        return y.cpu().tolist()

    def gpu_stats(self) -> dict:
        """GPU fields of /health; all None without CUDA or before the model loaded
        (so /health never races the loader thread to initialise CUDA)."""
        stats = {"gpu_uuid": None, "gpu_memory_used_bytes": None, "gpu_memory_total_bytes": None, "gpu_utilization": None}
        loaded = self._loaded
        if loaded is None or loaded.device.type != "cuda":
            return stats
        try:
            free, total = torch.cuda.mem_get_info(loaded.device)
            stats["gpu_memory_used_bytes"] = int(total - free)  # device-wide, all processes
            stats["gpu_memory_total_bytes"] = int(total)
        except RuntimeError:
            log.debug("torch.cuda.mem_get_info failed", exc_info=True)
        # .uuid exists on torch >= 2.1; print it the way nvidia-smi and DCGM do.
        gpu_uuid = getattr(torch.cuda.get_device_properties(loaded.device), "uuid", None)
        if gpu_uuid is not None:
            stats["gpu_uuid"] = f"GPU-{gpu_uuid}"
        try:
            # Needs pynvml (the nvidia-ml-py package); a 0..1 share, not percent.
            stats["gpu_utilization"] = torch.cuda.utilization(loaded.device) / 100.0
        except Exception:
            log.debug("torch.cuda.utilization failed", exc_info=True)
        return stats

    def health(self) -> tuple[dict, int]:
        """Switchyard's `json` probe document and its HTTP status."""
        if self._loaded is not None:
            status, code = "ok", 200
        elif self.load_error is not None:
            status, code = "failed", 503
        else:
            status, code = "loading", 503
        doc = {
            "status": status,
            "model_loaded": self._loaded is not None,
            "cuda_available": self.cuda_available,
            "device": self.device,
            **self.gpu_stats(),
            "queue_depth": self.queue_depth,
            "boot_id": self.boot_id,
            "version": self.settings.version,
            "color": self.settings.color,
        }
        if self.load_error is not None:
            doc["error"] = self.load_error
        return doc, code

    def prometheus_text(self) -> str:
        """Prometheus text exposition format 0.0.4, written by hand."""
        base = f'version="{_label(self.settings.version)}",color="{_label(self.settings.color)}"'
        out = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        m = self.metrics
        with m.lock:
            requests = sorted(m.requests.items())
            buckets = list(m.buckets)
            latency_sum, latency_count = m.latency_sum, m.latency_count

        family("model_requests_total", "counter", "/predict requests answered, by HTTP status code.")
        for code, n in requests:
            out.append(f'model_requests_total{{{base},code="{code}"}} {n}')
        family(
            "model_inference_seconds", "histogram",
            "Time /predict spent running the model, including any simulated cold-start delay.",
        )
        for bound, n in zip(LATENCY_BUCKETS, buckets):
            out.append(f'model_inference_seconds_bucket{{{base},le="{bound}"}} {n}')
        out.append(f'model_inference_seconds_bucket{{{base},le="+Inf"}} {latency_count}')
        out.append(f"model_inference_seconds_sum{{{base}}} {latency_sum!r}")
        out.append(f"model_inference_seconds_count{{{base}}} {latency_count}")
        family("model_queue_depth", "gauge", "/predict requests in flight in this process.")
        out.append(f"model_queue_depth{{{base}}} {self.queue_depth}")
        family("model_loaded", "gauge", "1 once the model is loaded and serving, else 0.")
        out.append(f"model_loaded{{{base}}} {int(self.loaded)}")
        loaded = self._loaded
        if loaded is not None:
            family("model_load_seconds", "gauge", "How long loading the model took, in seconds.")
            out.append(f"model_load_seconds{{{base}}} {loaded.load_seconds!r}")
        gpu = self.gpu_stats()
        if gpu["gpu_memory_used_bytes"] is not None:
            family("model_gpu_memory_used_bytes", "gauge", "GPU memory in use on this device (all processes).")
            out.append(f"model_gpu_memory_used_bytes{{{base}}} {gpu['gpu_memory_used_bytes']}")
            family("model_gpu_memory_total_bytes", "gauge", "GPU memory on this device.")
            out.append(f"model_gpu_memory_total_bytes{{{base}}} {gpu['gpu_memory_total_bytes']}")
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    """Escapes a Prometheus label value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# --------------------------------------------------------------------------- HTTP


def create_app(server: ModelServer) -> Flask:
    """The Flask app for server. It does not start loading: the caller does
    (server.start_loading() in production, server.load() in tests)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # keep the documented field order for people reading curl output
    app.extensions["model_server"] = server
    settings = server.settings

    def error(code: int, message: str) -> tuple[Response, int]:
        return jsonify(error=message), code

    @app.post("/predict")
    def predict():
        with server.in_flight():
            if not server.loaded:
                return error(503, "model loading" if server.load_error is None else "model failed to load")
            body = request.stream.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                return error(413, f"request body is over {MAX_BODY_BYTES} bytes; send at most {MAX_ROWS} rows")
            try:
                rows = parse_inputs(body)
            except InputError as err:
                return error(400, str(err))
            n = server.next_request_number()
            if server.should_fail(n):
                return error(500, f"injected failure (FAIL_RATIO={float(settings.fail_ratio):g}, request {n})")
            started = time.perf_counter()
            try:
                outputs = server.predict(rows, n)
            except InputError as err:
                return error(400, str(err))
            finally:
                server.metrics.observe_latency(time.perf_counter() - started)
            return jsonify(outputs=outputs, model_version=settings.version, color=settings.color)

    @app.get("/health")
    def health():
        doc, code = server.health()
        return jsonify(doc), code

    # KServe v2 (Open Inference Protocol) health endpoints.
    @app.get("/v2/health/live")
    def live():
        return jsonify(live=True)

    @app.get("/v2/health/ready")
    def ready():
        return jsonify(ready=server.loaded), 200 if server.loaded else 503

    @app.get("/v2/models/<name>/ready")
    def model_ready(name: str):
        if name != settings.model_name:
            return error(404, f"unknown model {name!r}; this server serves {settings.model_name!r}")
        return jsonify(name=name, ready=server.loaded), 200 if server.loaded else 503

    @app.get("/metrics")
    def metrics():
        return Response(server.prometheus_text(), content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.after_request
    def count_predict(response: Response) -> Response:
        # url_rule is None for 404/405, so only routed /predict calls count.
        if request.url_rule is not None and request.url_rule.rule == "/predict":
            server.metrics.count_request(response.status_code)
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        return error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def internal_error(err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, f"internal error: {type(err).__name__}")

    return app


def _app_from_env() -> Flask:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ModelServer(Settings.from_env())
    app = create_app(server)
    if os.environ.get("GRPC_BIND", "").strip():
        # The KServe v2 gRPC API, in this worker, on the same model. Imported
        # only when asked for, so the HTTP server needs no grpcio.
        import grpc_server

        app.extensions["grpc_server"] = grpc_server.maybe_serve(server)
    server.start_loading()
    return app


def __getattr__(name: str):
    # gunicorn's `app:app` does getattr(module, "app"). Building it lazily here
    # (PEP 562) keeps `import app` free of side effects: tests import this
    # module without reading the environment or starting a loader thread.
    if name == "app":
        global app
        app = _app_from_env()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
