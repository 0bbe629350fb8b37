"""The TF Serving and SageMaker predict APIs: every accepted request format, answered right."""

from __future__ import annotations

import numpy as np
import pytest


def _probs_ok(rows, n):
    arr = np.asarray(rows)
    assert arr.shape == (n, 10)
    assert np.allclose(arr.sum(axis=1), 1.0, atol=1e-4)
    return arr


@pytest.mark.parametrize("path", ["/v1/models/digits:predict",
                                  "/v1/models/digits/versions/1:predict"])
def test_row_format_flat_and_nested_agree(client, heldout, path):
    x = heldout.x_test[:5]
    flat = client.post(path, json={"instances": x.reshape(5, 64).tolist()})
    nested = client.post(path, json={"instances": x.tolist()})
    assert flat.status_code == nested.status_code == 200
    a = _probs_ok(flat.json["predictions"], 5)
    b = _probs_ok(nested.json["predictions"], 5)
    assert np.array_equal(a, b)
    assert list(a.argmax(axis=1)) == list(heldout.y_test[:5])


def test_named_instances_and_columnar_inputs(client, heldout):
    x = heldout.x_test[:3].tolist()
    named = client.post("/v1/models/digits:predict", json={"instances": [{"pixels": r} for r in x]})
    columnar = client.post("/v1/models/digits:predict", json={"inputs": x})
    columnar_named = client.post("/v1/models/digits:predict", json={"inputs": {"pixels": x}})
    assert named.status_code == columnar.status_code == columnar_named.status_code == 200
    assert "predictions" in named.json
    # TF Serving answers the columnar format with "outputs"
    assert columnar.json["outputs"] == columnar_named.json["outputs"] == named.json["predictions"]


def test_whole_heldout_set_reaches_released_accuracy(client, heldout, manifest):
    x, y = heldout.x_test, heldout.y_test
    predicted = []
    for start in range(0, len(x), 256):
        r = client.post("/v1/models/digits:predict", json={"instances": x[start:start + 256].tolist()})
        assert r.status_code == 200
        predicted += list(np.argmax(r.json["predictions"], axis=1))
    accuracy = float(np.mean(np.asarray(predicted) == y))
    assert accuracy == pytest.approx(manifest["metrics"]["heldout_accuracy"], abs=1e-6)
    assert accuracy >= 0.95


def test_batch_sizes_change_between_requests(client, heldout):
    """The interpreter is resized per batch size; results must not depend on history."""
    x = heldout.x_test
    single = client.post("/v1/models/digits:predict", json={"instances": x[:1].tolist()}).json
    client.post("/v1/models/digits:predict", json={"instances": x[:7].tolist()})
    again = client.post("/v1/models/digits:predict", json={"instances": x[:1].tolist()}).json
    batch = client.post("/v1/models/digits:predict", json={"instances": x[:7].tolist()}).json
    assert single == again
    assert np.allclose(batch["predictions"][0], single["predictions"][0], atol=1e-6)


def test_signature_name_serving_default_is_accepted(client, heldout):
    r = client.post("/v1/models/digits:predict",
                    json={"signature_name": "serving_default", "instances": heldout.x_test[:1].tolist()})
    assert r.status_code == 200


def test_sagemaker_invocations_json_and_csv(client, heldout):
    x = heldout.x_test[:4]
    as_json = client.post("/invocations", json={"instances": x.tolist()})
    csv = "\n".join(",".join(f"{v:g}" for v in row) for row in x.reshape(4, 64))
    as_csv = client.post("/invocations", data=csv, content_type="text/csv")
    assert as_json.status_code == as_csv.status_code == 200
    assert np.allclose(as_json.json["predictions"], as_csv.json["predictions"])
    assert list(np.argmax(as_csv.json["predictions"], 1)) == list(heldout.y_test[:4])


def test_model_status_and_metadata(client, manifest):
    for path in ("/v1/models/digits", "/v1/models/digits/versions/1"):
        status = client.get(path)
        assert status.status_code == 200
        assert status.json["model_version_status"][0]["state"] == "AVAILABLE"
        assert status.json["model_version_status"][0]["version"] == "1"
    meta = client.get("/v1/models/digits/metadata").json
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    dims = [d["size"] for d in sig["inputs"]["pixels"]["tensor_shape"]["dim"]]
    assert dims == ["-1", "8", "8"]
    assert meta["manifest"]["labels"] == manifest["labels"]
    assert meta["manifest"]["metrics"] == manifest["metrics"]
    assert client.get("/v1/models/digits/versions/1/metadata").json == meta


def test_health_endpoints(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert (ready["status"], ready["model"], ready["version"]) == ("ready", "digits", "1")
    assert [(m["name"], m["version"]) for m in ready["models"]] == [("digits", "1")]
    assert client.get("/ping").status_code == 200


def test_demo_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<canvas" in html and "/static/demo.js" in html
    # no CDN: every script and stylesheet comes from this server
    assert "http://" not in html and "https://" not in html
    js = client.get("/static/demo.js")
    assert js.status_code == 200
    assert ":predict" in js.get_data(as_text=True)


def test_openapi_document_is_valid_and_matches_limits(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json
    validate(doc)
    batch = doc["paths"]["/v1/models/digits:predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["oneOf"][0]["properties"]["instances"]
    assert batch["maxItems"] == 256


def test_request_id_is_echoed_from_alb_trace_header(client, heldout):
    r = client.get("/healthz", headers={"X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678"})
    assert r.headers["X-Request-Id"] == "Root=1-67891233-abcdef012345678912345678"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 32
