"""The OpenAPI 3.0 description served at /openapi.json, built from the loaded manifest so
shapes, ranges and the batch limit always match what the server enforces."""

from __future__ import annotations


def openapi_document(manifest: dict, settings) -> dict:
    name = manifest["name"]
    rows, cols = manifest["input"]["shape"]
    lo, hi = manifest["input"]["min"], manifest["input"]["max"]
    labels = manifest["labels"]
    pixel = {"type": "number", "minimum": lo, "maximum": hi}
    flat = {"type": "array", "items": pixel, "minItems": rows * cols, "maxItems": rows * cols,
            "description": f"{rows * cols} pixel values, row-major"}
    nested = {"type": "array", "minItems": rows, "maxItems": rows,
              "items": {"type": "array", "items": pixel, "minItems": cols, "maxItems": cols},
              "description": f"{rows} rows of {cols} pixel values"}
    instance = {"oneOf": [flat, nested,
                          {"type": "object", "required": ["pixels"], "additionalProperties": False,
                           "properties": {"pixels": {"oneOf": [flat, nested]}}}]}
    batch = {"type": "array", "items": instance, "minItems": 1,
             "maxItems": settings.max_batch_size}
    probabilities = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                     "minItems": len(labels), "maxItems": len(labels),
                     "description": "probability per label, in the order of " + ", ".join(labels)}
    error = {"description": "client error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    predict_request = {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [
            {"type": "object", "required": ["instances"], "additionalProperties": False,
             "properties": {"instances": batch, "signature_name": {"type": "string",
                                                                   "enum": ["serving_default"]}}},
            {"type": "object", "required": ["inputs"], "additionalProperties": False,
             "properties": {"inputs": {"oneOf": [batch, {
                 "type": "object", "required": ["pixels"], "additionalProperties": False,
                 "properties": {"pixels": batch}}]},
                 "signature_name": {"type": "string", "enum": ["serving_default"]}}},
        ]}}}}
    predict_response = {"description": "probabilities per instance", "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "predictions": {"type": "array", "items": probabilities},
            "outputs": {"type": "array", "items": probabilities}}}}}}
    client_errors = {str(c): error for c in (400, 401, 404, 413, 415)}
    security = [{"apiKey": []}] if settings.api_key else []
    name_param = {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": [name]}}
    version_param = {"name": "version", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": [str(manifest["version"])]}}
    predict_op = {"summary": "Predict (TensorFlow Serving REST)", "security": security,
                  "requestBody": predict_request,
                  "responses": {"200": predict_response, **client_errors}}
    status_op = {"summary": "Model version status",
                 "responses": {"200": {"description": "status", "content": {
                     "application/json": {"schema": {"type": "object"}}}}, "404": error}}
    metadata_op = {"summary": "Model metadata (signature, manifest)",
                   "responses": {"200": {"description": "metadata", "content": {
                       "application/json": {"schema": {"type": "object"}}}}, "404": error}}
    simple_ok = {"200": {"description": "ok", "content": {"application/json": {
        "schema": {"type": "object"}}}}}

    def with_version(op: dict) -> dict:
        return {**op, "parameters": [name_param, version_param]}

    def by_name(op: dict) -> dict:
        return {**op, "parameters": [name_param]}

    return {
        "openapi": "3.0.3",
        "info": {"title": "ml-app prediction service", "version": str(manifest["version"]),
                 "description": f"Serves model '{name}' version {manifest['version']} "
                                f"(manifest sha256 {manifest['_manifest_sha256']})."},
        "paths": {
            f"/v1/models/{{name}}:predict": {"post": by_name(predict_op)},
            f"/v1/models/{{name}}/versions/{{version}}:predict": {"post": with_version(predict_op)},
            "/v1/models/{name}": {"get": by_name(status_op)},
            "/v1/models/{name}/versions/{version}": {"get": with_version(status_op)},
            "/v1/models/{name}/metadata": {"get": by_name(metadata_op)},
            "/v1/models/{name}/versions/{version}/metadata": {"get": with_version(metadata_op)},
            "/invocations": {"post": {
                "summary": "SageMaker inference (JSON as for predict, or text/csv)",
                "security": security,
                "parameters": [{"name": "Accept", "in": "header", "required": False,
                                "description": "application/json (the default) or text/csv "
                                               "(one line of outputs per instance); else 406",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {
                    **predict_request["content"],
                    "text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": {**predict_response, "content": {
                    **predict_response["content"], "text/csv": {"schema": {"type": "string"}}}},
                    **client_errors, "406": error}}},
            "/ping": {"get": {"summary": "SageMaker health check", "responses": simple_ok}},
            "/healthz": {"get": {"summary": "Liveness", "responses": simple_ok}},
            "/readyz": {"get": {"summary": "Readiness: model loaded", "responses": simple_ok}},
        },
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
