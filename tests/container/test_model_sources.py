"""Where the container gets its model: s3:// (moto's server on loopback, a real S3 API),
a mounted folder; and what it does with bytes that do not match the manifest: exit non-zero,
before serving, with the hash error in its logs."""

from __future__ import annotations

import hashlib

import boto3
import pytest
import requests

from tests.conftest import DIABETES_DIR, MODEL_DIR, manifest_sha256, upload_version
from tests.rawhttp import black_hole

from .conftest import LOCKED_DOWN, PREDICT

pytestmark = pytest.mark.container

EXIT_TIMEOUT = 60
MANIFEST_SHA256 = manifest_sha256(MODEL_DIR)


@pytest.fixture(scope="module")
def s3(moto_server):
    """Credentials for moto plus a bucket holding a good and a tampered copy of version 1."""
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    upload_version("container-models", "models/digits/1", MODEL_DIR, env)
    upload_version("container-models", "models/diabetes/1", DIABETES_DIR, env)
    upload_version("container-models", "tampered/digits/1", MODEL_DIR, env)
    data = bytearray((MODEL_DIR / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01              # one bit, mid-file
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").put_object(
        Bucket="container-models", Key="tampered/digits/1/model.tflite", Body=bytes(data))
    return env


def test_loads_from_s3_and_serves(start, s3, heldout):
    svc = start(env={**s3, "MODEL_URI": "s3://container-models/models/digits/1",
                     "MODEL_SHA256": MANIFEST_SHA256})
    x, y = heldout.x_test[:32], heldout.y_test[:32]
    r = requests.post(f"{svc.url}{PREDICT}", json={"instances": x.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    predicted = [max(range(10), key=p.__getitem__) for p in r.json()["predictions"]]
    assert sum(int(a == b) for a, b in zip(predicted, y)) >= 31


def test_loads_two_models_from_s3_as_a_stack_deploys_them(start, s3, heldout):
    """The task definition's MODEL_URI and MODEL_SHA256 for a stack with two models."""
    svc = start(env={**s3, "MODEL_URI": "s3://container-models/models/digits/1,"
                                        "s3://container-models/models/diabetes/1",
                     "MODEL_SHA256": f"{MANIFEST_SHA256},{manifest_sha256(DIABETES_DIR)}"})
    r = requests.post(f"{svc.url}/v1/models/diabetes:predict", json={"instances": [[0.0] * 10]},
                      timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 1
    r = requests.post(f"{svc.url}{PREDICT}", json={"instances": heldout.x_test[:8].tolist()},
                      timeout=30)
    assert r.status_code == 200 and r.headers["X-Model-Name"] == "digits"
    ready = requests.get(f"{svc.url}/readyz", timeout=10).json()
    assert [m["name"] for m in ready["models"]] == ["digits", "diabetes"]


def test_a_wrong_pin_on_the_second_model_stops_the_container(docker, start, s3):
    svc = start(env={**s3, "MODEL_URI": "s3://container-models/models/digits/1,"
                                        "s3://container-models/models/diabetes/1",
                     "MODEL_SHA256": f"{MANIFEST_SHA256},{MANIFEST_SHA256}"}, wait=False)
    _assert_refused(docker, svc, "s3://container-models/models/diabetes/1/manifest.json",
                    "sha256 mismatch", MANIFEST_SHA256)


def _assert_refused(docker, svc, *words: str) -> str:
    code = docker.wait_exit(svc.cid, EXIT_TIMEOUT)
    logs = docker.logs(svc.cid)
    assert code != 0, logs
    for word in words:
        assert word in logs, f"{word!r} not in the logs:\n{logs[-3000:]}"
    assert "Spawning worker" not in logs, "a worker started: the check must come first"
    return logs


def test_tampered_object_in_s3_exits_non_zero_with_the_hash_error(docker, start, s3, manifest):
    svc = start(env={**s3, "MODEL_URI": "s3://container-models/tampered/digits/1"}, wait=False)
    logs = _assert_refused(docker, svc, "sha256 mismatch", "model.tflite")
    assert manifest["files"]["model.tflite"]["sha256"] in logs


def test_tampered_mounted_file_exits_non_zero_with_the_hash_error(docker, start, model_copy, manifest):
    path = model_copy / "model.tflite"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    model_copy.chmod(0o755)
    svc = start(env={"MODEL_URI": "/model"}, volumes={str(model_copy): "/model:ro"}, wait=False)
    logs = _assert_refused(docker, svc, "sha256 mismatch", "model.tflite")
    assert hashlib.sha256(bytes(data)).hexdigest() in logs


def test_wrong_pin_exits_non_zero_naming_the_manifest(docker, start):
    svc = start(env={"MODEL_URI": "/model", "MODEL_SHA256": "0" * 64},
                volumes={str(MODEL_DIR): "/model:ro"}, wait=False)
    _assert_refused(docker, svc, "sha256 mismatch", MANIFEST_SHA256)


def test_without_a_model_it_exits_non_zero_saying_what_to_set(docker, start):
    svc = start(env={}, wait=False)
    _assert_refused(docker, svc, "MODEL_URI")


def test_model_that_verifies_but_does_not_load_exits_3_with_one_line(docker, start, model_copy):
    import json

    from app.manifest import file_entry

    (model_copy / "model.tflite").write_bytes(b"not a flatbuffer at all" * 10)
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["files"]["model.tflite"] = file_entry(model_copy / "model.tflite")
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    model_copy.chmod(0o755)
    svc = start(env={"MODEL_URI": "/model"}, volumes={str(model_copy): "/model:ro"}, wait=False)
    assert docker.wait_exit(svc.cid, EXIT_TIMEOUT) == 3
    lines = [ln for ln in docker.logs(svc.cid).splitlines() if ln.strip() and "XNNPACK" not in ln]
    assert len(lines) == 1 and "LiteRT cannot load it" in lines[0], lines


def test_unreachable_s3_fails_within_bounds(docker, start):
    """A task that cannot reach S3 must fail its start, not hang."""
    svc = start(env={"MODEL_URI": "s3://container-models/models/digits/1",
                     "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
                     "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"},
                args=LOCKED_DOWN, wait=False)
    _assert_refused(docker, svc, "s3://container-models/models/digits/1/manifest.json")


def test_s3_that_accepts_but_never_answers_fails_inside_the_grace_period(docker, start):
    """ECS gives a task 60 s to become healthy; with the default MODEL_FETCH_TIMEOUT (20 s)
    the container exits 3 well before, with one line naming the URI and the cause."""
    import time

    uri = "s3://container-models/models/digits/1"
    with black_hole() as endpoint:
        t0 = time.monotonic()
        svc = start(env={"MODEL_URI": uri, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x",
                         "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"},
                    wait=False)
        code = docker.wait_exit(svc.cid, EXIT_TIMEOUT)
        took = time.monotonic() - t0
    lines = [ln for ln in docker.logs(svc.cid).splitlines() if ln.strip()]
    assert code == 3 and took < 30, (code, took, lines)
    assert len(lines) == 1 and uri in lines[0], lines
