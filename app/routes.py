"""HTTP endpoints, one blueprint per audience (design.md section 5).

- tfserving: TensorFlow Serving's REST API (predict, model status, metadata)
- sagemaker: SageMaker's container contract (/ping, /invocations)
- health:    /healthz (liveness), /readyz (readiness)
- docs:      the demo page at / and /openapi.json
"""

from __future__ import annotations

import hmac

import numpy as np
import orjson

from flask import Blueprint, Response, current_app, request

from app.observability import INSTANCES
from app.openapi import openapi_document
from app.validation import BadRequest, parse_json

tfserving = Blueprint("tfserving", __name__)
sagemaker = Blueprint("sagemaker", __name__)
health = Blueprint("health", __name__)
docs = Blueprint("docs", __name__)


def _service():
    return current_app.extensions["ml_app"]


def _json(payload: dict, status: int = 200) -> Response:
    # orjson writes numpy float32 arrays directly, in float32's shortest form.
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                    mimetype="application/json")


def _check_api_key(service) -> None:
    expected = service.settings.api_key
    if expected is None:
        return
    given = request.headers.get("x-api-key", "")
    # compare_digest takes the same time whatever the first differing byte is.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadRequest("missing or invalid x-api-key header", 401)


def _check_model(service, name: str, version: str | None) -> None:
    predictor = service.predictor
    if name != predictor.name:
        raise BadRequest(f"model {name!r} not found; this server serves {predictor.name!r}", 404)
    if version is not None and version != predictor.version:
        raise BadRequest(f"version {version!r} of model {name!r} not found; this server serves "
                         f"version {predictor.version}", 404)


def _require_content_type(*allowed: str) -> str:
    mimetype = request.mimetype
    if mimetype not in allowed:
        raise BadRequest(f"Content-Type must be {' or '.join(allowed)}; got "
                         f"{request.content_type or 'none'!r}", 415)
    return mimetype


def _predict(body) -> tuple[np.ndarray, str]:
    service = _service()
    x, key = service.parser.parse(body)
    request.environ[INSTANCES] = len(x)
    return service.predictor.predict(x), key


@tfserving.post("/v1/models/<segment:name>:predict")
@tfserving.post("/v1/models/<segment:name>/versions/<segment:version>:predict")
def predict(name: str, version: str | None = None):
    request.environ[INSTANCES] = 0  # a prediction request, even if it fails below
    service = _service()
    _check_api_key(service)
    _check_model(service, name, version)
    _require_content_type("application/json")
    probabilities, key = _predict(parse_json(request.get_data(cache=False)))
    response = _json({"predictions" if key == "instances" else "outputs": probabilities})
    # which model answered (the demo page shows it)
    response.headers["X-Model-Name"] = service.predictor.name
    response.headers["X-Model-Version"] = service.predictor.version
    return response


@tfserving.get("/v1/models/<segment:name>")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>")
def model_status(name: str, version: str | None = None):
    service = _service()
    _check_model(service, name, version)
    return _json({"model_version_status": [{
        "version": service.predictor.version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }]})


@tfserving.get("/v1/models/<segment:name>/metadata")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>/metadata")
def model_metadata(name: str, version: str | None = None):
    service = _service()
    _check_model(service, name, version)
    manifest = service.manifest
    rows, cols = manifest["input"]["shape"]
    n_labels = len(manifest["labels"])

    def tensor(name_: str, dims: list[int]) -> dict:
        return {"dtype": "DT_FLOAT", "name": name_,
                "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                 "unknown_rank": False}}

    return _json({
        "model_spec": {"name": manifest["name"], "signature_name": "",
                       "version": service.predictor.version},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"pixels": tensor("pixels", [-1, rows, cols])},
            "outputs": {"probabilities": tensor("probabilities", [-1, n_labels])},
            "method_name": "tensorflow/serving/predict",
        }}}},
        "manifest": {k: manifest[k] for k in ("created", "input", "labels", "metrics",
                                              "framework") if k in manifest}
        | {"sha256": manifest["_manifest_sha256"]},
    })


@sagemaker.get("/ping")
def ping():
    return _json({"status": "ok"})


@sagemaker.post("/invocations")
def invocations():
    request.environ[INSTANCES] = 0
    service = _service()
    _check_api_key(service)
    mimetype = _require_content_type("application/json", "text/csv")
    raw = request.get_data(cache=False)
    if mimetype == "text/csv":
        x = service.parser.parse_csv(raw)
        request.environ[INSTANCES] = len(x)
        return _json({"predictions": service.predictor.predict(x)})
    probabilities, key = _predict(parse_json(raw))
    return _json({"predictions" if key == "instances" else "outputs": probabilities})


@health.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@health.get("/readyz")
def readyz():
    # create_app loads the model and runs a warm-up prediction before it returns, so a
    # process that answers here is ready.
    service = _service()
    return _json({"status": "ready", "model": service.predictor.name,
                  "version": service.predictor.version})


@docs.get("/")
def demo_page():
    return current_app.send_static_file("index.html")


@docs.get("/openapi.json")
def openapi():
    service = _service()
    return _json(openapi_document(service.manifest, service.settings))
