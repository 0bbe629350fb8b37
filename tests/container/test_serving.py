"""The image serving the committed model version, locked down as on ECS: non-root,
read-only root filesystem with a tmpfs on /tmp, no capabilities, no privilege escalation."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests

from tests.app.test_bad_input import CASES
from tests.conftest import MODEL_DIR, run_litert
from tests.rawhttp import MALFORMED, SlowClients, exchange, p99, timed_predictions

from .conftest import LOCKED_DOWN, PREDICT

pytestmark = pytest.mark.container


def test_locked_down_container_runs_as_uid_10001_and_is_ready(docker, served):
    assert served.ready_seconds < 30
    host = docker.inspect(served.cid)["HostConfig"]
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["CapDrop"] == ["ALL"]
    # PID 1 is the launcher (app/server.py), and it (and nginx, granian) run as 10001
    status = docker("exec", served.cid, "cat", "/proc/1/status").stdout
    uid = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
    gid = next(ln for ln in status.splitlines() if ln.startswith("Gid:")).split()[1:]
    assert uid == ["10001"] * 4 and gid == ["10001"] * 4
    cmdline = docker("exec", served.cid, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
    assert "app.server" in cmdline
    processes = docker("exec", served.cid, "python3", "-c",
                       "import os\nfor p in os.listdir('/proc'):\n"
                       "    if p.isdigit():\n"
                       "        s = open(f'/proc/{p}/status').read().split('\\n')\n"
                       "        print(s[0].split()[1], [l for l in s if l.startswith('Uid:')][0].split()[1])"
                       ).stdout.split("\n")
    owners = dict(ln.split() for ln in processes if ln)
    assert "nginx" in owners and set(owners.values()) == {"10001"}, owners
    assert requests.get(f"{served.url}/readyz", timeout=5).json()["status"] == "ready"
    assert requests.get(f"{served.url}/healthz", timeout=5).status_code == 200


def test_only_tmp_is_writable(docker, served):
    code = ("import os\n"
            "for p in ('/srv/app/x', '/opt/venv/x', '/x', '/tmp/x'):\n"
            "    try:\n"
            "        open(p, 'w').close(); print(p, 'ok')\n"
            "    except OSError as e:\n"
            "        print(p, type(e).__name__)\n")
    out = docker("exec", served.cid, "python3", "-c", code).stdout.split("\n")
    results = dict(ln.split() for ln in out if ln)
    assert results["/tmp/x"] == "ok"
    assert all(results[p] != "ok" for p in ("/srv/app/x", "/opt/venv/x", "/x")), results


def test_docker_healthcheck_turns_healthy(docker, served):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = docker.inspect(served.cid)["State"]["Health"]
        if health["Status"] == "healthy":
            break
        time.sleep(0.5)
    assert health["Status"] == "healthy", health
    assert health["Log"][-1]["ExitCode"] == 0


def test_healthcheck_follows_bind(docker, start):
    """With BIND (host:port) instead of PORT the image's health check finds the server too."""
    svc = start(env={"MODEL_URI": "/model"}, volumes={str(MODEL_DIR): "/model:ro"},
                bind_host="127.0.0.1",
                args=(*LOCKED_DOWN, "--health-interval", "1s", "--health-start-period", "30s"))
    deadline = time.monotonic() + 30
    while (health := docker.inspect(svc.cid)["State"]["Health"])["Status"] != "healthy":
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    assert f"127.0.0.1:{svc.port}" in docker.logs(svc.cid)


