"""The real server: gunicorn with the repository's config, as `make run` and the image start it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port, serve_env, wait_for_http

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def start(port: int, **env) -> subprocess.Popen:
    # Output goes to files, not pipes: an unread pipe fills up (64 KiB of request logs)
    # and blocks the workers' writes, which would look like a hung server.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [GUNICORN, "-c", "app/gunicorn_conf.py", "app.wsgi:app"], cwd=ROOT,
        env=serve_env(**{"BIND": f"127.0.0.1:{port}", "MODEL_URI": str(MODEL_DIR), **env}),
        stdout=out, stderr=err)
    proc.output_files = (out, err)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    """Wait for exit; return (stdout, stderr)."""
    proc.wait(timeout=timeout)
    outputs = []
    for stream in proc.output_files:
        stream.seek(0)
        outputs.append(stream.read())
    return outputs[0], outputs[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def server():
    port = free_port()
    proc = start(port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_serves_predictions_with_json_logs(server, heldout):
    proc, url = server
    r = requests.post(f"{url}/v1/models/digits:predict", json={"instances": heldout.x_test[:2].tolist()},
                      timeout=5)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 0
    logs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(e.get("path") == "/v1/models/digits:predict" and e.get("status") == 200 for e in logs)
    # the metrics aggregated since the last flush are written when the worker exits
    emf = [e for e in logs if "_aws" in e]
    assert sum(e["PredictionRequests"] for e in emf) == 1 and emf[0]["Predictions"] == 2
    # gunicorn's own lines are JSON too, so CloudWatch filters on "level" see them
    gunicorn_lines = [json.loads(x) for x in err.splitlines() if x.startswith('{"time"')]
    assert any("Booting worker" in e["message"] for e in gunicorn_lines)


@pytest.mark.parametrize("env, words", [
    ({"MODEL_URI": "/nonexistent/model"}, ["no such folder"]),
    ({"MAX_BATCH_SIZE": "-1"}, ["MAX_BATCH_SIZE='-1'"]),
    ({"MODEL_PATH": "x"}, ["MODEL_PATH: not a setting", "did you mean"]),
    ({"GUNICORN_WORKER_CLASS": "eventlet"}, ["GUNICORN_WORKER_CLASS", "sync or gthread"]),
])
def test_bad_configuration_stops_start_up_with_a_clear_message(env, words):
    proc = start(free_port(), **env)
    try:
        _, err = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode != 0
    for word in words:
        assert word in err
    assert "Traceback" not in err


def test_tampered_model_refuses_to_start(model_copy):
    (model_copy / "model.tflite").write_bytes(b"tampered")
    port = free_port()
    proc = start(port, MODEL_URI=str(model_copy))
    try:
        _, err = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode != 0
    assert "model.tflite: sha256 mismatch" in err and "Traceback" not in err
    with pytest.raises(OSError):  # it never listened
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_sigterm_finishes_an_in_flight_request(server):
    """A request whose body is still arriving when SIGTERM lands is completed, not dropped."""
    proc, url = server
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"instances": [[1] * 64] * 64}).encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body[:half])
        time.sleep(0.3)  # the worker is now blocked reading the body
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[half:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert len(json.loads(response.split(b"\r\n\r\n", 1)[1])["predictions"]) == 64
    proc.wait(timeout=30)
    assert proc.returncode == 0


def test_sigterm_during_a_stream_of_requests_loses_no_accepted_request(server):
    proc, url = server
    results: list = []
    stop_at = time.monotonic() + 6
    payload = {"instances": [[3] * 64] * 8}

    def client():
        with requests.Session() as s:
            while time.monotonic() < stop_at:
                try:
                    r = s.post(f"{url}/v1/models/digits:predict", json=payload, timeout=10)
                    results.append(r.status_code)
                except requests.ConnectionError as exc:
                    results.append(type(exc).__name__)
                    time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    drained_in = time.monotonic() - t0
    for t in threads:
        t.join(timeout=15)
    statuses = [r for r in results if isinstance(r, int)]
    assert len(statuses) > 50 and set(statuses) == {200}   # every answered request succeeded
    assert proc.returncode == 0 and drained_in < 25        # within gunicorn's graceful timeout
