"""The image serving several models and two versions of one from one container, locked down
as on ECS: digits/1 (the default), digits/2 (a second release of it) and diabetes/1, each
pinned. Answers, errors, metadata and metrics for each; errors the same as the app's."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import (DIABETES_DIR, MODEL_DIR, another_version, free_port,
                            manifest_sha256, r2_score, run_litert)

from .conftest import LOCKED_DOWN, Service, wait_ready

pytestmark = pytest.mark.container

@pytest.fixture(scope="module")
def second_digits():
    """digits/2 in a folder the image's user (uid 10001) can read."""
    root = Path(tempfile.mkdtemp(prefix="ml-app-versions-"))
    try:
        folder = another_version(MODEL_DIR, root, "2")
        for path in (root, folder.parent, folder, *folder.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        yield folder
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def models(second_digits) -> dict[str, Path]:
    """The MODEL_URI entries, in order, and the host folder of each."""
    return {"/models/digits/1": MODEL_DIR, "/models/digits/2": second_digits,
            "/models/diabetes/1": DIABETES_DIR}


@pytest.fixture(scope="module")
def several(docker, image, models):
    port = free_port()
    cid = docker.run(image.tag, *LOCKED_DOWN, env={
        "PORT": str(port), "METRICS_FLUSH_SECONDS": "1",
        "MODEL_URI": ",".join(models),
        "MODEL_SHA256": ",".join(manifest_sha256(folder) for folder in models.values())},
        volumes={str(folder): f"{uri}:ro" for uri, folder in models.items()})
    try:
        url = f"http://127.0.0.1:{port}"
        yield Service(cid, port, url, wait_ready(docker, cid, url))
    finally:
        docker.remove(cid)


@pytest.fixture(scope="module")
def same_app(models):
    """The in-process app with the same models, for comparing error messages."""
    from app import create_app

    return create_app({"MODEL_URI": ",".join(str(f) for f in models.values()),
                       "METRICS_ENABLED": "false", "LOG_LEVEL": "ERROR"}).test_client()


def post(svc, path, body):
    return requests.post(f"{svc.url}{path}", json=body, timeout=30)


def test_each_model_answers_from_the_container(several, heldout, diabetes_heldout, models):
    x = diabetes_heldout.x
    r = post(several, "/v1/models/diabetes:predict", {"instances": x.tolist()})
    assert r.status_code == 200 and r.headers["X-Model-Name"] == "diabetes"
    served = np.asarray(r.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(served, run_litert(DIABETES_DIR, x), rtol=1e-6, atol=1e-5)
    recorded = json.loads((DIABETES_DIR / "manifest.json").read_text())["metrics"]
    assert r2_score(diabetes_heldout.y, served[:, 0]) == pytest.approx(recorded["heldout_r2"],
                                                                        abs=1e-3)
    digits = heldout.x_test[:50]
    for path, version in (("/v1/models/digits:predict", "2"), ("/invocations", "1"),
                          ("/v1/models/digits/versions/1:predict", "1")):
        r = post(several, path, {"instances": digits.tolist()})
        assert r.status_code == 200 and r.headers["X-Model-Version"] == version, path
        predicted = np.argmax(r.json()["predictions"], 1)
        assert (predicted == heldout.y_test[:50]).mean() >= 0.98
        np.testing.assert_allclose(r.json()["predictions"], run_litert(MODEL_DIR, digits),
                                   atol=1e-5)


@pytest.mark.parametrize("path, body", [
    ("/v1/models/diabetes:predict", {"instances": [[0] * 64]}),
    ("/v1/models/digits:predict", {"instances": [[0.1] * 10]}),
    ("/v1/models/diabetes:predict", {"instances": [{"pixels": [0.1] * 10}]}),
    ("/v1/models/diabetes/versions/1:predict", {"inputs": {"features": [[0.5] * 10]}}),
    ("/v1/models/diabetes/versions/2:predict", {"instances": [[0.1] * 10]}),
    ("/v1/models/cats:predict", {"instances": [[0.1] * 10]}),
    ("/invocations", {"instances": [[0.1] * 10]}),
], ids=["digits-to-diabetes", "diabetes-to-digits", "other-input-name", "out-of-range",
        "unknown-version", "unknown-model", "default-is-digits"])
def test_errors_name_the_model_and_match_the_app(several, same_app, path, body):
    r = post(several, path, body)
    expected = same_app.post(path, json=body)
    assert r.status_code == expected.status_code and r.status_code in (400, 404)
    assert r.json()["error"] == expected.json["error"]
    assert "not found; this server serves" in r.json()["error"] or "X-Model-Name" in r.headers


def test_metadata_status_and_readiness_of_each(several, models):
    meta = requests.get(f"{several.url}/v1/models/diabetes/metadata", timeout=10).json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert (list(sig["inputs"]), list(sig["outputs"])) == (["features"], ["progression"])
    assert meta["manifest"]["sha256"] == manifest_sha256(DIABETES_DIR)
    meta = requests.get(f"{several.url}/v1/models/digits/versions/1/metadata", timeout=10).json()
    assert meta["manifest"]["labels"] == [str(d) for d in range(10)]
    status = requests.get(f"{several.url}/v1/models/digits", timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    ready = requests.get(f"{several.url}/readyz", timeout=10).json()
    assert [(m["name"], m["version"], m["sha256"]) for m in ready["models"]] == [
        (*uri.split("/")[2:], manifest_sha256(folder)) for uri, folder in models.items()]


def test_metrics_and_logs_carry_the_model(docker, several):
    post(several, "/v1/models/diabetes:predict", {"instances": [[0.1] * 10]})
    post(several, "/v1/models/digits/versions/2:predict", {"instances": [[1] * 64]})
    deadline = time.monotonic() + 20
    while True:
        lines = [json.loads(ln) for ln in docker.logs(several.cid).splitlines()
                 if ln.startswith("{")]
        emf = {(e["Model"], e["ModelVersion"]) for e in lines if "_aws" in e}
        if {("diabetes", "1"), ("digits", "2")} <= emf or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {("diabetes", "1"), ("digits", "2")} <= emf
    requests_logged = {(e.get("path"), e.get("model"), e.get("model_version")) for e in lines}
    assert ("/v1/models/diabetes:predict", "diabetes", "1") in requests_logged
    loaded = [(e["model"], e["model_version"]) for e in lines if e.get("event") == "model_loaded"]
    # Each worker logs the three in order; the workers' lines interleave (first appearances).
    expected = [("digits", "1"), ("digits", "2"), ("diabetes", "1")]
    assert list(dict.fromkeys(loaded)) == expected, loaded
    assert all(loaded.count(e) == len(loaded) // 3 for e in expected), loaded


def test_custom_attributes_reach_another_model_through_nginx(several, diabetes_heldout):
    """SageMaker's InvokeEndpoint reaches /invocations only; its CustomAttributes header
    passes nginx and picks the model."""
    x = diabetes_heldout.x[:2]
    r = requests.post(f"{several.url}/invocations", json={"instances": x.tolist()}, timeout=30,
                      headers={"X-Amzn-SageMaker-Custom-Attributes": "tfs-model-name=diabetes"})
    assert r.status_code == 200 and r.headers["X-Model-Name"] == "diabetes"
    np.testing.assert_allclose(r.json()["predictions"], run_litert(DIABETES_DIR, x), atol=1e-5)