def test_heldout_set_over_http_reaches_the_model_accuracy(served, heldout, manifest):
    x, y = heldout.x_test, heldout.y_test
    probabilities = []
    for start in range(0, len(x), 100):
        batch = x[start:start + 100]
        # alternate the two row formats the API takes: 8x8 nested and flat 64
        rows = batch.tolist() if start % 200 == 0 else batch.reshape(len(batch), 64).tolist()
        r = requests.post(f"{served.url}{PREDICT}", json={"instances": rows}, timeout=30)
        assert r.status_code == 200, r.text
        probabilities += r.json()["predictions"]
    p = np.asarray(probabilities, dtype=np.float32)
    assert p.shape == (len(x), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float((p.argmax(axis=1) == y).mean())
    assert len(x) == manifest["metrics"]["heldout_samples"]
    assert round(accuracy, 6) >= manifest["metrics"]["heldout_accuracy"], accuracy
    # and the trimmed runtime in the image computes what LiteRT computes on the host
    assert np.abs(p - run_litert(MODEL_DIR, x.astype(np.float32))).max() < 1e-5


def _http_kwargs(kwargs: dict) -> dict:
    """tests/app's test-client arguments, as arguments for requests."""
    headers = {"Content-Type": kwargs["content_type"]} if "content_type" in kwargs else {}
    headers.update(kwargs.get("headers", {}))
    data = kwargs.get("data", b"")
    return {"data": data.encode() if isinstance(data, str) else data, "headers": headers}


@pytest.mark.parametrize("path, kwargs", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_the_same_4xx_from_the_container_as_from_the_app(served, client, path, kwargs):
    expected = client.post(path, **kwargs)
    r = requests.post(f"{served.url}{path}", timeout=30, **_http_kwargs(kwargs))
    assert 400 <= r.status_code < 500
    assert r.status_code == expected.status_code
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] == expected.json["error"]


@pytest.mark.parametrize("method, path", [("get", PREDICT), ("put", PREDICT),
                                          ("delete", "/invocations"), ("post", "/healthz")])
def test_wrong_method_is_405(served, method, path):
    r = requests.request(method, f"{served.url}{path}", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"], r.headers
    assert r.json()["error"].startswith(f"method {method.upper()} is not allowed on {path}; use ")


def test_other_endpoints(served, heldout):
    row = heldout.x_test[0].reshape(64).tolist()
    assert requests.get(f"{served.url}/ping", timeout=10).status_code == 200
    r = requests.post(f"{served.url}/invocations", json={"instances": [row]}, timeout=10)
    assert r.status_code == 200 and np.argmax(r.json()["predictions"][0]) == heldout.y_test[0]
    status = requests.get(f"{served.url}/v1/models/digits", timeout=10)
    assert status.status_code == 200
    page = requests.get(f"{served.url}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]


def test_logs_are_json_lines(docker, served):
    lines = [ln for ln in docker.logs(served.cid).splitlines() if ln.strip()]
    # LiteRT's C++ prints one plain notice as it makes its CPU delegate; nothing else may
    # be plain text (the app's, granian's and nginx's lines are all JSON)
    plain = [ln for ln in lines if not ln.startswith("{")
             and ln != "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."]
    assert not plain, plain[:5]
    events = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert any(e.get("event") == "model_loaded" for e in events)


@pytest.mark.parametrize("raw, status", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_request_gets_a_json_4xx_from_the_container(served, raw, status):
    response = exchange(served.port, raw)
    assert response.status == status, response.raw[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] and b"Traceback" not in response.raw


def test_slow_clients_do_not_starve_the_container(docker, served):
    """64 slow-header and 64 slow-body clients: predictions keep succeeding fast and the
    image's own health check (every second here) keeps passing."""
    with SlowClients(served.port, 64, "header", limit=60) as heads, \
            SlowClients(served.port, 64, "body", limit=60) as bodies:
        time.sleep(1.0)
        results = timed_predictions(served.port, seconds=8)
        health = docker.inspect(served.cid)["State"]["Health"]
    assert heads.connected >= 64 and bodies.connected >= 64
    assert len(results) > 50 and {s for s, _ in results} == {200}
    assert p99([ms for _, ms in results]) < 100
    recent = health["Log"][-5:]
    assert health["Status"] == "healthy" and all(h["ExitCode"] == 0 for h in recent), health
