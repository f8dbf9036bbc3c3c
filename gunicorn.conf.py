"""Gunicorn settings for the prediction service (``gunicorn async_api_server:app``).

One worker process, on purpose: the task pool (at most PREDICT_MAX_WORKERS
jobs), its priority queue and the in-memory task index live in that process.
Several worker processes would each run their own pool of 3 (so up to 3 x N
jobs at once, and a cancel or a queue position answered by the wrong process).
Concurrency of HTTP requests comes from threads instead; the predictions
themselves run in child processes started by the pool, so the threads stay
responsive.

The distributed mode (``PREDICT_QUEUE_URL``) keeps none of that in the
process -- the records are in PostgreSQL, the queue in Redis, jobs run in
``python -m destination_predictor.worker`` -- so there ``PREDICT_HTTP_WORKERS``
may ask for several worker processes; without it more than one is refused.
"""

import os

bind = f"{os.environ.get('PREDICT_HOST', '127.0.0.1')}:{os.environ.get('PREDICT_PORT', '8080')}"
workers = int(os.environ.get("PREDICT_HTTP_WORKERS") or "1")
worker_class = "gthread"
threads = int(os.environ.get("PREDICT_HTTP_THREADS", "8"))
# The app (pool threads, task index) must be created in the worker, not the master.
preload_app = False
# A worker restart would interrupt running jobs (they are recovered, but re-run).
max_requests = 0
# Heartbeat of the worker process; jobs do not run in request threads, so this
# only bounds a single request (a 50 MB upload on a slow link included).
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("PREDICT_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PREDICT_LOG_LEVEL", "info")


def on_starting(server):
    """Refuse to listen beyond loopback without a token (service/exposure.py);
    files the workers create (uploads, results, logs, task store) are private."""
    from destination_predictor.service.exposure import bind_host, check_exposure
    from destination_predictor.service.settings import load_settings

    os.umask(0o077)
    if server.cfg.workers > 1 and not os.environ.get("PREDICT_QUEUE_URL"):
        raise SystemExit("PREDICT_HTTP_WORKERS > 1 needs the distributed mode (PREDICT_QUEUE_URL): "
                         "the embedded pool and task index live in one process")
    check_exposure([bind_host(b) for b in server.cfg.bind], load_settings(), server.log)


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    """Stop job children on a graceful stop; their tasks are re-queued at the next start."""
    app = getattr(worker, "wsgi", None)
    manager = getattr(app, "extensions", {}).get("predict") if app is not None else None
    if manager is not None:
        manager.shutdown(wait_s=10.0)

# Gunicorn >= 25 opens a per-user control socket (~/.gunicorn/gunicorn.ctl) by
# default; two services (or test servers) of one user would fight over it and
# nothing here uses it. Older versions ignore the unknown name.
control_socket_disable = True
