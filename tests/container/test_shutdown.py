"""`docker stop` (SIGTERM, as ECS sends it) while requests are streaming in.

What must hold: a request the service has accepted completes with a full 200 response, and
the container exits 0 before the stop timeout (no SIGKILL). Two kinds of evidence:

1. A request that is provably in flight when SIGTERM arrives: it is sent with
   ``Expect: 100-continue``, and nginx answers ``100 Continue`` only once it has accepted
   the connection and parsed the headers. The body is sent only after the container's log
   shows the launcher (app/server.py) draining on the signal; the response must still be a
   200 with predictions.
2. A stream of requests at concurrency 4 throughout: every response that arrives is a
   complete 200, and every request the service logged (it logs each request it handles,
   with the client's X-Request-Id) reached the client. Connections refused after the
   listener closed, or reset while still queued in the kernel's accept backlog (accepted by
   the kernel, never by a worker), are not requests the service accepted; they are counted
   and printed. On ECS the load balancer deregisters the task before SIGTERM, so none arrive.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter

import pytest

from .conftest import MOUNTED_MODEL, PREDICT

pytestmark = pytest.mark.container

STOP_TIMEOUT = 30        # ECS's default stopTimeout; SERVER_GRACEFUL_TIMEOUT is 25 s
STREAM_THREADS = 4


def _stream_worker(port: int, body: bytes, name: str, stop: threading.Event, out: list) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        rid = f"{name}-{n}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.connect()
        except ConnectionRefusedError:
            out.append((rid, "refused", None))
            time.sleep(0.05)
            continue
        try:
            conn.request("POST", PREDICT, body=body, headers={
                "Content-Type": "application/json", "X-Request-Id": rid})
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
            out.append((rid, "reset", type(exc).__name__))
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is a failure, recorded
            out.append((rid, "error", repr(exc)))
            continue
        finally:
            conn.close()
        try:
            ok = resp.status == 200 and len(json.loads(data)["predictions"]) == 4
        except (ValueError, KeyError):
            ok = False
        out.append((rid, "ok" if ok else "bad", f"{resp.status} {data[:200]!r}"))


def _recv_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def test_docker_stop_during_a_stream_completes_accepted_requests(docker, start, heldout):
    svc = start(**MOUNTED_MODEL)
    body = json.dumps({"instances": heldout.x_test[:4].tolist()}).encode()
    results: list = []
    stop_stream = threading.Event()
    threads = [threading.Thread(target=_stream_worker, daemon=True,
                                args=(svc.port, body, f"s{i}", stop_stream, results))
               for i in range(STREAM_THREADS)]
    stopper = None
    inflight = socket.create_connection(("127.0.0.1", svc.port), timeout=15)
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)                               # the stream is flowing
        assert sum(1 for r in results if r[1] == "ok") > 10, results[:5]

        # 1. an accepted request, in flight across SIGTERM
        inflight.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "X-Request-Id: inflight\r\nConnection: close\r\n\r\n".encode())
        assert b"100 Continue" in _recv_until(inflight, b"\r\n\r\n", 15)

        t_stop = time.monotonic()
        stop_result: dict = {}

        def _stop():
            stop_result["proc"] = docker("stop", "-t", str(STOP_TIMEOUT), svc.cid,
                                         timeout=STOP_TIMEOUT + 30, check=False)
            stop_result["seconds"] = time.monotonic() - t_stop

        stopper = threading.Thread(target=_stop, daemon=True)
        stopper.start()
        deadline = time.monotonic() + 15
        while "SIGTERM: draining" not in docker.logs(svc.cid):
            assert time.monotonic() < deadline, "the launcher never logged SIGTERM"
            time.sleep(0.1)
        time.sleep(0.5)                               # well past the signal, still in flight
        inflight.sendall(body)
        response = _recv_until(inflight, b"\x00never", 15)   # until the server closes
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), response[:300]
        assert len(json.loads(payload)["predictions"]) == 4

        stopper.join(STOP_TIMEOUT + 35)
        assert not stopper.is_alive(), "docker stop did not return"
    finally:
        inflight.close()
        stop_stream.set()
        for t in threads:
            t.join(20)

    # 2. the container: clean exit, before the stop timeout would have sent SIGKILL
    state = docker.inspect(svc.cid)["State"]
    assert stop_result["proc"].returncode == 0, stop_result["proc"].stderr
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
    assert stop_result["seconds"] < STOP_TIMEOUT, stop_result["seconds"]

    # 3. the stream: complete 200s only; whatever the service handled reached the client
    kinds = Counter(kind for _, kind, _ in results)
    print(f"\nstream outcomes: {dict(kinds)}; stop took {stop_result['seconds']:.2f}s")
    assert kinds["ok"] > 10
    assert kinds["bad"] == 0 and kinds["error"] == 0, [r for r in results if r[1] in ("bad", "error")]
    logged = set()
    for line in docker.logs(svc.cid).splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("path") == PREDICT:
                assert event["status"] == 200, event
                logged.add(event["request_id"])
    received = {rid for rid, kind, _ in results if kind == "ok"} | {"inflight"}
    assert "inflight" in logged
    assert logged <= received, f"handled by the service but lost: {sorted(logged - received)}"
    # a reset request was never handled by the service (it was still in the accept queue)
    assert not logged & {rid for rid, kind, _ in results if kind == "reset"}
