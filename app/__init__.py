"""The prediction service: a Flask app factory serving one or more LiteRT model versions.

    create_app()                      settings from the environment
    create_app({"MODEL_URI": ...})    settings from a mapping (tests); unknown keys rejected

The factory fetches and verifies every model version MODEL_URI lists, loads each and runs
one warm-up prediction, so an app that exists is ready to serve (app/registry.py). It never
imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from flask import Flask
from werkzeug.routing import BaseConverter

from app import errors, routes
from app.config import ConfigError, Settings, load_settings  # noqa: F401  (re-exported)
from app.fastpath import PredictFastPath
from app.manifest import ModelIntegrityError  # noqa: F401  (re-exported)
from app.observability import EmfMetrics, JsonLog, RequestLog
from app.registry import ModelSet, ServedModel, load_models  # noqa: F401  (re-exported)


@dataclass
class Service:
    """Everything a request handler needs, kept on ``app.extensions["ml_app"]``."""

    settings: Settings
    models: ModelSet                         # by name and version; the first is the default
    log: JsonLog
    metrics: EmfMetrics | None

    @property
    def default(self) -> ServedModel:
        return self.models.default


class SegmentConverter(BaseConverter):
    """A path segment without ':' so ``/v1/models/<name>:predict`` splits as TF Serving's."""

    regex = r"[^/:]+"


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the service. Raises ConfigError (bad settings) or ModelIntegrityError (a model
    version is missing, not the released bytes, or not loadable) before anything is served."""
    settings = load_settings(config, strict=config is not None)
    models = load_models(settings)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["segment"] = SegmentConverter
    # Werkzeug would answer /v1//models with a redirect whose Location comes from the Host
    # header; an unknown path is a plain 404 here.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    log = JsonLog(level=settings.log_level)
    metrics = (EmfMetrics(settings.metrics_namespace, settings.metrics_flush_seconds)
               if settings.metrics_enabled else None)
    service = Service(settings, models, log, metrics)
    app.extensions["ml_app"] = service

    errors.register(app)
    app.register_blueprint(routes.health)
    app.register_blueprint(routes.tfserving)
    app.register_blueprint(routes.sagemaker)
    app.register_blueprint(routes.docs)
    app.wsgi_app = RequestLog(PredictFastPath(app.wsgi_app, service), log, metrics)
    for model in models:
        log.write("INFO", event="model_loaded", model=model.name, model_version=model.version,
                  manifest_sha256=model.sha256, source=model.source,
                  default=model is models.default)
    return app
