"""JSON request logs and CloudWatch Embedded Metric Format (EMF) metrics, both on stdout.

On ECS the awslogs driver ships stdout to CloudWatch Logs, which turns EMF documents into
metrics with no agent and no API calls from the request path.

EMF is written here rather than with aws-embedded-metrics: that library imports aiohttp
(~220 ms measured, a fifth of the 1 s cold-start budget) and formats one document per
request. This module aggregates per worker and writes one document per flush, with up to
100 latency samples (EMF's limit per metric).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import re
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import orjson

MAX_VALUES = 100  # EMF: at most 100 values in one metric's array


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLog:
    """One JSON object per line; a lock keeps lines whole when threads share a worker."""

    LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}

    def __init__(self, stream=None, level: str = "INFO"):
        self._stream = stream
        self._min = self.LEVELS[level]
        self._lock = threading.Lock()

    def write(self, level: str, **fields) -> None:
        if self.LEVELS[level] < self._min:
            return
        line = orjson.dumps({"time": _now_iso(), "level": level, **fields}, default=str,
                            option=orjson.OPT_APPEND_NEWLINE).decode()
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()


# WSGI environ keys shared with the views and error handlers
REQUEST_ID = "ml_app.request_id"
INSTANCES = "ml_app.instances"   # set by predict views: marks the request as a prediction
MODEL = "ml_app.model"           # set by model routes: the ServedModel the URL named, if any
UNKNOWN_MODEL = ("(none)", "(none)")   # metrics of predictions that named no served model


class RequestLog:
    """WSGI middleware: a request id, one JSON log line and the prediction metrics for every
    request, including those Flask answers with an error. Working on the WSGI environ
    directly keeps this off Flask's context-local proxies, which cost more per request than
    the model does."""

    def __init__(self, wsgi_app, log: "JsonLog", metrics: "EmfMetrics | None"):
        self.wsgi_app = wsgi_app
        self.log = log
        self.metrics = metrics

    def __call__(self, environ, start_response):
        t0 = time.perf_counter()
        # ALB adds X-Amzn-Trace-Id; keeping it joins our log line to the ALB's access log.
        # A client's id is echoed only if it is short and printable; otherwise a new one.
        request_id = (_usable_id(environ.get("HTTP_X_AMZN_TRACE_ID"))
                      or _usable_id(environ.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex)
        environ[REQUEST_ID] = request_id
        status = [500]

        def start(status_line, headers, exc_info=None):
            status[0] = int(status_line[:3])
            headers.append(("X-Request-Id", request_id))
            return start_response(status_line, headers, exc_info)

        response = self.wsgi_app(environ, start)
        latency_ms = (time.perf_counter() - t0) * 1000
        code = status[0]
        model = environ.get(MODEL)
        # Only a served model's name and version become a dimension or a log field: never
        # the URL's text (unbounded metric cardinality, forged log fields).
        identity = (model.name, model.version) if model is not None else UNKNOWN_MODEL
        instances = environ.get(INSTANCES)
        if instances is not None and self.metrics is not None:
            self.metrics.record(identity, latency_ms, instances, code >= 400)
        self.log.write(
            "ERROR" if code >= 500 else "INFO",
            method=environ.get("REQUEST_METHOD"), path=environ.get("PATH_INFO"), status=code,
            latency_ms=round(latency_ms, 3),
            **({"model": identity[0], "model_version": identity[1]} if model else {}),
            request_id=request_id,
            client=bounded_text(environ.get("HTTP_X_FORWARDED_FOR") or environ.get("REMOTE_ADDR")))
        return response


REQUEST_ID_MAX = 128
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,%d}" % REQUEST_ID_MAX)
CLIENT_MAX = 256


def _usable_id(value: str | None) -> str | None:
    """A client-supplied request id, if it is 1-128 printable ASCII characters (no spaces)."""
    return value if value and _PRINTABLE_ID.fullmatch(value) else None


def bounded_text(value: str | None, limit: int = CLIENT_MAX) -> str | None:
    """A header value as given, for a log line: at most ``limit`` characters, anything
    outside printable ASCII escaped (\\xNN), so it can neither flood nor forge a line."""
    if value is None:
        return None
    if len(value) > limit:
        value = value[:limit] + f"...(+{len(value) - limit} chars)"
    if value.isascii() and value.isprintable():
        return value
    return value.encode("unicode_escape").decode("ascii")


class JsonFormatter(logging.Formatter):
    """For granian's own log lines (worker starts and stops): same shape as JsonLog's."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _now_iso(), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _Tally:
    """What one model version's predictions added up to since the last flush."""

    __slots__ = ("requests", "predictions", "errors", "latencies")

    def __init__(self):
        self.requests = self.predictions = self.errors = 0
        self.latencies: list[float] = []


