"""SageMaker's `serve` (app/serve.py, app/bin/serve): its conventions, its checks, and the
program itself run on the host as SageMaker would run it in the image."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from app.serve import PAYLOAD_LIMIT_BYTES, sagemaker_settings
from tests.conftest import MODEL_DIR, ROOT, VENV_BIN, free_port, serve_env, wait_for_http

SERVE = ROOT / "app" / "bin" / "serve"


@pytest.fixture
def model_dir(tmp_path) -> Path:
    target = tmp_path / "opt-ml-model"
    shutil.copytree(MODEL_DIR, target)
    return target


def test_defaults_port_model_and_body_limit(model_dir):
    add, problems = sagemaker_settings({"SAGEMAKER_BIND_TO_PORT": "9123"}, model_dir)
    assert problems == []
    assert add == {"BIND": "0.0.0.0:9123", "MODEL_URI": str(model_dir),
                   "MAX_BODY_BYTES": str(PAYLOAD_LIMIT_BYTES)}
    assert PAYLOAD_LIMIT_BYTES == 6 * 1024 * 1024


def test_given_settings_win_except_sagemakers_port(model_dir):
    env = {"MODEL_URI": "s3://bucket/models/digits/1", "MAX_BODY_BYTES": "2048", "PORT": "7000"}
    assert sagemaker_settings(env, model_dir) == ({}, [])
    add, _ = sagemaker_settings({**env, "SAGEMAKER_BIND_TO_PORT": "7001"}, model_dir)
    assert add == {"BIND": "0.0.0.0:7001"}        # the platform's port wins over PORT/BIND


def test_an_api_key_is_refused_since_invoke_endpoint_never_passes_it(model_dir):
    _, problems = sagemaker_settings({"API_KEY": "k" * 32}, model_dir)
    assert len(problems) == 1 and "API_KEY" in problems[0] and "401" in problems[0]
    assert "sagemaker:InvokeEndpoint" in problems[0]


@pytest.mark.parametrize("port", ["0", "65536", "80a", "", "-1"])
def test_bad_sagemaker_port_is_named(model_dir, port):
    _, problems = sagemaker_settings({"SAGEMAKER_BIND_TO_PORT": port}, model_dir)
    assert len(problems) == 1 and "SAGEMAKER_BIND_TO_PORT" in problems[0] and "1 to 65535" in problems[0]


def test_no_model_anywhere_says_what_to_set(tmp_path):
    _, problems = sagemaker_settings({}, tmp_path / "missing")
    assert "MODEL_URI is not set" in problems[0] and "ModelDataUrl" in problems[0]
    (tmp_path / "empty").mkdir()
    _, problems = sagemaker_settings({}, tmp_path / "empty")
    assert "no manifest.json" in problems[0] and "at its root" in problems[0]


def test_a_version_folder_nested_in_the_archive_is_pointed_out(tmp_path):
    shutil.copytree(MODEL_DIR, tmp_path / "model" / "digits" / "1")
    _, problems = sagemaker_settings({}, tmp_path / "model")
    assert "digits/1/manifest.json exists" in problems[0] and "tar -C" in problems[0]
    assert f"MODEL_URI={tmp_path / 'model' / 'digits' / '1'}" in problems[0]


def _serve(env: dict) -> subprocess.Popen:
    # as in the image: `serve` found on PATH, run from another working directory
    path = f"{SERVE.parent}:{VENV_BIN}:{os.environ['PATH']}"
    return subprocess.Popen(["serve"], cwd="/", env=serve_env(PATH=path, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_program_starts_the_front_and_drains_on_sigterm(model_dir):
    if shutil.which("nginx") is None and not os.environ.get("CI"):
        pytest.skip("the server's front is nginx, which is not installed here")
    port = free_port()
    proc = _serve({"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_URI": str(model_dir),
                   "SERVER_FRONT": "nginx"})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc=proc)
        r = requests.post(f"http://127.0.0.1:{port}/invocations", data=",".join(["0"] * 64),
                          headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv"
        assert len(r.text.strip().split(",")) == 10
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < 10
    assert f"0.0.0.0:{port}" in err and "drained" in err


@pytest.mark.parametrize("env, args, words", [
    ({"SAGEMAKER_BIND_TO_PORT": "http"}, [], ["SAGEMAKER_BIND_TO_PORT='http'"]),
    ({}, ["train"], ["serve takes no arguments", "'train'"]),
])
def test_serve_refuses_to_start_with_one_line(model_dir, env, args, words):
    proc = subprocess.run([str(SERVE), *args], cwd="/", capture_output=True, text=True, timeout=60,
                          env=serve_env(PATH=f"{VENV_BIN}:{os.environ['PATH']}",
                                        MODEL_URI=str(model_dir), **env))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0]
