"""The real server: `python -m app.server` (nginx + granian), as `make run` and the image
start it. Needs nginx on the host: skipped with the reason where it is absent, a failure
under CI (`.ci/run` installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests

from tests.conftest import (DIABETES_DIR, MODEL_DIR, ROOT, another_version, free_port,
                            manifest_sha256, run_litert, serve_env, wait_for_http)
from tests.rawhttp import (MALFORMED, PREDICT, SlowClients, black_hole, exchange, p99,
                           timed_predictions)


@pytest.fixture(scope="module", autouse=True)
def nginx_installed():
    if shutil.which("nginx") is None:
        if os.environ.get("CI") or os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail("nginx is not installed; .ci/run installs it (apt-get install nginx)",
                        pytrace=False)
        pytest.skip("the server's front is nginx, which is not installed here "
                    "(apt-get install nginx)")


def start(port: int, **env) -> subprocess.Popen:
    # Output goes to files, not pipes: an unread pipe fills up (64 KiB of request logs)
    # and blocks the writers, which would look like a hung server.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.server"], cwd=ROOT,
        env=serve_env(**{"BIND": f"127.0.0.1:{port}", "MODEL_URI": str(MODEL_DIR),
                         "SERVER_FRONT": "nginx", **env}),
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
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
    r = requests.post(f"{url}{PREDICT}", json={"instances": heldout.x_test[:2].tolist()},
                      timeout=5)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    assert (r.headers["X-Model-Name"], r.headers["X-Model-Version"]) == ("digits", "1")
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 0
    logs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(e.get("path") == PREDICT and e.get("status") == 200 for e in logs)
    # the metrics aggregated since the last flush are written when the worker exits
    emf = [e for e in logs if "_aws" in e]
    assert sum(e["PredictionRequests"] for e in emf) == 1 and emf[0]["Predictions"] == 2
    # the servers' own lines are JSON too, so CloudWatch filters on "level" see them
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any("Started worker" in e["message"] for e in lines)
    assert any(e["message"] == "drained" for e in lines)


def test_one_process_serves_two_models_and_two_versions(tmp_path, heldout, diabetes_heldout):
    """digits/1 (the default, pinned), digits/2 and diabetes/1 (pinned) from one server: each
    answers its own requests, refuses the other's, and is named in headers, logs and metrics."""
    import numpy as np

    digits_2 = another_version(MODEL_DIR, tmp_path, "2")
    port = free_port()
    proc = start(port, MODEL_URI=f"{MODEL_DIR},{digits_2},{DIABETES_DIR}",
                 MODEL_SHA256=f"{manifest_sha256(MODEL_DIR)},,{manifest_sha256(DIABETES_DIR)}")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", proc=proc)
        x = diabetes_heldout.x
        r = requests.post(f"{url}/v1/models/diabetes:predict", json={"instances": x.tolist()},
                          timeout=10)
        assert r.status_code == 200 and r.headers["X-Model-Name"] == "diabetes"
        np.testing.assert_allclose(r.json()["predictions"], run_litert(DIABETES_DIR, x), atol=1e-5)
        for path, version in ((PREDICT, "2"), ("/v1/models/digits/versions/1:predict", "1"),
                              ("/invocations", "1")):
            r = requests.post(f"{url}{path}", json={"instances": heldout.x_test[:8].tolist()},
                              timeout=10)
            assert r.status_code == 200 and r.headers["X-Model-Version"] == version, path
            assert list(np.argmax(r.json()["predictions"], 1)) == list(heldout.y_test[:8])
        # nginx passes /invocations' CustomAttributes (SageMaker hands them to the caller).
        assert r.headers["X-Amzn-SageMaker-Custom-Attributes"] == \
            f"tfs-model-name=digits,tfs-model-version=1,manifest-sha256={manifest_sha256(MODEL_DIR)}"
        wrong = requests.post(f"{url}/v1/models/diabetes:predict",
                              json={"instances": heldout.x_test[:1].tolist()}, timeout=10)
        assert wrong.status_code == 400 and "'features' of model 'diabetes'" in wrong.json()["error"]
        missing = requests.post(f"{url}/v1/models/diabetes/versions/2:predict",
                                json={"instances": x[:1].tolist()}, timeout=10)
        assert missing.status_code == 404 and "serves version 1 of it" in missing.json()["error"]
        meta = requests.get(f"{url}/v1/models/diabetes/metadata", timeout=10).json()
        assert meta["manifest"]["sha256"] == manifest_sha256(DIABETES_DIR)
        status = requests.get(f"{url}/v1/models/digits", timeout=10).json()
        assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    finally:
        stop(proc)
    out, _ = finish(proc)
    assert proc.returncode == 0
    logs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    loaded = [(e["model"], e["model_version"], e["default"]) for e in logs
              if e.get("event") == "model_loaded"]
    # Each worker logs the three in order; two workers' lines interleave, so the order is of
    # first appearances (a later one in any worker follows an earlier one in the same).
    expected = [("digits", "1", True), ("digits", "2", False), ("diabetes", "1", False)]
    assert list(dict.fromkeys(loaded)) == expected, loaded
    assert all(loaded.count(e) == len(loaded) // 3 for e in expected), loaded
    emf = {}
    for e in logs:
        if "_aws" in e:
            emf[e["Model"], e["ModelVersion"]] = emf.get((e["Model"], e["ModelVersion"]), 0) \
                + e["PredictionRequests"]
    # the version that does not exist is counted apart, never under the URL's own text
    assert emf == {("diabetes", "1"): 2, ("digits", "2"): 1, ("digits", "1"): 2,
                   ("(none)", "(none)"): 1}


@pytest.mark.parametrize("raw, status", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_request_gets_a_json_4xx(server, raw, status):
    _, url = server
    response = exchange(int(url.rsplit(":", 1)[1]), raw)
    assert response.status == status, response.raw[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert "Location" not in response.headers and b"Traceback" not in response.raw


def test_no_malformed_request_leaves_a_traceback_or_a_5xx_in_the_log(server):
    proc, url = server
    port = int(url.rsplit(":", 1)[1])
    for _, raw, _ in MALFORMED:
        exchange(port, raw)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert "Traceback" not in out + err
    statuses = [json.loads(x).get("status") for x in out.splitlines() if x.startswith("{")]
    assert statuses and not [s for s in statuses if s and s >= 500]


def test_request_id_and_forwarded_for_are_bounded(server):
    proc, url = server
    good = requests.get(f"{url}/healthz", headers={"X-Request-Id": "abc-123"}, timeout=5)
    assert good.headers["X-Request-Id"] == "abc-123"
    for bad in ("x" * 500, "has space", "é"):
        r = requests.get(f"{url}/healthz", headers={"X-Request-Id": bad.encode()}, timeout=5)
        assert r.status_code == 200 and len(r.headers["X-Request-Id"]) == 32   # a new uuid
    requests.get(f"{url}/healthz", headers={"X-Forwarded-For": "1.2.3.4" + ", 5.6.7.8" * 200},
                 timeout=5)
    proc.send_signal(signal.SIGTERM)
    out, _ = finish(proc)
    clients = [json.loads(x)["client"] for x in out.splitlines()
               if x.startswith('{"time"') and '"client"' in x]
    long = [c for c in clients if c.startswith("1.2.3.4")]
    assert long and len(long[0]) < 300 and long[0].endswith("chars)")


def test_slow_clients_do_not_starve_normal_ones(server):
    """64 clients sending a head one line a second and 64 sending a body one byte a second:
    a normal client's predictions keep succeeding, fast (the full 30 s run is `make bench`)."""
    _, url = server
    port = int(url.rsplit(":", 1)[1])
    with SlowClients(port, 64, "header", limit=60) as heads, \
            SlowClients(port, 64, "body", limit=60) as bodies:
        time.sleep(1.0)
        results = timed_predictions(port, seconds=8)
        ready = requests.get(f"{url}/readyz", timeout=2).status_code
    assert heads.connected >= 64 and bodies.connected >= 64
    statuses = [s for s, _ in results]
    assert len(results) > 50 and set(statuses) == {200}, statuses[:20]
    assert p99([ms for _, ms in results]) < 100
    assert ready == 200


def test_header_timeout_closes_a_slow_head(server):
    _, url = server
    port = int(url.rsplit(":", 1)[1])
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - t0 < 25:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(1)
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    assert closed and time.monotonic() - t0 < 15     # SERVER_HEADER_TIMEOUT is 10 s


def test_nginx_logs_what_it_answers_itself_with_latency_in_milliseconds():
    """A body that stalls past SERVER_BODY_TIMEOUT (1 s) is answered 408 by nginx, which logs
    it: as JSON, with latency_ms in milliseconds like the app's lines (not seconds)."""
    port = free_port()
    proc = start(port, SERVER_BODY_TIMEOUT="1")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        # nginx resets a timed-out connection (reset_timedout_connection): no answer to read
        exchange(port, f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: "
                       "application/json\r\nContent-Length: 100\r\n\r\n{", timeout=10)
    finally:
        stop(proc)
    out, _ = finish(proc)
    lines = [json.loads(x) for x in out.splitlines() if '"source":"nginx"' in x]
    timed_out = [e for e in lines if e["status"] == 408]
    assert timed_out and 900 <= timed_out[0]["latency_ms"] < 5000, lines


# exit 2: a setting is wrong (before any model is read); 3: a model version is (docs/api.md)
@pytest.mark.parametrize("env, code, words", [
    ({"MODEL_URI": "/nonexistent/model"}, 3, ["no such folder"]),
    ({"MODEL_URI": f"{MODEL_DIR},/nonexistent/model"}, 3, ["/nonexistent/model", "no such folder"]),
    ({"MODEL_URI": f"{MODEL_DIR},{DIABETES_DIR}", "MODEL_SHA256": "0" * 64}, 2,
     ["MODEL_SHA256", "has 1 pin but MODEL_URI lists 2"]),
    ({"MODEL_URI": f"{MODEL_DIR},{DIABETES_DIR}", "MODEL_SHA256": "," + "0" * 64}, 3,
     [str(DIABETES_DIR), "sha256 mismatch", "ml-app:models"]),
    ({"MAX_BATCH_SIZE": "-1"}, 2, ["MAX_BATCH_SIZE='-1'"]),
    ({"MODEL_PATH": "x"}, 2, ["MODEL_PATH: not a setting", "did you mean"]),
    ({"SERVER_FRONT": "eventlet"}, 2, ["SERVER_FRONT", "nginx, auto, none"]),
    ({"GUNICORN_WORKER_CLASS": "sync"}, 2, ["GUNICORN_WORKER_CLASS", "no longer"]),
])
def test_bad_configuration_stops_start_up_with_one_line(env, code, words):
    proc = start(free_port(), **env)
    try:
        _, err = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in err


def test_tampered_model_refuses_to_start(model_copy):
    (model_copy / "model.tflite").write_bytes(b"tampered")
    port = free_port()
    proc = start(port, MODEL_URI=str(model_copy))
    try:
        _, err = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode == 3
    assert "model.tflite: sha256 mismatch" in err and "Traceback" not in err
    with pytest.raises(OSError):  # it never listened
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_model_that_verifies_but_does_not_load_is_one_line_every_time(model_copy):
    """Bytes that match the manifest but are not a model: exit 3, one line, three runs."""
    from app.manifest import file_entry

    (model_copy / "model.tflite").write_bytes(b"TFL3 but not really a flatbuffer" * 10)
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["files"]["model.tflite"] = file_entry(model_copy / "model.tflite")
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    for _ in range(3):
        proc = start(free_port(), MODEL_URI=str(model_copy))
        try:
            _, err = finish(proc)
        finally:
            stop(proc)
        lines = [ln for ln in err.splitlines() if ln.strip() and "XNNPACK" not in ln]
        assert proc.returncode == 3, err
        assert len(lines) == 1 and "LiteRT cannot load it" in lines[0], err
        assert "Traceback" not in err


def test_s3_that_accepts_but_never_answers_fails_in_bounded_time():
    """An endpoint that accepts connections and never answers: start-up fails within
    MODEL_FETCH_TIMEOUT with one line naming the URI, instead of hanging."""
    uri = "s3://models/digits/1"
    with black_hole() as endpoint:
        t0 = time.monotonic()
        proc = start(free_port(), MODEL_URI=uri, MODEL_FETCH_TIMEOUT="6", AWS_ENDPOINT_URL=endpoint,
                     AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
        try:
            _, err = finish(proc, timeout=30)
        finally:
            stop(proc)
        took = time.monotonic() - t0
    assert proc.returncode == 3 and took < 12, (took, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and uri in lines[0] and "6 s" in lines[0], err


def test_sigterm_finishes_an_in_flight_request(server):
    """A request whose body is still arriving when SIGTERM lands is completed, not dropped."""
    proc, url = server
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"instances": [[1] * 64] * 64}).encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body[:half])
        time.sleep(0.3)  # nginx is now reading the body
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
                    r = s.post(f"{url}{PREDICT}", json=payload, timeout=10)
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
    assert proc.returncode == 0 and drained_in < 25        # within SERVER_GRACEFUL_TIMEOUT


def test_without_nginx_granian_serves_directly():
    """SERVER_FRONT=none (development): the same app, answered by granian alone."""
    port = free_port()
    proc = start(port, SERVER_FRONT="none")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        r = requests.post(f"http://127.0.0.1:{port}{PREDICT}", json={"instances": [[0] * 64]},
                          timeout=5)
        assert r.status_code == 200 and r.headers["X-Model-Name"] == "digits"
        assert "server" not in {k.lower(): v for k, v in r.headers.items()} or \
            "nginx" not in r.headers.get("server", "")
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_rendered_nginx_config_carries_the_settings_and_is_valid(tmp_path):
    from app.config import load_server_settings, load_settings
    from app.server import render_nginx

    settings = load_settings({"MAX_BODY_BYTES": "4096"})
    server = load_server_settings({"BIND": "127.0.0.1:9", "SERVER_HEADER_TIMEOUT": "7",
                                   "SERVER_BODY_TIMEOUT": "8", "SERVER_KEEPALIVE": "90",
                                   "SERVER_GRACEFUL_TIMEOUT": "20"})
    sockets = [tmp_path / "app-0.sock", tmp_path / "app-1.sock"]
    text = render_nginx(settings, server, tmp_path, sockets)
    assert "{{" not in text
    for line in ("listen 127.0.0.1:9 ", "client_header_timeout 7s;", "client_body_timeout 8s;",
                 "keepalive_timeout 90s;", "client_max_body_size 4096;",
                 "worker_shutdown_timeout 18s;", f"pid {tmp_path}/nginx.pid;"):
        assert line in text, line
    # one upstream server per app worker's socket, none taken out of rotation on a refusal
    upstream = re.search(r"upstream app \{([^}]*)\}", text).group(1)
    assert re.findall(r"server (\S+) max_fails=0;", upstream) == [f"unix:{s}" for s in sockets]
    assert f"server unix:{tmp_path}/app-0.sock max_fails=0;" in render_nginx(  # bench's default
        settings, server, tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    check = subprocess.run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_nginx_passes_on_exactly_the_request_headers_the_app_reads():
    """app/nginx.conf's rule: the app sees only the headers it reads, each checked for control
    characters. A header the app starts to read must be added there; one it stops reading
    must go (the conf forwarded SageMaker's Target-Model, which nothing read)."""
    read = set()
    for path in (ROOT / "app").glob("*.py"):
        if path.name != "function_url.py":          # it builds environs; it reads no header
            text = path.read_text()
            read |= set(re.findall(r'"HTTP_([A-Z_]+)"', text))
            read |= {"CONTENT_TYPE"} if '"CONTENT_TYPE"' in text else set()
    conf = (ROOT / "app" / "nginx.conf").read_text()
    passed = {name.upper().replace("-", "_")
              for name in re.findall(r"proxy_set_header ([\w-]+) ", conf)} - {"HOST", "CONNECTION"}
    checked = {name.upper() for name in re.findall(
        r"\$http_(\w+)", re.search(r'map "([^"]+)" \$bad_header_value', conf).group(1))}
    assert "X_API_KEY" in read and read == passed == checked, (read, passed, checked)


def test_a_worker_socket_counts_as_ready_only_once_it_accepts(tmp_path):
    """granian creates its socket file before it listens; nginx must not start before then
    (a refused connection took the worker out of nginx's rotation for 10 s: 503s at start)."""
    from app.server import _wait_for_socket

    class Running:
        def poll(self):
            return None

    path = tmp_path / "app-0.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))                      # the file exists, nothing listens yet
        assert path.exists()
        assert _wait_for_socket(path, Running(), timeout=0.3) is False
        sock.listen(1)
        assert _wait_for_socket(path, Running(), timeout=0.3) is True



# --- signals and process lifetime ---------------------------------------------------------

def never_blocks_when_reentered(handler, timeout: float = 5) -> bool:
    """Call ``handler`` as a signal would, and at every line it runs (its own and the library
    code it calls) call it again, as a second signal landing there would: `make run` forwards
    SIGTERM a moment after the one sent to its process group, and a Python handler runs
    between any two bytecodes. False if that ever waits forever (a lock the handler holds)."""
    reentered: set = set()

    def trace(frame, event, arg):
        if event == "line" and not reentered_now and (frame.f_code, frame.f_lineno) not in reentered:
            reentered.add((frame.f_code, frame.f_lineno))
            reentered_now.append(True)
            handler(signal.SIGTERM, None)
            reentered_now.pop()
        return trace

    reentered_now: list = []

    def run():
        sys.settrace(trace)
        try:
            handler(signal.SIGTERM, None)
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=run, daemon=True)   # a deadlocked one is left behind
    thread.start()
    thread.join(timeout)
    return not thread.is_alive() and len(reentered) > 0


def test_a_second_signal_during_the_first_is_recorded_and_never_blocks():
    from app.server import StopRequest

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = StopRequest()
        assert signal.getsignal(signal.SIGTERM) == stop.record
        assert not stop
        assert never_blocks_when_reentered(stop.record)
        assert stop and set(stop.signals) == {signal.SIGTERM} and len(stop.signals) >= 2
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_the_reentry_check_catches_the_handler_that_hung_the_supervisor():
    """The handler before StopRequest, threading.Event().set: CI's browser tests found its
    supervisor never draining, and py-spy showed it re-entered inside Event.set."""
    stopping = threading.Event()
    assert not never_blocks_when_reentered(lambda signum, frame: stopping.set(), timeout=2)


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (granian's workers are its grandchildren)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"      # a zombie has exited; its new parent may not reap it


def test_killing_the_supervisor_stops_nginx_and_granian_and_frees_the_port():
    """kill -9 (or the OOM killer) on the supervisor: its children, in sessions of their own,
    are told to stop (PR_SET_PDEATHSIG) instead of serving on unsupervised on the port."""
    port = free_port()
    proc = start(port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        tree = _descendants(proc.pid)
        names = {open(f"/proc/{pid}/comm").read().strip() for pid in tree}
        assert "nginx" in names and len(tree) >= 5, names   # nginx x2, granian x2 + workers
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
        time.sleep(0.1)
    assert not [pid for pid in tree if _alive(pid)]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_child_whose_supervisor_is_already_gone_exits_at_once():
    """The supervisor died between the fork and the prctl: the kernel will not signal the
    child then, so it must see the new parent and exit itself, before becoming nginx."""
    from app.server import EXIT_CHILD, die_with_parent

    pid = os.fork()
    if pid == 0:
        try:
            die_with_parent(parent=os.getppid() + 1_000_000)   # not its parent: already gone
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == EXIT_CHILD
    pid = os.fork()
    if pid == 0:
        try:
            die_with_parent(parent=os.getppid())
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
