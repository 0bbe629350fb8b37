"""Shared fixtures, in the style of the Flask tutorial: ``app`` and ``client`` built by the
factory from an explicit settings mapping (never the developer's environment)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
DIABETES_DIR = ROOT / "model" / "artifacts" / "diabetes" / "1"
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


@dataclass(frozen=True)
class Heldout:
    x: np.ndarray
    y: np.ndarray


@pytest.fixture(scope="session")
def diabetes_heldout(tmp_path_factory) -> Heldout:
    """diabetes/1's held-out patients: exactly the inputs its release proved parity on (the
    bytes' sha256 is the one the manifest's parity record names)."""
    from model.examples.diabetes import load_split

    _, x_test, _, y_test = load_split()
    saved = tmp_path_factory.mktemp("diabetes") / "heldout.npy"
    np.save(saved, x_test)
    recorded = json.loads((DIABETES_DIR / "manifest.json").read_text())["parity"]["inputs"]
    assert f"sha256 {hashlib.sha256(saved.read_bytes()).hexdigest()}" in recorded
    return Heldout(x_test, y_test)


def run_litert(folder: Path, x: np.ndarray) -> np.ndarray:
    """What LiteRT computes for ``x`` with the version folder's model.tflite, on the host."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(folder / "model.tflite"), num_threads=1)
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    it.resize_tensor_input(inp, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp, x)
    it.invoke()
    return it.get_tensor(out)


def r2_score(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def another_version(source: Path, target_root: Path, version: str) -> Path:
    """``source`` released again as ``version`` under ``target_root/<name>/<version>``: the
    same files, a manifest naming the new version (so its own sha256). What a second
    `make release` of the same model gives the service, without TensorFlow."""
    manifest = json.loads((source / "manifest.json").read_text())
    target = target_root / manifest["name"] / version
    shutil.copytree(source, target)
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def manifest_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


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
