"""The prediction service: a Flask app factory serving a LiteRT model.

    create_app()                      settings from the environment
    create_app({"MODEL_URI": ...})    settings from a mapping (tests); unknown keys rejected

The factory fetches and verifies the model version, loads it and runs one warm-up
prediction, so an app that exists is ready to serve. It never imports TensorFlow.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from flask import Flask, g, request
from werkzeug.routing import BaseConverter

from app import errors, routes
from app.config import ConfigError, Settings, load_settings  # noqa: F401  (re-exported)
from app.manifest import ModelIntegrityError  # noqa: F401  (re-exported)
from app.model_store import fetch
from app.observability import EmfMetrics, JsonLog
from app.predictor import Predictor
from app.validation import InstanceParser


@dataclass
class Service:
    """Everything a request handler needs, kept on ``app.extensions["ml_app"]``."""

    settings: Settings
    manifest: dict
    predictor: Predictor
    parser: InstanceParser
    log: JsonLog
    metrics: EmfMetrics | None
    started: float


class SegmentConverter(BaseConverter):
    """A path segment without ':' so ``/v1/models/<name>:predict`` splits as TF Serving's."""

    regex = r"[^/:]+"


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    settings = load_settings(config, strict=config is not None)
    folder, manifest = fetch(settings.model_uri, settings.model_cache_dir, settings.model_sha256)
    predictor = Predictor(folder, manifest)
    spec = manifest["input"]
    parser = InstanceParser(tuple(spec["shape"]), float(spec["min"]), float(spec["max"]),
                            settings.max_batch_size)
    _warm_up(predictor, parser, manifest)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.url_map.converters["segment"] = SegmentConverter
    log = JsonLog(level=settings.log_level)
    metrics = (EmfMetrics(settings.metrics_namespace, predictor.name, predictor.version,
                          settings.metrics_flush_seconds) if settings.metrics_enabled else None)
    app.extensions["ml_app"] = Service(settings, manifest, predictor, parser, log, metrics,
                                       time.time())

    errors.register(app)
    app.register_blueprint(routes.health)
    app.register_blueprint(routes.tfserving)
    app.register_blueprint(routes.sagemaker)
    app.register_blueprint(routes.docs)
    _register_request_log(app)
    log.write("INFO", event="model_loaded", model=predictor.name, model_version=predictor.version,
              manifest_sha256=manifest["_manifest_sha256"], source=settings.model_uri)
    return app


def _warm_up(predictor: Predictor, parser: InstanceParser, manifest: dict) -> None:
    """Run one prediction so the first request is not the slow one, and prove the model's
    output matches its labels before the app reports ready."""
    probs = predictor.predict(np.zeros((1, parser.rows, parser.cols), dtype=np.float32))
    if probs.shape != (1, len(predictor.labels)):
        raise ModelIntegrityError(
            f"model.tflite returns shape {probs.shape[1:]} but manifest.json lists "
            f"{len(predictor.labels)} labels; the version folder is inconsistent")


def _register_request_log(app: Flask) -> None:
    service: Service = app.extensions["ml_app"]

    @app.before_request
    def start_timer():
        g.t0 = time.perf_counter()
        # ALB adds X-Amzn-Trace-Id; keep it so a log line joins the ALB's access log.
        g.request_id = (request.headers.get("X-Amzn-Trace-Id")
                        or request.headers.get("X-Request-Id") or uuid.uuid4().hex)
        g.instances = 0

    @app.after_request
    def log_request(response):
        latency_ms = (time.perf_counter() - g.get("t0", time.perf_counter())) * 1000
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-Id"] = request_id
        endpoint = request.endpoint or ""
        if service.metrics is not None and endpoint.endswith(("predict", "invocations")):
            service.metrics.record(latency_ms, g.get("instances", 0), response.status_code >= 400)
        service.log.write(
            "ERROR" if response.status_code >= 500 else "INFO",
            method=request.method, path=request.path, status=response.status_code,
            latency_ms=round(latency_ms, 3), model=service.predictor.name,
            model_version=service.predictor.version, request_id=request_id,
            client=request.headers.get("X-Forwarded-For", request.remote_addr),
        )
        return response
