"""A fake AWS Lambda Runtime API on loopback, for running the real image as Lambda runs it.

Lambda starts a function's container with ``AWS_LAMBDA_RUNTIME_API=host:port``; the runtime
interface client inside (awslambdaric) then speaks this HTTP API, version 2018-06-01:

    GET  /2018-06-01/runtime/invocation/next              long-polls for the next event:
         200, the event as the body, and the headers Lambda sends (request id, deadline,
         function ARN, X-Ray trace id)
    POST /2018-06-01/runtime/invocation/{id}/response     the handler's result     -> 202
    POST /2018-06-01/runtime/invocation/{id}/error        the handler raised       -> 202
    POST /2018-06-01/runtime/init/error                   the init phase failed    -> 202

(Lambda's "Runtime API" documentation.) ``invoke(event)`` queues an event and waits for the
runtime's answer; ``init_error()`` waits for an init failure. Every call is bounded.
``first_next_at`` and answer times let a benchmark measure init and first response.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ml-app-dev:live"


@dataclass
class Answer:
    """What the runtime posted for one invocation (or for init)."""

    kind: str                      # "response", "error" or "init_error"
    request_id: str | None
    body: bytes
    headers: dict
    at: float = field(default_factory=time.monotonic)

    def json(self):
        return json.loads(self.body)


class FakeRuntimeApi:
    """The Runtime API on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, timeout_ms: int = 30_000):
        self.timeout_ms = timeout_ms
        self.events: queue.Queue = queue.Queue()
        self.answers: dict[str, queue.Queue] = {}
        self.init_errors: queue.Queue = queue.Queue()
        self.first_next_at: float | None = None
        self.unexpected: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API for the container."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> "FakeRuntimeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event, timeout: float = 30) -> Answer:
        """Hand ``event`` to the next poll; return the runtime's response or error."""
        request_id = str(uuid.uuid4())
        self.answers[request_id] = queue.Queue()
        self.events.put((request_id, json.dumps(event).encode()))
        try:
            return self.answers[request_id].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer to invocation {request_id} within {timeout}s") from None

    def init_error(self, timeout: float = 30) -> Answer:
        try:
            return self.init_errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no init error within {timeout}s") from None

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):       # quiet: the test reports what matters
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    api.unexpected.append(f"GET {self.path}")
                    return self._reply(404, b'{"errorType":"InvalidRequest"}')
                if api.first_next_at is None:
                    api.first_next_at = time.monotonic()
                request_id, body = api.events.get()    # long poll, as Lambda's does
                deadline = int(time.time() * 1000) + api.timeout_ms
                self._reply(200, body, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                                               f"Parent={uuid.uuid4().hex[:16]};Sampled=0",
                })

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path == f"{PREFIX}/init/error":
                    api.init_errors.put(Answer("init_error", None, body, headers))
                    return self._reply(202, b'{"status":"OK"}')
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if (len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error")
                        and parts[1] in api.answers):
                    api.answers[parts[1]].put(Answer(parts[2], parts[1], body, headers))
                    return self._reply(202, b'{"status":"OK"}')
                api.unexpected.append(f"POST {self.path}")
                self._reply(400, b'{"errorType":"InvalidRequestID"}')

        return Handler
