"""gunicorn settings for the model server: gunicorn --config gunicorn.conf.py app:app"""

import os

bind = os.environ.get("BIND", "0.0.0.0:5000")

# One worker process: it holds the only copy of the model on the pod's GPU, and
# /health's queue_depth counts the requests in flight in that one process.
# Concurrency comes from threads; torch releases the GIL while it computes.
# /health is served by the same threads: when every thread is busy with an
# inference, probes wait in line and may time out. Keep THREADS above the
# requests the gateway sends one pod at once (pool max_concurrency).
worker_class = "gthread"
workers = 1
threads = int(os.environ.get("THREADS", "16"))

# Never preload the app: CUDA must be initialised in the worker after fork,
# not in the master (a CUDA context does not survive fork).
preload_app = False

# gunicorn's default, kept explicit because Switchyard depends on it: its
# proxy.timeouts.idle (1s) is shorter than this, so the gateway always closes an
# idle pooled connection before gunicorn does and never sends a request down a
# socket the server is closing.
keepalive = 2

# The model loads in a background thread, so the worker heartbeat is never
# blocked by loading; 30s only catches a truly stuck worker.
timeout = 30
# On SIGTERM, finish in-flight requests for up to this long (keep it below the
# pod's terminationGracePeriodSeconds).
graceful_timeout = 30

# The heartbeat file lives in memory: /tmp may be read-only or slow in a container.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
