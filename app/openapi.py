"""The OpenAPI 3.0 description served at /openapi.json, built from the loaded manifests so
shapes, ranges, types and the batch limit always match what the server enforces.

Each model version's request body has its own shape, so every path is concrete:
``/v1/models/digits:predict`` (the highest version of digits),
``/v1/models/digits/versions/1:predict``, and so on for status and metadata; ``/invocations``
takes the default model's instances.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from app.validation import describe_shape

if TYPE_CHECKING:
    from app.config import Settings
    from app.registry import ModelSet, ServedModel

ERROR = {"description": "client error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
OBJECT = {"application/json": {"schema": {"type": "object"}}}
CLIENT_ERRORS = {str(c): ERROR for c in (400, 401, 404, 413, 415)}


def _nested(item: dict, shape: tuple[int, ...]) -> dict:
    """An array schema nested to ``shape`` with ``item`` at the bottom."""
    for size in reversed(shape):
        item = {"type": "array", "items": item, "minItems": size, "maxItems": size}
    return item


def _instance(model: "ServedModel") -> dict:
    spec = model.spec
    number = {"type": "integer" if spec.whole_numbers else "number",
              "minimum": spec.lo, "maximum": spec.hi}
    size = math.prod(spec.shape)
    flat = {**_nested(number, (size,)),
            "description": f"{describe_shape(spec.shape)}: '{spec.input_name}' of model "
                           f"'{model.name}' version {model.version}"
                           + (f" ({spec.description})" if spec.description else "")}
    forms = [flat] if len(spec.shape) == 1 else [flat, _nested(number, spec.shape)]
    value = forms[0] if len(forms) == 1 else {"oneOf": forms}
    named = {"type": "object", "required": [spec.input_name], "additionalProperties": False,
             "properties": {spec.input_name: value}}
    return {"oneOf": [*forms, named]}


def _predict_body(model: "ServedModel", settings: "Settings") -> dict:
    batch = {"type": "array", "items": _instance(model), "minItems": 1,
             "maxItems": settings.max_batch_size}
    signature = {"type": "string", "enum": ["serving_default"]}
    columnar = {"type": "object", "required": [model.spec.input_name],
                "additionalProperties": False, "properties": {model.spec.input_name: batch}}
    return {"application/json": {"schema": {"oneOf": [
        {"type": "object", "required": ["instances"], "additionalProperties": False,
         "properties": {"instances": batch, "signature_name": signature}},
        {"type": "object", "required": ["inputs"], "additionalProperties": False,
         "properties": {"inputs": {"oneOf": [batch, columnar]}, "signature_name": signature}},
    ]}}}


def _predict_response(model: "ServedModel") -> dict:
    spec = model.spec
    output = _nested({"type": "number"}, spec.output_shape)
    output["description"] = (f"'{spec.output_name}' per instance"
                             + (", one value per label: " + ", ".join(spec.labels)
                                if spec.labels else ""))
    rows = {"type": "array", "items": output}
    return {"description": f"'{spec.output_name}' of model '{model.name}' version "
                           f"{model.version} per instance",
            "content": {"application/json": {"schema": {"type": "object", "properties": {
                "predictions": rows, "outputs": rows}}}}}


def _predict_op(model: "ServedModel", settings: "Settings", security: list) -> dict:
    return {"summary": f"Predict with {model.name} version {model.version} "
                       "(TensorFlow Serving REST)",
            "security": security, "requestBody": {"required": True,
                                                  "content": _predict_body(model, settings)},
            "responses": {"200": _predict_response(model), **CLIENT_ERRORS}}


def _model_paths(models: "ModelSet", settings: "Settings", security: list) -> dict:
    paths: dict = {}
    status = {"summary": "Model version status", "responses": {
        "200": {"description": "status", "content": OBJECT}, "404": ERROR}}
    metadata = {"summary": "Model metadata (signature, manifest)", "responses": {
        "200": {"description": "metadata", "content": OBJECT}, "404": ERROR}}
    for name in models.names:
        base = f"/v1/models/{name}"
        paths[f"{base}:predict"] = {"post": _predict_op(models.find(name), settings, security)}
        paths[base] = {"get": status}
        paths[f"{base}/metadata"] = {"get": metadata}
        for model in models.versions(name):
            versioned = f"{base}/versions/{model.version}"
            paths[f"{versioned}:predict"] = {"post": _predict_op(model, settings, security)}
            paths[versioned] = {"get": status}
            paths[f"{versioned}/metadata"] = {"get": metadata}
    return paths


def openapi_document(models: "ModelSet", settings: "Settings") -> dict:
    default = models.default
    answer = _predict_response(default)
    security = [{"apiKey": []}] if settings.api_key else []
    simple_ok = {"200": {"description": "ok", "content": OBJECT}}
    served = "; ".join(f"'{m.name}' version {m.version} (manifest sha256 {m.sha256})"
                       for m in models)
    return {
        "openapi": "3.0.3",
        "info": {"title": "ml-app prediction service",
                 "version": ",".join(f"{m.name}/{m.version}" for m in models),
                 "description": f"Serves {served}. The default model, for /invocations, is "
                                f"'{default.name}' version {default.version}."},
        "paths": {
            **_model_paths(models, settings, security),
            "/invocations": {"post": {
                "summary": f"SageMaker inference with the default model ({default.name} "
                           f"version {default.version}): JSON as for predict, or text/csv",
                "security": security,
                "parameters": [{"name": "Accept", "in": "header", "required": False,
                                "description": "application/json (the default) or text/csv "
                                               "(one line of outputs per instance); else 406",
                                "schema": {"type": "string"}},
                               {"name": "X-Amzn-SageMaker-Custom-Attributes", "in": "header",
                                "required": False,
                                "description": "tfs-model-name=<name>[,tfs-model-version=<v>]:"
                                               " another model than the default (its own "
                                               "instances; 404 when not served)",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {
                    **_predict_body(default, settings),
                    "text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": {**answer, "content": {
                    **answer["content"], "text/csv": {"schema": {"type": "string"}}},
                    "headers": {"X-Amzn-SageMaker-Custom-Attributes": {
                        "description": "the version that answered, as SageMaker hands it to "
                                       "the caller (CustomAttributes): tfs-model-name=<name>,"
                                       "tfs-model-version=<v>,manifest-sha256=<hex>",
                        "schema": {"type": "string"}}}},
                    **CLIENT_ERRORS, "406": ERROR}}},
            "/ping": {"get": {"summary": "SageMaker health check", "responses": simple_ok}},
            "/healthz": {"get": {"summary": "Liveness", "responses": simple_ok}},
            "/readyz": {"get": {"summary": "Readiness: every model loaded",
                                "responses": simple_ok}},
        },
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
