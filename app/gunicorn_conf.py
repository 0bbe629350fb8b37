"""gunicorn settings for the service (design.md section 6), from the environment.

Defaults fit a 2-vCPU Fargate task: 2 sync workers (one per vCPU; threads halve throughput
under the GIL), keep-alive above the ALB's 60 s idle timeout, graceful shutdown within
ECS's 30 s stop timeout, no control socket (it would write under $HOME, which a read-only
root filesystem forbids). The model is verified once in the master before any worker
starts, so a bad model stops the process with one clear message and a non-zero exit.
"""

import sys

from app.config import ConfigError, load_server_settings, load_settings

try:
    _server = load_server_settings()
except ConfigError as _exc:
    print(f"error: {_exc}", file=sys.stderr, flush=True)
    sys.exit(2)

bind = _server.bind
workers = _server.web_concurrency
threads = _server.gunicorn_threads
worker_class = _server.gunicorn_worker_class
timeout = _server.gunicorn_timeout
graceful_timeout = _server.gunicorn_graceful_timeout
keepalive = _server.gunicorn_keepalive
control_socket_disable = True
preload_app = False          # each worker loads its own LiteRT interpreter (not fork-safe)
accesslog = None             # the app writes one JSON line per request itself
errorlog = "-"
capture_output = False
worker_tmp_dir = None        # heartbeat files go to $TMPDIR (the /tmp tmpfs in the container)
# gunicorn's own log lines as JSON too, so CloudWatch filters on "level" see them.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "app.observability.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": False}},
}


def on_starting(server):
    """Fail fast, once, in the master: bad settings or a model that does not verify."""
    from app.manifest import ModelIntegrityError
    from app.model_store import fetch

    try:
        settings = load_settings()
        fetch(settings.model_uri, settings.model_cache_dir, settings.model_sha256)
    except (ConfigError, ModelIntegrityError) as exc:
        # gunicorn prints RuntimeError messages as "Error: ..." and exits 1.
        raise RuntimeError(str(exc)) from None


def worker_exit(server, worker):
    """Write the worker's last EMF document on shutdown, so metrics aggregated since the
    last flush are not lost when ECS replaces a task."""
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("ml_app")
    if service is not None and service.metrics is not None:
        service.metrics.flush()
