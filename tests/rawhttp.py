"""Raw-socket HTTP for tests that need what no HTTP client library sends: malformed
framing, oversized heads, clients that send one byte at a time. Every loop is bounded in
count and in time, and every socket is closed."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

PREDICT = "/v1/models/digits:predict"
ROW = "[" + ",".join(["0"] * 64) + "]"
BODY = '{"instances": [' + ROW + "]}"


def _post(head: str, body: str = "") -> str:
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"{head}Connection: close\r\n\r\n{body}")


def _get(path: str = "/healthz", head: str = "") -> str:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{head}Connection: close\r\n\r\n"


def _chunk(data: str) -> str:
    return f"{len(data):x}\r\n{data}\r\n"


# (id, raw request, expected status). Each must be answered with that status and a JSON
# {"error": ...} body: never a 5xx, an HTML page or an empty body.
MALFORMED = [
    ("chunked: bad chunk size", _post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunked: missing CRLF after data", _post("Transfer-Encoding: chunked\r\n", "3\r\nabcX0\r\n\r\n"), 400),
    ("chunked: negative size", _post("Transfer-Encoding: chunked\r\n", "-1\r\n\r\n"), 400),
    ("chunked: over MAX_BODY_BYTES", _post("Transfer-Encoding: chunked\r\n",
                                           _chunk(" " * 65536) * 17 + _chunk(BODY) + "0\r\n\r\n"), 413),
    ("chunked: valid JSON padded over the limit", _post(
        "Transfer-Encoding: chunked\r\n", _chunk(BODY[:-1] + " " * (1024 * 1024)) + _chunk("}") + "0\r\n\r\n"), 413),
    ("Content-Length over MAX_BODY_BYTES", _post("Content-Length: 2000000\r\n", BODY), 413),
    ("Content-Length not a number", _post("Content-Length: abc\r\n", BODY), 400),
    ("Content-Length twice, different", _post(f"Content-Length: {len(BODY)}\r\nContent-Length: 5\r\n", BODY), 400),
    ("Transfer-Encoding with Content-Length", _post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
    ("Transfer-Encoding: gzip, chunked", _post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 400),
    ("control character in a header value", _get(head="X-Request-Id: a\x01b\r\n"), 400),
    ("space in a header name", _get(head="X Bad: 1\r\n"), 400),
    ("obsolete line folding", _get(head="X-A: b\r\n c\r\n"), 400),
    ("bad request line", "GE\x01T / HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("unsupported HTTP version", "GET /healthz HTTP/9.9\r\nHost: test\r\n\r\n", 400),
    ("HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    ("NUL in the URL", _get("/heal\x00thz"), 400),
    ("URL over 8 KiB", _get("/healthz?" + "a" * 9000), 414),
    ("one header over 8 KiB", _get(head=f"X-Big: {'a' * 9000}\r\n"), 431),
    ("headers over 32 KiB in all", _get(head="".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(400))), 431),
    ("Expect: bogus", _post(f"Expect: bogus\r\nContent-Length: {len(BODY)}\r\n", BODY), 417),
    ("Content-Encoding: gzip", _post("Content-Encoding: gzip\r\nContent-Length: 4\r\n", "\x1f\x8b\x08\x00"), 415),
    ("double slash (no Host-built redirect)", "GET /v1//models/digits HTTP/1.1\r\nHost: evil.example\r\n"
                                              "Connection: close\r\n\r\n", 404),
    ("percent-encoded NUL", _get("/heal%00thz"), 400),
]


@dataclass
class Response:
    status: int | None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    def json(self):
        return json.loads(self.body)


def exchange(port: int, raw: bytes | str, timeout: float = 10.0) -> Response:
    """Send ``raw`` on a fresh connection and read until the server closes it."""
    data = raw.encode("latin-1") if isinstance(raw, str) else raw
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server answered and closed before reading it all: read the answer
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Response(None, raw=buf)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers, body, buf)


class SlowClients:
    """``count`` connections that each send a request one piece every ``interval`` seconds:
    the head one header line at a time (``kind="header"``) or, after a whole head, the body
    one byte at a time (``kind="body"``). Threads stop when ``stop()`` is called or after
    ``limit`` seconds, whichever comes first."""

    def __init__(self, port: int, count: int, kind: str, interval: float = 1.0,
                 limit: float = 120.0):
        self.port, self.count, self.kind = port, count, kind
        self.interval, self.limit = interval, limit
        self._stop = threading.Event()
        self.connected = 0
        self.closed_by_server = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _pieces(self):
        if self.kind == "header":
            yield f"POST {PREDICT} HTTP/1.1\r\n".encode()
            for i in range(100_000):
                yield f"X-Slow-{i}: x\r\n".encode()
        else:
            yield (f"POST {PREDICT} HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                   f"Content-Length: 100000\r\n\r\n").encode()
            for _ in range(100_000):
                yield b" "

    def _run(self) -> None:
        """Hold a connection open as long as the server lets it; reconnect when it closes
        one (as an attacker would), until stopped or out of time."""
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                self._stop.wait(self.interval)
                continue
            with sock:
                with self._lock:
                    self.connected += 1
                for piece in self._pieces():
                    if self._stop.is_set() or time.monotonic() > deadline:
                        return
                    try:
                        sock.sendall(piece)
                    except OSError:
                        with self._lock:
                            self.closed_by_server += 1
                        break
                    self._stop.wait(self.interval)


def timed_predictions(port: int, seconds: float, body: str = BODY,
                      max_requests: int = 100_000) -> list[tuple[int | None, float]]:
    """A normal client: predictions one after another on a keep-alive connection for
    ``seconds``; returns (status or None on a connection error, latency in ms) per request."""
    import http.client

    results: list[tuple[int | None, float]] = []
    deadline = time.monotonic() + seconds
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while time.monotonic() < deadline and len(results) < max_requests:
            t0 = time.perf_counter()
            try:
                conn.request("POST", PREDICT, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                results.append((response.status, (time.perf_counter() - t0) * 1000))
            except (OSError, http.client.HTTPException):
                results.append((None, (time.perf_counter() - t0) * 1000))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(0.01)
    finally:
        conn.close()
    return results


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextmanager
def black_hole():
    """A TCP endpoint on loopback that accepts every connection and never answers (an S3
    endpoint behind a broken proxy); yields its URL. Connections are closed on exit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept_and_hold():
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except (socket.timeout, OSError):
                continue

    acceptor = threading.Thread(target=accept_and_hold, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        acceptor.join(5)
        for s in held:
            s.close()
        listener.close()
