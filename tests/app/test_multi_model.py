"""Several models, and several versions of one, from one app: each request is validated
against, and answered by, the model version its URL names (app/registry.py)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from app import ConfigError, ModelIntegrityError, create_app
from tests.conftest import (DIABETES_DIR, MODEL_DIR, another_version, manifest_sha256, r2_score,
                            run_litert)

DIGITS, DIABETES = "/v1/models/digits:predict", "/v1/models/diabetes:predict"


def _app(tmp_path, *folders, **extra):
    return create_app({"MODEL_URI": ",".join(map(str, folders)),
                       "MODEL_CACHE_DIR": str(tmp_path / "cache"), "METRICS_ENABLED": "false",
                       "LOG_LEVEL": "ERROR", **extra})


@pytest.fixture
def both(tmp_path):
    """digits/1 (the default) beside diabetes/1."""
    return _app(tmp_path, MODEL_DIR, DIABETES_DIR).test_client()


@pytest.fixture
def versions(tmp_path):
    """digits/1 (the default), digits/2 (a second release of it) and diabetes/1."""
    digits_2 = another_version(MODEL_DIR, tmp_path / "released", "2")
    return _app(tmp_path, MODEL_DIR, digits_2, DIABETES_DIR).test_client()


def test_each_model_answers_its_own_requests(both, heldout, diabetes_heldout):
    digits = both.post(DIGITS, json={"instances": heldout.x_test[:20].tolist()})
    assert digits.status_code == 200
    assert list(np.argmax(digits.json["predictions"], 1)) == list(heldout.y_test[:20])
    assert (digits.headers["X-Model-Name"], digits.headers["X-Model-Version"]) == ("digits", "1")

    x = diabetes_heldout.x
    diabetes = both.post(DIABETES, json={"instances": x.tolist()})
    assert diabetes.status_code == 200
    assert diabetes.headers["X-Model-Name"] == "diabetes"
    served = np.asarray(diabetes.json["predictions"], dtype=np.float32)
    assert served.shape == (len(x), 1)
    # what LiteRT computes on the parity inputs, and the release's own held-out figures
    np.testing.assert_allclose(served, run_litert(DIABETES_DIR, x), rtol=1e-6, atol=1e-5)
    metrics = json.loads((DIABETES_DIR / "manifest.json").read_text())["metrics"]
    assert r2_score(diabetes_heldout.y, served[:, 0]) == pytest.approx(metrics["heldout_r2"],
                                                                        abs=1e-3)
    assert float(np.abs(diabetes_heldout.y - served[:, 0]).mean()) == pytest.approx(
        metrics["heldout_mae"], abs=0.01)


def test_named_and_columnar_inputs_use_each_models_input_name(both, diabetes_heldout):
    x = diabetes_heldout.x[:3].tolist()
    rows = both.post(DIABETES, json={"instances": x}).json["predictions"]
    named = both.post(DIABETES, json={"instances": [{"features": r} for r in x]})
    columnar = both.post(DIABETES, json={"inputs": {"features": x}})
    assert named.json["predictions"] == columnar.json["outputs"] == rows
    # digits' input name means nothing to diabetes, and the other way round
    wrong = both.post(DIABETES, json={"instances": [{"pixels": x[0]}]})
    assert wrong.status_code == 400 and "exactly one key 'features'" in wrong.json["error"]
    wrong = both.post(DIGITS, json={"inputs": {"features": [[0] * 64]}})
    assert wrong.status_code == 400 and "exactly one key 'pixels'" in wrong.json["error"]


@pytest.mark.parametrize("path, body, words", [
    (DIABETES, {"instances": [[0] * 64]},
     ["instances[0]", "10 numbers", "-0.3 to 0.3", "'features' of model 'diabetes' version 1",
      "got a list of 64"]),
    (DIGITS, {"instances": [[0.1] * 10]},
     ["instances[0]", "64 numbers or 8 rows of 8 numbers", "'pixels' of model 'digits'",
      "got a list of 10"]),
    (DIABETES, {"instances": [[0.1] * 9 + [5]]}, ["value 9 = 5", "[-0.3, 0.3]"]),
    (DIABETES, {"instances": [[[0.1] * 5, [0.1] * 5]]}, ["instances[0]", "10 numbers"]),
])
def test_a_request_for_one_model_sent_to_another_gets_that_models_400(both, path, body, words):
    r = both.post(path, json=body)
    assert r.status_code == 400
    for word in words:
        assert word in r.json["error"], r.json["error"]
    assert r.headers["X-Model-Name"] == path.split("/")[3].split(":")[0]


def test_csv_on_invocations_is_the_default_models(tmp_path, diabetes_heldout):
    client = _app(tmp_path, DIABETES_DIR, MODEL_DIR).test_client()    # diabetes first
    x = diabetes_heldout.x[:4]
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in x)
    r = client.post("/invocations", data=csv, content_type="text/csv")
    assert r.status_code == 200 and r.headers["X-Model-Name"] == "diabetes"
    np.testing.assert_allclose(r.json["predictions"], run_litert(DIABETES_DIR, x), atol=1e-5)
    wrong = client.post("/invocations", data=",".join(["1"] * 64), content_type="text/csv")
    assert wrong.status_code == 400 and "10 numbers" in wrong.json["error"]
    assert client.get("/readyz").json["model"] == "diabetes"


def test_unknown_model_or_version_is_a_404_naming_what_exists(versions):
    r = versions.post("/v1/models/cats:predict", json={"instances": [[0] * 64]})
    assert r.status_code == 404
    assert r.json["error"] == ("model 'cats' not found; this server serves models 'digits', "
                               "'diabetes'")
    assert "X-Model-Name" not in r.headers
    r = versions.post("/v1/models/digits/versions/7:predict", json={"instances": [[0] * 64]})
    assert r.status_code == 404
    assert r.json["error"] == ("version '7' of model 'digits' not found; this server serves "
                               "versions 2, 1 of it")
    for path in ("/v1/models/cats", "/v1/models/cats/metadata", "/v1/models/diabetes/versions/2",
                 "/v1/models/diabetes/versions/2/metadata"):
        r = versions.get(path)
        assert r.status_code == 404 and "not found; this server serves" in r.json["error"], path


def test_several_versions_of_one_model(versions, heldout):
    x = heldout.x_test[:5].tolist()

    def answered_by(path):
        r = versions.post(path, json={"instances": x})
        assert r.status_code == 200
        assert list(np.argmax(r.json["predictions"], 1)) == list(heldout.y_test[:5])
        return r.headers["X-Model-Name"], r.headers["X-Model-Version"]

    # a URL without a version gets the highest one, as in TF Serving
    assert answered_by(DIGITS) == ("digits", "2")
    assert answered_by("/v1/models/digits/versions/1:predict") == ("digits", "1")
    assert answered_by("/v1/models/digits/versions/2:predict") == ("digits", "2")
    # /invocations is the default model: the first MODEL_URI lists
    assert answered_by("/invocations") == ("digits", "1")
    status = versions.get("/v1/models/digits").json["model_version_status"]
    assert [s["version"] for s in status] == ["2", "1"]
    assert {s["state"] for s in status} == {"AVAILABLE"}
    one = versions.get("/v1/models/digits/versions/1").json["model_version_status"]
    assert [s["version"] for s in one] == ["1"]
    assert versions.get("/v1/models/digits/metadata").json["model_spec"]["version"] == "2"
    v1 = versions.get("/v1/models/digits/versions/1/metadata").json
    v2 = versions.get("/v1/models/digits/versions/2/metadata").json
    assert (v1["model_spec"]["version"], v2["model_spec"]["version"]) == ("1", "2")
    assert v1["manifest"]["sha256"] == manifest_sha256(MODEL_DIR) != v2["manifest"]["sha256"]
    ready = versions.get("/readyz").json
    assert [(m["name"], m["version"]) for m in ready["models"]] == [
        ("digits", "1"), ("digits", "2"), ("diabetes", "1")]


def test_metadata_follows_each_manifest(both):
    digits = both.get("/v1/models/digits/metadata").json
    diabetes = both.get("/v1/models/diabetes/versions/1/metadata").json
    sig = diabetes["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(sig["inputs"]) == ["features"] and list(sig["outputs"]) == ["progression"]
    assert [d["size"] for d in sig["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert [d["size"] for d in sig["outputs"]["progression"]["tensor_shape"]["dim"]] == ["-1", "1"]
    assert sig["inputs"]["features"]["dtype"] == sig["outputs"]["progression"]["dtype"] == "DT_FLOAT"
    assert "labels" not in diabetes["manifest"]
    assert diabetes["manifest"]["input"]["min"] == -0.3 and diabetes["manifest"]["sha256"] == \
        manifest_sha256(DIABETES_DIR)
    sig = digits["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(sig["inputs"]) == ["pixels"] and list(sig["outputs"]) == ["probabilities"]
    # schema 1's defaults filled in: digits/1 predates input.name and the dtypes
    assert digits["manifest"]["input"]["name"] == "pixels"
    assert digits["manifest"]["input"]["dtype"] == digits["manifest"]["output"]["dtype"] == "float32"
    assert digits["manifest"]["labels"] == [str(d) for d in range(10)]


def test_openapi_describes_each_model_version_with_its_own_schema(versions):
    from openapi_spec_validator import validate

    doc = versions.get("/openapi.json").json
    validate(doc)

    def instance(path):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return body["schema"]["oneOf"][0]["properties"]["instances"]["items"]["oneOf"][0]

    assert instance(DIABETES)["minItems"] == 10
    assert instance(DIABETES)["items"] == {"type": "number", "minimum": -0.3, "maximum": 0.3}
    assert instance("/v1/models/digits/versions/1:predict")["minItems"] == 64
    assert {"/v1/models/digits/versions/1", "/v1/models/digits/versions/2/metadata",
            "/v1/models/diabetes"} <= set(doc["paths"])
    assert not [p for p in doc["paths"] if "{" in p]


def test_pins_pair_with_uris_in_order(tmp_path):
    pins = f"{manifest_sha256(MODEL_DIR)},{manifest_sha256(DIABETES_DIR)}"
    assert _app(tmp_path, MODEL_DIR, DIABETES_DIR, MODEL_SHA256=pins)
    assert _app(tmp_path, MODEL_DIR, DIABETES_DIR, MODEL_SHA256=f",{manifest_sha256(DIABETES_DIR)}")
    swapped = f"{manifest_sha256(DIABETES_DIR)},{manifest_sha256(MODEL_DIR)}"
    with pytest.raises(ModelIntegrityError) as info:
        _app(tmp_path, MODEL_DIR, DIABETES_DIR, MODEL_SHA256=swapped)
    assert str(MODEL_DIR) in str(info.value) and "MODEL_SHA256" in str(info.value)
    with pytest.raises(ConfigError, match="has 1 pin but MODEL_URI lists 2 model versions"):
        _app(tmp_path, MODEL_DIR, DIABETES_DIR, MODEL_SHA256=manifest_sha256(MODEL_DIR))


def test_the_same_version_twice_is_refused_naming_both(tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(MODEL_DIR, copy)
    with pytest.raises(ModelIntegrityError) as info:
        _app(tmp_path, MODEL_DIR, copy)
    assert "both model 'digits' version 1" in str(info.value)
    assert str(copy) in str(info.value) and str(MODEL_DIR) in str(info.value)


def test_a_manifest_that_does_not_describe_its_model_is_refused(tmp_path):
    folder = tmp_path / "diabetes" / "1"
    shutil.copytree(DIABETES_DIR, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["input"]["shape"] = [11]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match=r"takes float32 \[10\] per instance but "
                                                  r"manifest.json declares input float32 \[11\]"):
        _app(tmp_path, folder)
    manifest["input"]["shape"], manifest["output"]["shape"] = [10], [3]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match=r"returns shape \[1\].*output.shape \[3\]"):
        _app(tmp_path, folder)
    manifest["output"]["shape"], manifest["input"]["dtype"] = [1], "float64"
    del manifest["input"]["name"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError) as info:
        _app(tmp_path, folder)
    assert "input.dtype 'float64' must be one of float32" in str(info.value)
    assert "input.name None" in str(info.value) and "make release" in str(info.value)


def test_metrics_carry_the_model_that_answered(tmp_path):
    client = _app(tmp_path, MODEL_DIR, DIABETES_DIR, METRICS_ENABLED="true",
                  API_KEY="k" * 32).test_client()
    service = client.application.extensions["ml_app"]
    service.metrics._stream = out = io.StringIO()
    key = {"x-api-key": "k" * 32}
    client.post(DIGITS, json={"instances": [[0] * 64] * 2}, headers=key)
    client.post(DIABETES, json={"instances": [[0.1] * 10] * 3}, headers=key)
    client.post(DIABETES, json={"instances": [[0] * 64]}, headers=key)     # 400, diabetes'
    client.post(DIABETES, json={"instances": [[0.1] * 10]})                 # 401, diabetes'
    client.post("/v1/models/cats:predict", json={"instances": [[0]]}, headers=key)
    service.metrics.flush()
    docs = {(d["Model"], d["ModelVersion"]): d for d in map(json.loads, out.getvalue().splitlines())}
    assert set(docs) == {("digits", "1"), ("diabetes", "1"), ("(none)", "(none)")}
    counts = {k: (d["PredictionRequests"], d["Predictions"], d["PredictionErrors"])
              for k, d in docs.items()}
    assert counts == {("digits", "1"): (1, 2, 0), ("diabetes", "1"): (3, 3, 2),
                      ("(none)", "(none)"): (1, 0, 1)}


def test_sagemaker_custom_attributes_pick_the_model_on_invocations(versions, heldout,
                                                                   diabetes_heldout):
    """InvokeEndpoint reaches /invocations only: CustomAttributes, as SageMaker's TensorFlow
    Serving container reads them, pick another model or version."""
    def invoke(attributes, body):
        return versions.post("/invocations", json=body,
                             headers={"X-Amzn-SageMaker-Custom-Attributes": attributes})

    x = diabetes_heldout.x[:3]
    r = invoke("tfs-model-name=diabetes", {"instances": x.tolist()})
    assert r.status_code == 200 and r.headers["X-Model-Name"] == "diabetes"
    np.testing.assert_allclose(r.json["predictions"], run_litert(DIABETES_DIR, x), atol=1e-5)
    digits = {"instances": heldout.x_test[:2].tolist()}
    for attributes, version in (("tfs-model-name=digits,tfs-model-version=1", "1"),
                                ("tfs-model-name=digits", "2"),        # the highest
                                ("tfs-model-version=2, other=x", "2"),  # of the default model
                                ("tfs-method=predict", "1"), ("", "1")):
        r = invoke(attributes, digits)
        assert r.status_code == 200, (attributes, r.json)
        assert (r.headers["X-Model-Name"], r.headers["X-Model-Version"]) == ("digits", version)
        assert r.headers["X-Amzn-SageMaker-Custom-Attributes"] == \
            f"tfs-model-name=digits,tfs-model-version={version},manifest-sha256=" \
            f"{versions.application.extensions['ml_app'].models.find('digits', version).sha256}"
    r = invoke("tfs-model-name=cats", digits)
    assert r.status_code == 404 and "serves models 'digits', 'diabetes'" in r.json["error"]
    assert "X-Amzn-SageMaker-Custom-Attributes" not in r.headers     # no model answered
    r = invoke("tfs-model-name=diabetes,tfs-model-version=9", digits)
    assert r.status_code == 404 and "version '9' of model 'diabetes'" in r.json["error"]
    r = invoke("tfs-model-name=diabetes", digits)             # digits' instances, diabetes' 400
    assert r.status_code == 400 and "of model 'diabetes'" in r.json["error"]


def test_invocations_answer_which_version_and_manifest_answered(tmp_path):
    """SageMaker forwards the container's X-Amzn-SageMaker-Custom-Attributes to the
    InvokeEndpoint caller verbatim: it names the model, the version and the manifest's
    sha256 that answered, within SageMaker's limit (1,024 visible US-ASCII characters) for
    the longest name and version a manifest may have; the predict routes do not send it."""
    manifest = json.loads((DIABETES_DIR / "manifest.json").read_text())
    longest = tmp_path / "longest"
    shutil.copytree(DIABETES_DIR, longest)
    manifest.update(name="m" * 63 + "-", version="9" * 64)
    (longest / "manifest.json").write_text(json.dumps(manifest))
    client = _app(tmp_path, MODEL_DIR, longest).test_client()
    answer = client.post("/invocations", json={"instances": [[0.1] * 10]}, headers={
        "X-Amzn-SageMaker-Custom-Attributes": f"tfs-model-name={'m' * 63}-"})
    assert answer.status_code == 200, answer.json
    value = answer.headers["X-Amzn-SageMaker-Custom-Attributes"]
    assert value == (f"tfs-model-name={'m' * 63}-,tfs-model-version={'9' * 64},"
                     f"manifest-sha256={manifest_sha256(longest)}")
    assert len(value) <= 1024 and all("!" <= c <= "~" for c in value)   # RFC 7230 VCHAR
    # Errors of a known model name it too; the TF Serving routes keep their own headers.
    bad = client.post("/invocations", data="x", content_type="text/csv")
    assert bad.status_code == 400 and "tfs-model-name=digits," in \
        bad.headers["X-Amzn-SageMaker-Custom-Attributes"]
    predict = client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]})
    assert predict.headers["X-Model-Name"] == "digits"
    assert "X-Amzn-SageMaker-Custom-Attributes" not in predict.headers


def test_the_flask_view_of_invocations_answers_like_the_lean_path(both):
    """The Flask views stay in the map behind the lean path: should a request reach one, it
    answers with the same headers."""
    app = both.application
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/invocations", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json",
               "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES": "tfs-model-name=diabetes"}
    seen = []
    for wsgi in (app.wsgi_app, app.wsgi_app.wsgi_app.flask_app):
        body = json.dumps({"instances": [[0.1] * 10]}).encode()
        headers = {}
        wsgi({**environ, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)},
             lambda status, h, exc_info=None: headers.update(h, status=status))
        seen.append({k: headers[k] for k in ("status", "X-Model-Name",
                                             "X-Amzn-SageMaker-Custom-Attributes")})
    assert seen[0] == seen[1] and seen[0]["X-Model-Name"] == "diabetes", seen
