"""The prediction service: a Flask app factory serving a LiteRT model.

    create_app()                      settings from the environment
    create_app({"MODEL_URI": ...})    settings from a mapping (tests); unknown keys rejected

The factory fetches and verifies the model version, loads it and runs one warm-up
prediction, so an app that exists is ready to serve. It never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from flask import Flask
from werkzeug.routing import BaseConverter

from app import errors, routes
from app.config import ConfigError, Settings, load_settings  # noqa: F401  (re-exported)
from app.fastpath import PredictFastPath
from app.manifest import ModelIntegrityError  # noqa: F401  (re-exported)
from app.model_store import fetch
from app.observability import EmfMetrics, JsonLog, RequestLog
from app.predictor import Predictor
from app.validation import BadRequest, InstanceParser


@dataclass
class ServedModel:
    """One loaded model version: its manifest, its interpreter and the request parser built
    from the manifest's input spec (so validation follows the model, not the code)."""

    manifest: dict
    predictor: Predictor
    parser: InstanceParser

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> str:
        return self.predictor.version


@dataclass
class Service:
    """Everything a request handler needs, kept on ``app.extensions["ml_app"]``."""

    settings: Settings
    models: dict[str, ServedModel]           # by name; the first is the default
    log: JsonLog
    metrics: EmfMetrics | None
    default: ServedModel = field(init=False)

    def __post_init__(self):
        self.default = next(iter(self.models.values()))

    def find(self, name: str, version: str | None = None) -> ServedModel:
        """The model a URL names, or a 404 naming what this server has."""
        model = self.models.get(name)
        if model is None:
            served = ", ".join(repr(n) for n in self.models)
            raise BadRequest(f"model {name!r} not found; this server serves {served}", 404)
        if version is not None and version != model.version:
            raise BadRequest(f"version {version!r} of model {name!r} not found; this server "
                             f"serves version {model.version}", 404)
        return model


class SegmentConverter(BaseConverter):
    """A path segment without ':' so ``/v1/models/<name>:predict`` splits as TF Serving's."""

    regex = r"[^/:]+"


def load_model(settings: Settings) -> ServedModel:
    """Fetch, verify, load and warm up the model version ``settings`` names. Raises
    ModelIntegrityError (one line each) when it cannot be had, trusted or run."""
    folder, manifest = fetch(settings.model_uri, settings.model_cache_dir, settings.model_sha256,
                             timeout=settings.model_fetch_timeout)
    predictor = Predictor(folder, manifest)
    spec = manifest["input"]
    parser = InstanceParser(tuple(spec["shape"]), float(spec["min"]), float(spec["max"]),
                            settings.max_batch_size)
    _warm_up(predictor, parser)
    return ServedModel(manifest, predictor, parser)


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the service. Raises ConfigError (bad settings) or ModelIntegrityError (the model
    version is missing, not the released bytes, or not loadable) before anything is served."""
    settings = load_settings(config, strict=config is not None)
    model = load_model(settings)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["segment"] = SegmentConverter
    # Werkzeug would answer /v1//models with a redirect whose Location comes from the Host
    # header; an unknown path is a plain 404 here.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    log = JsonLog(level=settings.log_level)
    metrics = (EmfMetrics(settings.metrics_namespace, model.name, model.version,
                          settings.metrics_flush_seconds) if settings.metrics_enabled else None)
    service = Service(settings, {model.name: model}, log, metrics)
    app.extensions["ml_app"] = service

    errors.register(app)
    app.register_blueprint(routes.health)
    app.register_blueprint(routes.tfserving)
    app.register_blueprint(routes.sagemaker)
    app.register_blueprint(routes.docs)
    app.wsgi_app = RequestLog(PredictFastPath(app.wsgi_app, service), log, metrics,
                              model.name, model.version)
    log.write("INFO", event="model_loaded", model=model.name, model_version=model.version,
              manifest_sha256=model.manifest["_manifest_sha256"], source=settings.model_uri)
    return app


def _warm_up(predictor: Predictor, parser: InstanceParser) -> None:
    """Run one prediction so the first request is not the slow one, and prove the model's
    output matches its labels before the app reports ready."""
    probs = predictor.predict(np.zeros((1, parser.rows, parser.cols), dtype=np.float32))
    if probs.shape != (1, len(predictor.labels)):
        raise ModelIntegrityError(
            f"model.tflite returns shape {probs.shape[1:]} but manifest.json lists "
            f"{len(predictor.labels)} labels; the version folder is inconsistent")