class EmfMetrics:
    """Per-worker aggregation of prediction metrics, flushed as EMF documents: one per model
    version that had predictions (EMF's dimension values are one per document).

    Metrics (namespace from METRICS_NAMESPACE; dimensions Model and ModelVersion, the model
    version that answered, or ``(none)`` for a prediction request naming no served model):
    PredictionRequests, Predictions (instances), PredictionErrors (4xx/5xx on predict
    routes), PredictionLatency (milliseconds, sampled values).
    """

    DIMENSIONS = ("Model", "ModelVersion")

    def __init__(self, namespace: str, flush_seconds: float, stream=None,
                 clock=time.monotonic):
        self.namespace = namespace
        self.flush_seconds = flush_seconds
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._since = self._clock()
        self._timer: threading.Thread | None = None
        # Write what was aggregated since the last flush when the worker exits, so metrics
        # are not lost when ECS replaces a task. granian's workers are multiprocessing
        # children, which end with os._exit: atexit does not run there, multiprocessing's
        # finalizers do (and atexit covers a plain process).
        multiprocessing.util.Finalize(self, self.flush, exitpriority=10)
        atexit.register(self.flush)

    def record(self, model: tuple[str, str], latency_ms: float, instances: int,
               error: bool) -> None:
        """One prediction request answered by ``model`` (its name and version)."""
        with self._lock:
            tally = self._tallies.get(model)
            if tally is None:
                tally = self._tallies[model] = _Tally()
            tally.requests += 1
            tally.predictions += instances
            tally.errors += int(error)
            tally.latencies.append(round(latency_ms, 3))
            due = (len(tally.latencies) >= MAX_VALUES
                   or self._clock() - self._since >= self.flush_seconds)
            documents = self._take() if due else None
        if documents:
            self._emit(documents)
        self._ensure_timer()

    def flush(self) -> None:
        with self._lock:
            documents = self._take()
        if documents:
            self._emit(documents)

    def _take(self) -> list[dict]:
        timestamp = int(time.time() * 1000)
        documents = [{
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [list(self.DIMENSIONS)],
                    "Metrics": [
                        {"Name": "PredictionRequests", "Unit": "Count"},
                        {"Name": "Predictions", "Unit": "Count"},
                        {"Name": "PredictionErrors", "Unit": "Count"},
                        {"Name": "PredictionLatency", "Unit": "Milliseconds"},
                    ],
                }],
            },
            **dict(zip(self.DIMENSIONS, model)),
            "PredictionRequests": tally.requests,
            "Predictions": tally.predictions,
            "PredictionErrors": tally.errors,
            "PredictionLatency": tally.latencies,
        } for model, tally in self._tallies.items() if tally.requests]
        self._tallies = {}
        self._since = self._clock()
        return documents

    def _emit(self, documents: list[dict]) -> None:
        stream = self._stream or sys.stdout
        stream.write("".join(orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE).decode()
                             for d in documents))
        stream.flush()

    def _ensure_timer(self) -> None:
        # A quiet worker still reports what it has within flush_seconds.
        if self._timer is None:
            self._timer = threading.Thread(target=self._tick, name="emf-flush", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            with self._lock:
                due = self._tallies and self._clock() - self._since >= self.flush_seconds
                documents = self._take() if due else None
            if documents:
                self._emit(documents)
