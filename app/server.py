"""Start the service: the one place that knows how (the image's CMD, `make run`, tests).

    python -m app.server          settings from the environment (docs/api.md, Configuration)

What runs (chosen by measurement, docs/performance.md "Choosing the serving front"):

    client -> nginx (BIND/PORT) -> a unix socket per worker -> granian -> the Flask app
              (least_conn)        (WEB_CONCURRENCY workers, one thread each)

nginx reads each request completely, with timeouts, before passing it on, and answers
malformed ones itself with JSON errors (app/nginx.conf), and sends each to the worker with
the fewest requests in flight; granian's Rust HTTP layer hands the WSGI app a request at a
time, one thread per worker (LiteRT and the GIL gain nothing from more). ``SERVER_FRONT=none`` runs granian alone on BIND (development only: no slow-client
protection); ``auto`` (what `make run` uses) picks nginx when it is installed.

Start-up, in order: settings are validated (exit 2 on a bad one); every model version
MODEL_URI lists is fetched, verified and loaded once here, with a bounded download (exit 3,
one line naming the URI and the cause); then granian, then nginx, start. SIGTERM drains:
nginx stops accepting and finishes the requests it holds, then granian stops; exit 0 well
within ECS's and SageMaker's 30 s. If either child dies, the other is stopped and the exit
code is 1; if this process is killed outright, the kernel sends its children SIGTERM
(``die_with_parent``).
A second program (SageMaker's ``serve``) starts the same front by calling ``main()``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.config import ConfigError, ServerSettings, Settings, load_server_settings, load_settings
from app.manifest import ModelIntegrityError
from app.observability import JsonLog
from app.registry import load_models

# 2: a setting; 3: the model; 4: nginx required but missing; 1: nginx or granian died
EXIT_CONFIG, EXIT_MODEL, EXIT_FRONT, EXIT_CHILD = 2, 3, 4, 1
TEMPLATE = Path(__file__).with_name("nginx.conf")
NGINX_LEVEL = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$")
PR_SET_PDEATHSIG = 1   # <linux/prctl.h>
# Resolved here, in the supervisor, so a freshly forked child only makes the call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


_LOG = JsonLog(sys.stderr)     # the app's JSON lines, on stderr like granian's


def _log(level: str, message: str, **fields) -> None:
    """One JSON line on stderr, the shape of the app's and granian's lines."""
    _LOG.write(level, logger="app.server", message=message, **fields)


def fail(code: int, message: str) -> int:
    """Print the one line a failed start leaves (CloudWatch shows it as the task's reason)."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def render_nginx(settings: Settings, server: ServerSettings, runtime: Path,
                 sockets: list[Path] | None = None) -> str:
    """app/nginx.conf with the settings filled in: listen on BIND, proxy to ``sockets``
    (one per app worker), keep temp files and the pid under ``runtime``."""
    values = {
        "runtime": str(runtime), "listen": server.bind,
        # nginx started as root would switch its workers to "nobody", which cannot reach
        # the socket; as anyone else (uid 10001 in the image) the directive is not allowed.
        "user": f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "",
        "header_timeout": server.server_header_timeout,
        "body_timeout": server.server_body_timeout,
        "keepalive": server.server_keepalive,
        "shutdown_timeout": max(1, server.server_graceful_timeout - 2),
        "max_body_bytes": settings.max_body_bytes,
        # max_fails=0: a refused connection never takes a worker out of rotation for
        # nginx's fail_timeout (10 s); app/server.py stops everything if a worker dies.
        "upstreams": "\n        ".join(f"server unix:{path} max_fails=0;"
                                        for path in sockets or [runtime / "app-0.sock"]),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), TEMPLATE.read_text())


