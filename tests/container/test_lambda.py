"""The image as AWS Lambda runs it: the function's image_config replaces the entry point with
awslambdaric (the real runtime interface client, installed from PyPI) and the command with
the handler; Lambda's own uid (not the image's), a read-only root filesystem, /tmp writable,
Lambda's reserved environment variables, the model from S3 (moto's server on loopback).
The Runtime API it polls is tests/lambda_runtime.py's fake, on loopback, speaking Lambda's
endpoints and headers; the container shares the host's network to reach it."""

from __future__ import annotations

import base64
import json
import uuid

import boto3
import numpy as np
import pytest

from tests.app.test_bad_input import CASES
from tests.conftest import MODEL_DIR, manifest_sha256, upload_version
from tests.function_url import as_event, event
from tests.lambda_runtime import FakeRuntimeApi

pytestmark = pytest.mark.container

# What the infrastructure puts in the function's image_config (docs/lambda.md).
ENTRY_POINT = ["/opt/venv/bin/python3", "-m", "awslambdaric"]
COMMAND = ["app.lambda_handler.handler"]
LAMBDA_USER = "993:990"                 # Lambda runs images as its own unprivileged user
LAMBDA_ENV = {                          # Lambda's reserved variables, as a function sees them
    "AWS_LAMBDA_FUNCTION_NAME": "ml-app-dev", "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ml-app-dev",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[7]0123456789abcdef",
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "_HANDLER": COMMAND[0],
    "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime", "TZ": ":UTC",
    "LANG": "en_US.UTF-8", "AWS_SESSION_TOKEN": "testing",
}
MANIFEST_SHA256 = manifest_sha256(MODEL_DIR)


@pytest.fixture(scope="module")
def s3(moto_server):
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    upload_version("lambda-models", "models/digits/1", MODEL_DIR, env)
    upload_version("lambda-models", "tampered/digits/1", MODEL_DIR, env)
    data = bytearray((MODEL_DIR / "model.tflite").read_bytes())
    data[len(data) // 3] ^= 0x04
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").put_object(
        Bucket="lambda-models", Key="tampered/digits/1/model.tflite", Body=bytes(data))
    return env


def start_function(docker, image, api: FakeRuntimeApi, env: dict) -> str:
    """`docker run` the image as Lambda starts a function: returns the container id."""
    argv = ["run", "-d", "--network", "host", "--label", "ml-app-test=1",
            "--name", f"ml-app-test-lambda-{uuid.uuid4().hex[:10]}",
            "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=512m", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--user", LAMBDA_USER,
            "--entrypoint", ENTRY_POINT[0]]
    for key, value in {**LAMBDA_ENV, **env, "AWS_LAMBDA_RUNTIME_API": api.address}.items():
        argv += ["-e", f"{key}={value}"]
    cid = docker(*argv, image.tag, *ENTRY_POINT[1:], *COMMAND, timeout=60).stdout.strip()
    docker.started.append(cid)
    return cid


@pytest.fixture(scope="module")
def function(docker, image, s3):
    """One function instance, initialised (it has polled for its first event)."""
    with FakeRuntimeApi() as api:
        cid = start_function(docker, image, api, {**s3, "MODEL_URI": "s3://lambda-models/models/digits/1",
                                                  "MODEL_SHA256": MANIFEST_SHA256})
        try:
            yield api, cid
        finally:
            docker.remove(cid)


def test_predict_through_the_runtime_api(docker, function, heldout):
    api, cid = function
    ev = event("iam_predict")
    x, y = heldout.x_test[:16], heldout.y_test[:16]
    ev["body"] = json.dumps({"instances": x.tolist()})
    answer = api.invoke(ev)
    assert answer.kind == "response", answer.body[:2000]
    result = answer.json()
    assert result["statusCode"] == 200 and result["headers"]["Content-Type"] == "application/json"
    assert result["headers"]["X-Model-Version"] == "1"
    predictions = json.loads(result["body"])["predictions"]
    assert (np.argmax(predictions, axis=1) == y).mean() >= 0.9
    assert api.first_next_at is not None and not api.unexpected
    # the model was fetched into /tmp, the one writable place, and the root stays read-only
    listing = docker("exec", cid, "ls", "/tmp/ml-app-models").stdout
    assert listing.startswith("digits-1-")
    assert docker.inspect(cid)["HostConfig"]["ReadonlyRootfs"] is True


