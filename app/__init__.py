"""The prediction service: a Flask app factory serving a LiteRT model.

    create_app()                      settings from the environment
    create_app({"MODEL_URI": ...})    settings from a mapping (tests); unknown keys rejected

The factory fetches and verifies the model version, loads it and runs one warm-up
prediction, so an app that exists is ready to serve. It never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from flask import Flask
from werkzeug.routing import BaseConverter

from app import errors, routes
from app.config import ConfigError, Settings, load_settings  # noqa: F401  (re-exported)
from app.manifest import ModelIntegrityError  # noqa: F401  (re-exported)
from app.model_store import fetch
from app.observability import EmfMetrics, JsonLog, RequestLog
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


class SegmentConverter(BaseConverter):
    """A path segment without ':' so ``/v1/models/<name>:predict`` splits as TF Serving's."""

    regex = r"[^/:]+"


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the service. Raises ConfigError (bad settings) or ModelIntegrityError (the model
    version is missing or not the released bytes) before anything is served."""
    settings = load_settings(config, strict=config is not None)
    folder, manifest = fetch(settings.model_uri, settings.model_cache_dir, settings.model_sha256)
    predictor = Predictor(folder, manifest)
    spec = manifest["input"]
    parser = InstanceParser(tuple(spec["shape"]), float(spec["min"]), float(spec["max"]),
                            settings.max_batch_size)
    _warm_up(predictor, parser, manifest)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["segment"] = SegmentConverter
    log = JsonLog(level=settings.log_level)
    metrics = (EmfMetrics(settings.metrics_namespace, predictor.name, predictor.version,
                          settings.metrics_flush_seconds) if settings.metrics_enabled else None)
    app.extensions["ml_app"] = Service(settings, manifest, predictor, parser, log, metrics)

    errors.register(app)
    app.register_blueprint(routes.health)
    app.register_blueprint(routes.tfserving)
    app.register_blueprint(routes.sagemaker)
    app.register_blueprint(routes.docs)
    app.wsgi_app = RequestLog(app.wsgi_app, log, metrics, predictor.name, predictor.version)
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