def serve_granian(server: ServerSettings, listen: dict, target: str) -> None:
    """granian's main process, in this (forked) process: its workers fork from here with
    the app's modules already imported by the model check, so they start in milliseconds
    instead of re-importing numpy, LiteRT and Flask (~0.5 s on 2 busy vCPUs)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    Granian(target, interface=Interfaces.WSGI, workers=server.web_concurrency,
            # One thread per worker: requests arrive whole from nginx, and LiteRT plus the
            # GIL gain nothing from a second one (granian's default, 256, tripled p99).
            blocking_threads=1, runtime_threads=1, websockets=False,
            http1_settings=HTTP1Settings(header_read_timeout=server.server_header_timeout * 1000,
                                         keep_alive=True),
            log_dictconfig=GRANIAN_LOGGING, log_access=False, workers_kill_timeout=3,
            working_dir=Path(__file__).parent.parent, **listen).serve()


GRANIAN_LOGGING = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"json": {"()": "app.observability.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "granian.access": {"handlers": [], "level": "INFO", "propagate": False}},
}


def _relay_nginx_log(stream) -> None:
    """nginx writes plain text to stderr; forward each line as JSON so log filters on
    "level" see nginx's errors too."""
    for raw in stream:
        text = raw.decode("utf-8", "replace").rstrip()
        m = NGINX_LEVEL.match(text)
        level, message = (m.group(1), m.group(2)) if m else ("error", text)
        if message.startswith("client "):
            level = "warn"   # "client sent invalid chunked body" and kin: the client's fault
        _log({"emerg": "ERROR", "alert": "ERROR", "crit": "ERROR", "error": "ERROR",
              "warn": "WARNING", "notice": "INFO", "info": "INFO"}.get(level, "INFO"),
             message[:2000], source="nginx")


class StopRequest:
    """SIGTERM or SIGINT, recorded for the supervisor's loop (true once one arrived).

    The handler only appends to a list, which takes no lock. A handler runs between any two
    bytecodes of the main thread, and a second signal often arrives while the first is being
    handled (`make run` forwards a SIGTERM to us a moment after the one sent to its process
    group). With ``threading.Event.set()`` as the handler, the second one re-entered
    ``set()`` inside the first and waited forever on the Event's own lock: the supervisor
    never drained, and CI's browser tests found the server still listening a minute later
    (seen with py-spy, about one stop in ten)."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.record)

    def record(self, signum: int, frame) -> None:
        self.signals.append(signum)

    def __bool__(self) -> bool:
        return bool(self.signals)


def die_with_parent(parent: int) -> None:
    """In a freshly forked child of the supervisor (``parent``), before it becomes nginx or
    granian: receive SIGTERM when the supervisor dies, however it dies (``kill -9``, the
    OOM killer), so an orphaned nginx never keeps the port and serves on unsupervised. The
    children have sessions of their own, so a terminal's Ctrl-C reaches only the supervisor,
    which stops them in order; without this, nothing else would stop them."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:     # the supervisor died before the call above took effect
        os._exit(EXIT_CHILD)       # (not a signal to ourselves: preexec_fn's child still has
                                   # the supervisor's handlers, which would only record it)