def test_base64_csv_in_csv_out(function):
    api, _ = function
    result = api.invoke(event("iam_invocations_csv")).json()
    assert result["statusCode"] == 200 and result["headers"]["Content-Type"] == "text/csv"
    assert [np.argmax([float(v) for v in line.split(",")]) for line in result["body"].splitlines()] == [0, 0]


def test_page_and_readiness_through_the_runtime_api(function):
    api, _ = function
    page = api.invoke(event("browser_get_page")).json()
    assert page["statusCode"] == 200 and "<html" in page["body"].lower()
    ready = event("browser_get_page")
    ready["rawPath"] = ready["requestContext"]["http"]["path"] = "/readyz"
    assert json.loads(api.invoke(ready).json()["body"])["status"] == "ready"


@pytest.fixture(scope="module")
def lambda_app():
    """The app as the function builds it (MAX_BODY_BYTES: the Function URL's 6 MB)."""
    from app import create_app

    return create_app({"MODEL_URI": str(MODEL_DIR), "METRICS_ENABLED": "false",
                       "MAX_BODY_BYTES": str(6 * 1024 * 1024)})


@pytest.mark.parametrize("path, kwargs", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_the_apps_4xx(function, lambda_app, path, kwargs):
    api, _ = function
    expected = lambda_app.test_client().post(path, **kwargs)
    result = api.invoke(as_event(path, kwargs)).json()
    assert result["statusCode"] == expected.status_code and 400 <= result["statusCode"] < 500
    assert json.loads(result["body"])["error"] == expected.json["error"]


def test_a_non_http_event_is_an_invocation_error_and_the_function_carries_on(function):
    api, _ = function
    answer = api.invoke({"Records": [{"eventSource": "aws:sqs", "body": "hello"}]})
    assert answer.kind == "error"
    error = answer.json()
    assert error["errorType"] == "UnsupportedEvent"
    assert "Function URL" in error["errorMessage"] and "keys Records" in error["errorMessage"]
    # the next request is served as usual
    assert api.invoke(event("iam_predict")).json()["statusCode"] == 200


@pytest.mark.parametrize("env, error_type, words", [
    ({"MODEL_URI": "s3://lambda-models/tampered/digits/1"}, "ModelIntegrityError",
     ["model.tflite", "sha256 mismatch"]),
    ({"MODEL_URI": "s3://lambda-models/models/digits/1", "MODEL_SHA256": "0" * 64},
     "ModelIntegrityError", ["manifest.json", "MODEL_SHA256"]),
    ({"MODEL_URI": "s3://lambda-models/models/digits/1", "MAX_BATCH_SIZE": "0"}, "ConfigError",
     ["MAX_BATCH_SIZE='0'", "from 1 to 10000"]),
], ids=["tampered-model", "wrong-pin", "bad-setting"])
def test_a_failed_init_is_reported_to_lambda_naming_the_cause(docker, image, s3, env, error_type, words):
    with FakeRuntimeApi() as api:
        cid = start_function(docker, image, api, {**s3, **env})
        try:
            failure = api.init_error(timeout=60)
            code = docker.wait_exit(cid, 60)
        finally:
            logs = docker.logs(cid)
            docker.remove(cid)
    assert failure.headers["lambda-runtime-function-error-type"] == error_type
    error = failure.json()
    assert error["errorType"] == error_type
    for word in words:
        assert word in error["errorMessage"], error["errorMessage"]
    assert code != 0 and api.first_next_at is None, logs[-2000:]   # never asked for an event


def test_a_body_lambda_sent_base64_round_trips_byte_for_byte(function):
    """A CSV body with CRLF line ends and a trailing blank line, as Windows tools send it."""
    api, _ = function
    ev = event("iam_invocations_csv")
    rows = "\r\n".join(",".join(["16"] * 64) for _ in range(3)) + "\r\n\r\n"
    ev["body"] = base64.b64encode(rows.encode()).decode()
    result = api.invoke(ev).json()
    assert result["statusCode"] == 200 and len(result["body"].splitlines()) == 3
