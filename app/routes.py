"""HTTP endpoints, one blueprint per audience (design.md section 5).

- tfserving: TensorFlow Serving's REST API (predict, model status, metadata)
- sagemaker: SageMaker's container contract (/ping, /invocations)
- health:    /healthz (liveness), /readyz (readiness)
- docs:      the demo page at / and /openapi.json
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, request

from app import fastpath
from app.openapi import openapi_document

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


def _answer(status: int, body: bytes, model, mimetype: str = "application/json") -> Response:
    headers = {"X-Model-Name": model.name, "X-Model-Version": model.version} if model else None
    return Response(body, status=status, mimetype=mimetype, headers=headers)


# POST predict and /invocations are answered by app.fastpath before Flask sees them; these
# views keep the routes in Flask's map (405 with Allow for other methods, the same answer
# should a request ever reach them).
@tfserving.post("/v1/models/<segment:name>:predict")
@tfserving.post("/v1/models/<segment:name>/versions/<segment:version>:predict")
def predict(name: str, version: str | None = None):
    return _answer(*fastpath.predict(_service(), request.environ, name, version))


@tfserving.get("/v1/models/<segment:name>")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>")
def model_status(name: str, version: str | None = None):
    model = _service().find(name, version)
    return _json({"model_version_status": [{
        "version": model.version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }]})


@tfserving.get("/v1/models/<segment:name>/metadata")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>/metadata")
def model_metadata(name: str, version: str | None = None):
    model = _service().find(name, version)
    manifest = model.manifest
    rows, cols = manifest["input"]["shape"]
    n_labels = len(manifest["labels"])

    def tensor(name_: str, dims: list[int]) -> dict:
        return {"dtype": "DT_FLOAT", "name": name_,
                "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                 "unknown_rank": False}}

    return _json({
        "model_spec": {"name": manifest["name"], "signature_name": "",
                       "version": model.version},
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
    return _answer(*fastpath.invocations(_service(), request.environ))


@health.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@health.get("/readyz")
def readyz():
    # create_app loads the model and runs a warm-up prediction before it returns, so a
    # process that answers here is ready.
    model = _service().default
    return _json({"status": "ready", "model": model.name, "version": model.version})


@docs.get("/")
def demo_page():
    return current_app.send_static_file("index.html")


@docs.get("/openapi.json")
def openapi():
    service = _service()
    return _json(openapi_document(service.default.manifest, service.settings))