class GranianProcess:
    """granian's main process as a forked child, with the part of Popen's interface the
    supervisor uses (pid, poll, send_signal, wait, kill)."""

    def __init__(self, server: ServerSettings, listen: dict, target: str):
        self.returncode: int | None = None
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:                  # the child: never returns
            code = 1
            try:
                os.setsid()                # a terminal's Ctrl-C reaches us; we relay it
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                die_with_parent(parent)
                serve_granian(server, listen, target)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 - one line, then exit
                print(f"error: granian: {exc!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("granian", timeout)
            time.sleep(0.02)
        return self.returncode


def _wait_for_socket(path: Path, proc, timeout: float) -> bool:
    """True once the app server accepts connections on ``path``. The file appears before
    granian listens on it: a request nginx passed on in between was refused, and nginx then
    counted the worker down for 10 s (503s from a healthy server; SageMaker's first /ping)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                    return True
                except OSError:
                    pass
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _stop(proc, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reap_orphans(children: set[int]) -> None:
    """As PID 1 (the image's CMD) we inherit every orphaned process: reap those, never our
    own children (their Popen objects collect their exit codes)."""
    if os.getpid() != 1:
        return
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in children:
            return
        os.waitpid(info.si_pid, 0)


def resolve_front(choice: str) -> str | None:
    """'nginx' or 'none'; None when nginx is required but not installed."""
    have = shutil.which("nginx") is not None
    if choice == "auto":
        return "nginx" if have else "none"
    if choice == "nginx" and not have:
        return None
    return choice


def main(env: dict | None = None, target: str = "app.wsgi:app") -> int:
    """Validate, check the model, run the front until SIGTERM/SIGINT; return the exit code.
    ``target`` is the WSGI app granian's workers import (the benchmark swaps in its no-op)."""
    if env is not None:
        os.environ.update(env)
    try:
        settings = load_settings()
        server = load_server_settings()
    except ConfigError as exc:
        return fail(EXIT_CONFIG, str(exc).replace("\n  - ", " | "))
    front = resolve_front(server.server_front)
    if front is None:
        return fail(EXIT_FRONT, "SERVER_FRONT=nginx but nginx is not installed; install it "
                                "(apt-get install nginx) or set SERVER_FRONT=auto for "
                                "development")
    # Fetch, verify and load every model version once, before any worker starts: one that
    # does not verify or does not load stops start-up here with one line, every time.
    try:
        load_models(settings)
    except ModelIntegrityError as exc:
        return fail(EXIT_MODEL, str(exc))

    runtime = Path(tempfile.mkdtemp(prefix="ml-app-"))
    try:
        return _run(settings, server, front, runtime, target)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _run(settings: Settings, server: ServerSettings, front: str, runtime: Path,
         target: str) -> int:
    stop = StopRequest()
    if front == "nginx":
        # One granian per worker, each on its own socket, so nginx sends each request to the
        # worker with the fewest in flight (least_conn): a worker the kernel has descheduled,
        # or one busy with a large batch, stops getting new requests. Measured against one
        # granian with two workers on one socket: p99 at c=64 12-16 ms against 17-25 ms,
        # three rounds each (docs/performance.md).
        one = dataclasses.replace(server, web_concurrency=1)
        sockets = [runtime / f"app-{i}.sock" for i in range(server.web_concurrency)]
        granians = [GranianProcess(one, {"uds": path, "uds_permissions": 0o600}, target)
                    for path in sockets]
    else:
        host, _, port = server.bind.rpartition(":")
        sockets = []
        granians = [GranianProcess(server, {"address": host.strip("[]"), "port": int(port)}, target)]
        _log("WARNING", "SERVER_FRONT=none: granian serves directly, without nginx's "
                        "slow-client protection; use it for development only")
    children: list = list(granians)
    nginx = None
    try:
        for path, proc in zip(sockets, granians):
            if not _wait_for_socket(path, proc, timeout=30):
                return fail(EXIT_CHILD, f"granian exited with {proc.poll()} before it listened")
        if front == "nginx":
            conf = runtime / "nginx.conf"
            conf.write_text(render_nginx(settings, server, runtime, sockets))
            # preexec_fn runs in the forked child; here the supervisor has no other thread
            # running (the log relay starts below), so the fork cannot inherit a held lock.
            nginx = subprocess.Popen(["nginx", "-e", "stderr", "-p", str(runtime), "-c", str(conf)],
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=functools.partial(die_with_parent, os.getpid()))
            threading.Thread(target=_relay_nginx_log, args=(nginx.stderr,), daemon=True).start()
            children.append(nginx)
        _log("INFO", f"serving on {server.bind}", front=front, workers=server.web_concurrency)
        while not stop:
            for proc in children:
                if proc.poll() is not None:
                    name = "nginx" if proc is nginx else "granian"
                    for other in children:
                        _stop(other, signal.SIGTERM, 5)
                    return fail(EXIT_CHILD, f"{name} exited with {proc.returncode} (its own "
                                            "lines above say why); stopping")
            _reap_orphans({proc.pid for proc in children})
            time.sleep(0.2)   # so a signal is acted on within 0.2 s
        return _drain(server, granians, nginx)
    finally:
        for proc in children:
            _stop(proc, signal.SIGTERM, 5)


def _drain(server: ServerSettings, granians: list, nginx: subprocess.Popen | None) -> int:
    """Stop accepting, finish what was accepted, exit 0 within the graceful timeout."""
    t0 = time.monotonic()
    _log("INFO", "SIGTERM: draining", graceful_timeout_s=server.server_graceful_timeout)
    budget = server.server_graceful_timeout
    # nginx's graceful quit: close the listener, finish in-flight requests (its
    # worker_shutdown_timeout closes any connection still open after budget - 2 s).
    _stop(nginx, signal.SIGQUIT, budget - 1)
    # Then the app servers, which by now have nothing in flight (or, without nginx, finish
    # their own requests: granian stops accepting and completes them).
    for proc in granians:
        proc.send_signal(signal.SIGTERM)
    for proc in granians:
        _stop(proc, signal.SIGTERM, max(1.0, budget - (time.monotonic() - t0)))
    _log("INFO", "drained", seconds=round(time.monotonic() - t0, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
