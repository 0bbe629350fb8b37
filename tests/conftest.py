"""Shared fixtures, in the style of the Flask tutorial: ``app`` and ``client`` built by the
factory from an explicit settings mapping (never the developer's environment)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    import requests

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s (last error: {last})")


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((MODEL_DIR / "manifest.json").read_text())


@pytest.fixture(scope="session")
def heldout():
    from model.data import load_split

    return load_split()


@pytest.fixture
def settings(tmp_path) -> dict:
    """Settings for create_app; tests add or override keys."""
    return {"MODEL_URI": str(MODEL_DIR), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "METRICS_ENABLED": "false"}


@pytest.fixture
def app(settings):
    from app import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A writable copy of the released version, for tampering."""
    target = tmp_path / "digits-1"
    shutil.copytree(MODEL_DIR, target)
    return target


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 API (moto's server) on loopback, started and stopped with the session."""
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/", timeout=30, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Point boto3 at the moto server with throwaway credentials."""
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return env


def upload_version(bucket: str, prefix: str, folder: Path, env: dict) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for path in folder.iterdir():
        s3.upload_file(str(path), bucket, f"{prefix}/{path.name}")


def serve_env(**extra: str) -> dict:
    """Environment for a server subprocess: the test's, minus our own settings."""
    from app.config import OUR_PREFIXES

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(OUR_PREFIXES) and k not in ("PORT", "BIND", "WEB_CONCURRENCY")}
    env.update(extra)
    return env
