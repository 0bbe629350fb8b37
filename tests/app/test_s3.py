"""Loading a version from s3:// against a real S3 API (moto's server on loopback)."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from app import ModelIntegrityError, create_app
from tests.conftest import MODEL_DIR, manifest_sha256, upload_version


def _client(env):
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")


def test_loads_and_serves_from_s3(s3_env, tmp_path, heldout):
    upload_version("models-ok", "models/digits/1", MODEL_DIR, s3_env)
    pin = manifest_sha256(MODEL_DIR)
    app = create_app({"MODEL_URI": "s3://models-ok/models/digits/1", "MODEL_SHA256": pin,
                      "MODEL_CACHE_DIR": str(tmp_path / "cache"), "METRICS_ENABLED": "false"})
    r = app.test_client().post("/v1/models/digits:predict", json={"instances": heldout.x_test[:4].tolist()})
    assert r.status_code == 200
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and sorted(p.name for p in cached[0].iterdir()) == [
        "manifest.json", "model.keras", "model.tflite"]


def test_second_start_reuses_the_verified_cache(s3_env, tmp_path):
    upload_version("models-cache", "m/1", MODEL_DIR, s3_env)
    settings = {"MODEL_URI": "s3://models-cache/m/1", "MODEL_CACHE_DIR": str(tmp_path / "c"),
                "METRICS_ENABLED": "false"}
    create_app(settings)
    # Replace the remote tflite: a cached, verified copy is still the manifest's bytes.
    _client(s3_env).put_object(Bucket="models-cache", Key="m/1/model.tflite", Body=b"changed")
    assert create_app(settings)


def test_tampered_object_in_s3_is_refused(s3_env, tmp_path, manifest):
    upload_version("models-bad", "models/digits/1", MODEL_DIR, s3_env)
    _client(s3_env).put_object(Bucket="models-bad", Key="models/digits/1/model.tflite", Body=b"not a model")
    with pytest.raises(ModelIntegrityError) as info:
        create_app({"MODEL_URI": "s3://models-bad/models/digits/1",
                    "MODEL_CACHE_DIR": str(tmp_path / "c"), "METRICS_ENABLED": "false"})
    message = str(info.value)
    assert "model.tflite: sha256 mismatch" in message
    assert manifest["files"]["model.tflite"]["sha256"] in message
    assert hashlib.sha256(b"not a model").hexdigest() in message


def test_missing_object_names_the_key(s3_env, tmp_path):
    upload_version("models-partial", "v/1", MODEL_DIR, s3_env)
    _client(s3_env).delete_object(Bucket="models-partial", Key="v/1/model.keras")
    with pytest.raises(ModelIntegrityError, match="s3://models-partial/v/1/model.keras: NoSuchKey"):
        create_app({"MODEL_URI": "s3://models-partial/v/1", "MODEL_CACHE_DIR": str(tmp_path / "c"),
                    "METRICS_ENABLED": "false"})


def test_missing_bucket_is_a_clear_error(s3_env, tmp_path):
    with pytest.raises(ModelIntegrityError, match="NoSuchBucket"):
        create_app({"MODEL_URI": "s3://no-such-bucket/x/1", "MODEL_CACHE_DIR": str(tmp_path / "c"),
                    "METRICS_ENABLED": "false"})


def test_a_download_that_never_finishes_fails_at_the_deadline(tmp_path):
    """The deadline holds whatever botocore does (here: a download that just hangs)."""
    import time

    from app.model_store import _bounded

    t0 = time.monotonic()
    with pytest.raises(ModelIntegrityError) as info:
        _bounded(lambda: time.sleep(30), "s3://b/models/digits/1", timeout=0.5)
    assert time.monotonic() - t0 < 2
    assert "s3://b/models/digits/1" in str(info.value) and "MODEL_FETCH_TIMEOUT" in str(info.value)


def test_errors_inside_the_deadline_are_raised_as_they_are(tmp_path):
    from app.model_store import _bounded

    def broken():
        raise ModelIntegrityError("s3://b/k: NoSuchKey")

    with pytest.raises(ModelIntegrityError, match="NoSuchKey"):
        _bounded(broken, "s3://b/k", timeout=5)
