"""HTTP endpoints, one blueprint per audience (design.md section 5).

- tfserving: TensorFlow Serving's REST API (predict, model status, metadata), per model
             and per version
- sagemaker: SageMaker's container contract (/ping, /invocations)
- health:    /healthz (liveness), /readyz (readiness)
- docs:      the demo page at / and /openapi.json
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, request

from app import fastpath
from app.observability import MODEL
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


def _answer(status: int, body: bytes, model, mimetype: str, *,
            invocation: bool = False) -> Response:
    headers = (model.invocation_headers if invocation else model.headers) if model else None
    return Response(body, status=status, mimetype=mimetype, headers=headers)


# POST predict and /invocations are answered by app.fastpath before Flask sees them; these
# views keep the routes in Flask's map (405 with Allow for other methods, the same answer
# should a request ever reach them).
@tfserving.post("/v1/models/<segment:name>:predict")
@tfserving.post("/v1/models/<segment:name>/versions/<segment:version>:predict")
def predict(name: str, version: str | None = None):
    return _answer(*fastpath.predict(_service(), request.environ, name, version))


# TF Serving's dtype names, for the metadata of each manifest dtype.
TF_DTYPES = {"float32": "DT_FLOAT", "float16": "DT_HALF", "int32": "DT_INT32",
             "int64": "DT_INT64", "int8": "DT_INT8", "uint8": "DT_UINT8"}


def _tensor(name: str, dtype: str, shape: tuple[int, ...]) -> dict:
    return {"dtype": TF_DTYPES.get(dtype, "DT_INVALID"), "name": name,
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in (-1, *shape)],
                             "unknown_rank": False}}


@tfserving.get("/v1/models/<segment:name>")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>")
def model_status(name: str, version: str | None = None):
    # Without a version, every loaded version of the model (TF Serving lists them all).
    models = _service().models
    shown = [models.find(name, version)] if version is not None else models.versions(name)
    request.environ[MODEL] = shown[0]
    return _json({"model_version_status": [{
        "version": model.version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    } for model in shown]})


@tfserving.get("/v1/models/<segment:name>/metadata")
@tfserving.get("/v1/models/<segment:name>/versions/<segment:version>/metadata")
def model_metadata(name: str, version: str | None = None):
    model = request.environ[MODEL] = _service().models.find(name, version)
    spec, manifest = model.spec, model.manifest
    return _json({
        "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {spec.input_name: _tensor(spec.input_name, spec.dtype, spec.shape)},
            "outputs": {spec.output_name: _tensor(spec.output_name, spec.output_dtype,
                                                  spec.output_shape)},
            "method_name": "tensorflow/serving/predict",
        }}}},
        # The manifest as served (schema 1's missing keys filled in), and its sha256.
        "manifest": {k: manifest[k] for k in ("schema_version", "created", "source", "labels",
                                              "metrics", "parity", "framework")
                     if k in manifest}
        | {"input": {"name": spec.input_name, "shape": list(spec.shape), "dtype": spec.dtype,
                     "min": spec.lo, "max": spec.hi, "description": spec.description},
           "output": {"name": spec.output_name, "shape": list(spec.output_shape),
                      "dtype": spec.output_dtype},
           "sha256": model.sha256},
    })


@sagemaker.get("/ping")
def ping():
    return _json({"status": "ok"})


@sagemaker.post("/invocations")
def invocations():
    return _answer(*fastpath.invocations(_service(), request.environ), invocation=True)


@health.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@health.get("/readyz")
def readyz():
    # create_app loads every model and runs a warm-up prediction with each before it
    # returns, so a process that answers here is ready. "model" is the default one.
    models = _service().models
    return _json({"status": "ready", "model": models.default.name,
                  "version": models.default.version,
                  "models": [{"name": m.name, "version": m.version, "sha256": m.sha256}
                             for m in models]})


@docs.get("/")
def demo_page():
    return current_app.send_static_file("index.html")


@docs.get("/openapi.json")
def openapi():
    service = _service()
    return _json(openapi_document(service.models, service.settings))
