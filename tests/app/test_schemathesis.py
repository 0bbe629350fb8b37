"""Property-based fuzzing of every operation in /openapi.json: no input produces a 5xx.

Schemathesis generates valid and invalid requests from the document the server itself
publishes, sends them through the WSGI app, and checks each response. The app serves both
committed models (digits/1, the default, and diabetes/1), so every operation of each, with
its own input schema, is fuzzed.
"""

from __future__ import annotations

import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from app import create_app
from tests.conftest import DIABETES_DIR, MODEL_DIR

app = create_app({"MODEL_URI": f"{MODEL_DIR},{DIABETES_DIR}", "METRICS_ENABLED": "false",
                  "LOG_LEVEL": "ERROR"})
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)


@schema.parametrize()
@hypothesis.settings(max_examples=60, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_no_input_produces_a_server_error(case):
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error, status_code_conformance,
                                              content_type_conformance,
                                              response_schema_conformance))
    assert response.status_code < 500


def test_both_models_operations_are_fuzzed():
    """The parametrisation above covers each model's predict, status and metadata."""
    paths = {operation.ok().path for operation in schema.get_all_operations()}
    for name in ("digits", "diabetes"):
        assert {f"/v1/models/{name}:predict", f"/v1/models/{name}/versions/1:predict",
                f"/v1/models/{name}/metadata"} <= paths
