"""The image as SageMaker hosting runs it: `docker run IMAGE serve`, the model version's files
extracted to /opt/ml/model (read-only here), nothing else in the environment, port 8080 in the
container's own network namespace (or SAGEMAKER_BIND_TO_PORT); as the image's uid 10001, as
root (what SageMaker's documentation expects) and as an arbitrary uid; read-only root
filesystem with a tmpfs on /tmp."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
import requests

from tests.conftest import MODEL_DIR, free_port, manifest_sha256

from .conftest import LOCKED_DOWN, Service, wait_ready

pytestmark = pytest.mark.container

OPT_ML_MODEL = f"{MODEL_DIR}:/opt/ml/model:ro"
STOP_TIMEOUT = 30            # SageMaker: SIGTERM, then SIGKILL 30 s later
ROW = ",".join(["0"] * 64)
READ_ONLY = LOCKED_DOWN[:3]             # --read-only --tmpfs /tmp

# Runs inside the container (its own network namespace: nothing to reach from outside):
# waits for /ping, times it, asks for a CSV answer, lists the processes' uids.
PROBE = r"""
import json, os, time, urllib.request
base = "http://127.0.0.1:8080"
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(base + "/ping", timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
pings = []
for _ in range(10):
    t0 = time.monotonic(); status = urllib.request.urlopen(base + "/ping", timeout=2).status
    pings.append((status, time.monotonic() - t0))
req = urllib.request.Request(base + "/invocations", data=(",".join(["0"] * 64)).encode(),
                             headers={"Content-Type": "text/csv", "Accept": "text/csv"})
with urllib.request.urlopen(req, timeout=10) as r:
    answer = [r.status, r.headers["Content-Type"], r.read().decode()]
uids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        lines = open(f"/proc/{p}/status").read().splitlines()
        uids.setdefault(lines[0].split()[1], set()).add(
            next(l for l in lines if l.startswith("Uid:")).split()[1])
print(json.dumps({"pings": pings, "answer": answer,
                  "uids": {k: sorted(v) for k, v in uids.items()}}))
"""


def _start(docker, image, *args: str, network: str = "none", volume: str | None = OPT_ML_MODEL,
           env: dict | None = None) -> str:
    argv = ["run", "-d", "--network", network, "--label", "ml-app-test=1",
            "--name", f"ml-app-test-sm-{uuid.uuid4().hex[:10]}", *args]
    if volume:
        argv += ["-v", volume]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    cid = docker(*argv, image.tag, "serve", timeout=60).stdout.strip()
    docker.started.append(cid)
    return cid


def test_image_declares_that_it_honours_sagemakers_port(docker, image):
    labels = docker.inspect(image.tag)["Config"]["Labels"]
    assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"


@pytest.mark.parametrize("user", [None, "0", "12345:12345"], ids=["uid-10001", "root", "random-uid"])
def test_serve_as_sagemaker_starts_it(docker, image, user):
    """No environment at all, port 8080, read-only root, /opt/ml/model; then `docker stop`."""
    # root as SageMaker runs it: with the default capabilities (dropping them all leaves nginx's
    # master unable to set its workers' groups: it serves, and logs initgroups() failed)
    args = [*(READ_ONLY if user == "0" else LOCKED_DOWN), *(["--user", user] if user else [])]
    cid = _start(docker, image, *args)
    try:
        probe = docker("exec", cid, "python3", "-c", PROBE, timeout=90, check=False)
        assert probe.returncode == 0, f"{probe.stderr}\n{docker.logs(cid)[-3000:]}"
        result = json.loads(probe.stdout)
        assert all(status == 200 and seconds < 2 for status, seconds in result["pings"]), result["pings"]
        status, content_type, body = result["answer"]
        assert status == 200 and content_type == "text/csv"
        assert len([float(v) for v in body.strip().split(",")]) == 10
        expected_uid = (user or "10001").split(":")[0]
        assert set(result["uids"]) >= {"nginx", "python3"}
        assert all(uids == [expected_uid] for uids in result["uids"].values()), result["uids"]
        logs = docker.logs(cid)
        assert '"source":"/opt/ml/model"' in logs and "0.0.0.0:8080" in logs
    finally:
        t0 = time.monotonic()
        docker("stop", "-t", str(STOP_TIMEOUT), cid, timeout=STOP_TIMEOUT + 30)
        took = time.monotonic() - t0
    state = docker.inspect(cid)["State"]
    assert state["ExitCode"] == 0 and took < 10, (state, took)
    assert "SIGTERM: draining" in docker.logs(cid)
    docker.remove(cid)


@pytest.fixture(scope="module")
def sagemaker(docker, image):
    """`serve` on SAGEMAKER_BIND_TO_PORT (as in an inference pipeline), reachable from here."""
    port = free_port()
    cid = _start(docker, image, *LOCKED_DOWN, network="host",
                 env={"SAGEMAKER_BIND_TO_PORT": str(port)})
    try:
        url = f"http://127.0.0.1:{port}"
        yield Service(cid, port, url, wait_ready(docker, cid, url))
    finally:
        docker.remove(cid)


def test_invocations_json_and_csv_in_and_out(sagemaker, heldout):
    x, y = heldout.x_test[:20].reshape(20, 64), heldout.y_test[:20]
    csv_in = "\n".join(",".join(str(int(v)) for v in row) for row in x)
    as_json = requests.post(f"{sagemaker.url}/invocations", json={"instances": x.tolist()}, timeout=10)
    assert as_json.status_code == 200 and as_json.headers["Content-Type"] == "application/json"
    # Which version and manifest answered, for SageMaker to hand the caller (CustomAttributes).
    answered = f"tfs-model-name=digits,tfs-model-version=1,manifest-sha256={manifest_sha256(MODEL_DIR)}"
    assert as_json.headers["X-Amzn-SageMaker-Custom-Attributes"] == answered
    for accept in ("text/csv", "text/csv;q=0.9, application/json;q=0.1"):
        as_csv = requests.post(f"{sagemaker.url}/invocations", data=csv_in, timeout=10,
                               headers={"Content-Type": "text/csv", "Accept": accept,
                                        "X-Amzn-SageMaker-Custom-Attributes":
                                            "tfs-model-name=digits,tfs-model-version=1"})
        assert as_csv.status_code == 200 and as_csv.headers["Content-Type"] == "text/csv"
        assert as_csv.headers["X-Amzn-SageMaker-Custom-Attributes"] == answered
        rows = [[float(v) for v in ln.split(",")] for ln in as_csv.text.splitlines()]
        assert rows == as_json.json()["predictions"]
    assert (np.argmax(as_json.json()["predictions"], axis=1) == y).mean() >= 0.95
    refused = requests.post(f"{sagemaker.url}/invocations", data=csv_in, timeout=10,
                            headers={"Content-Type": "text/csv", "Accept": "application/xml"})
    assert refused.status_code == 406 and "text/csv" in refused.json()["error"]


def test_bodies_up_to_6_mb_are_read_and_the_batch_limit_decides(sagemaker):
    # 256 instances (the batch limit) padded with JSON whitespace to ~5.9 MB: served
    body = json.dumps({"instances": [[0] * 64] * 256}).encode()
    padded = body[:-1] + b" " * (6 * 1024 * 1024 - len(body) - 1024) + b"}"
    r = requests.post(f"{sagemaker.url}/invocations", data=padded, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["predictions"]) == 256
    # a small body holding more instances than MAX_BATCH_SIZE: the batch limit refuses it
    r = requests.post(f"{sagemaker.url}/invocations", data="\n".join([ROW] * 300), timeout=30,
                      headers={"Content-Type": "text/csv"})
    assert r.status_code == 413 and "MAX_BATCH_SIZE" in r.json()["error"]
    # past InvokeEndpoint's 6 MB (SageMaker itself would refuse it): nginx answers 413
    r = requests.post(f"{sagemaker.url}/invocations", data=b" " * (6 * 1024 * 1024 + 1), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "6291456 bytes (MAX_BODY_BYTES)" in r.json()["error"]


def test_ping_is_fast_under_load(sagemaker):
    """SageMaker's ping times out after 2 s: /ping answers in milliseconds while predictions run."""
    import threading

    stop = threading.Event()

    def load():
        body = json.dumps({"instances": [[0] * 64] * 64})
        while not stop.is_set():
            requests.post(f"{sagemaker.url}/invocations", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        times = []
        for _ in range(30):
            t0 = time.monotonic()
            assert requests.get(f"{sagemaker.url}/ping", timeout=2).status_code == 200
            times.append(time.monotonic() - t0)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert max(times) < 0.5, times


def test_ping_answers_200_from_the_first_answer_on(docker, image):
    """From `docker run IMAGE serve`, /ping polled every 5 ms: the first answer is a 200 and
    every one after it too. (The front used to accept before its app workers did: a few starts
    in ten answered 503 for 10 s, as nginx counted the refused workers down; a race, so
    several starts; tests/app/test_server.py checks the readiness wait itself.)"""
    for _ in range(6):
        port = free_port()
        cid = _start(docker, image, *LOCKED_DOWN, network="host",
                     env={"SAGEMAKER_BIND_TO_PORT": str(port)})
        statuses: list[int] = []
        t0 = time.monotonic()
        while len(statuses) < 40 and time.monotonic() - t0 < 60:
            try:
                statuses.append(requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code)
            except requests.ConnectionError:
                time.sleep(0.005)
        docker.remove(cid)
        assert statuses and set(statuses) == {200}, statuses


def _refused(docker, cid: str, timeout: float = 60) -> tuple[int, str]:
    code = docker.wait_exit(cid, timeout)
    return code, docker.logs(cid)


def test_without_a_model_serve_exits_2_saying_what_to_set(docker, image):
    cid = _start(docker, image, *LOCKED_DOWN, volume=None)
    code, logs = _refused(docker, cid)
    assert code == 2 and "MODEL_URI is not set and /opt/ml/model does not exist" in logs, logs
    assert "ModelDataUrl" in logs and len(logs.strip().splitlines()) == 1


def test_read_only_without_a_writable_tmp_exits_2_saying_so(docker, image):
    cid = _start(docker, image, "--read-only")
    code, logs = _refused(docker, cid)
    assert code == 2 and "no writable temporary folder" in logs and "--tmpfs /tmp" in logs, logs


def test_model_files_only_root_can_read(docker, image, model_copy):
    """SageMaker extracts the archive as root: a file without read permission for others
    stops uid 10001 with the file named; as root the same folder serves."""
    (model_copy / "model.tflite").chmod(0o600)
    model_copy.chmod(0o755)
    cid = _start(docker, image, *LOCKED_DOWN, volume=f"{model_copy}:/opt/ml/model:ro")
    code, logs = _refused(docker, cid)
    assert code == 2 and "cannot read /opt/ml/model/model.tflite as uid 10001" in logs, logs
    assert "tar --mode=a+rX" in logs
    port = free_port()
    cid = _start(docker, image, *LOCKED_DOWN, "--user", "0", network="host",
                 volume=f"{model_copy}:/opt/ml/model:ro", env={"SAGEMAKER_BIND_TO_PORT": str(port)})
    wait_ready(docker, cid, f"http://127.0.0.1:{port}")
    assert requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200
    docker.remove(cid)
