"""The demo page in a real browser: Debian's Chromium, driven by Playwright, against the
service started as a user starts it (`make run` on a free loopback port).

Browser: ``$CHROMIUM`` if set, else ``/usr/bin/chromium`` (``apt install chromium``).
Playwright's PyPI wheel ships its driver; it is pointed at that browser and never downloads
one (no ``playwright install``). Without a browser the tests are skipped with the reason,
except under ``REQUIRE_BROWSER=1`` (CI: ``.ci/run``), where that is a failure.

Every test's page is watched: a console error, an uncaught exception or unhandled promise
rejection, a failed request or an HTTP error that the test did not declare fails the test.
A failing test leaves a screenshot and the page's console under ``test-results/browser/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, serve_env, wait_for_http

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The closed network here refuses every outside connection: these keep Chromium from trying
# (updates, sync, QUIC probes) and from logging the refusals. Playwright adds --headless and a
# fresh temporary --user-data-dir per browser.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-results" / "browser"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


_failed_key = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember a failed set-up or call, for the screenshot at teardown."""
    report = yield
    if report.failed:
        item.stash[_failed_key] = True
    return report


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed ({exc}); `make setup` installs requirements-dev.txt"
    if not (shutil.which(CHROMIUM) or os.access(CHROMIUM, os.X_OK)):
        return (f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM to a "
                "Chromium or Chrome executable)")
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _missing_browser()
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(f"browser tests need a browser: {reason} "
                    "(REQUIRE_BROWSER=1 turns this into a failure)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# --- the service -----------------------------------------------------------------------------

@dataclass
class Service:
    """A `make run` process group on a loopback port."""

    proc: subprocess.Popen
    url: str
    log: object

    def stop(self) -> None:
        """SIGTERM to make and the server, then wait until the port refuses connections."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.05)
        raise AssertionError(f"the server on port {port} still accepts connections 30 s after "
                             f"SIGTERM; `make run` said:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def start_service(**env: str) -> Service:
    """`make run` as a user types it, with this interpreter's environment as the venv
    (``-o`` the install stamp: never reinstall from inside a test) and ``env`` as settings."""
    port = free_port()
    venv = Path(sys.prefix)
    log = tempfile.TemporaryFile("w+")   # a file, not a pipe: an unread pipe blocks the server
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-o", str(venv / ".installed"), "run",
         f"VENV={venv}", f"PORT={port}"],
        cwd=ROOT, env=serve_env(**env), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    service = Service(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_for_http(f"{service.url}/readyz", timeout=60, proc=proc)
    except AssertionError as exc:
        service.stop()
        raise AssertionError(f"{exc}\n`make run` said:\n{service.output()[-3000:]}") from None
    return service


@pytest.fixture(scope="module")
def service():
    """One service for a module's tests that leave it running."""
    running = start_service()
    yield running
    running.stop()


@pytest.fixture
def own_service():
    """A service of the test's own (with settings of its own, or to be stopped)."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        started.append(start_service(**env))
        return started[-1]

    yield start
    for running in started:
        running.stop()


# --- the page --------------------------------------------------------------------------------

@dataclass
class PageWatch:
    """Everything that went wrong on a page. A test declares the failures it causes on purpose
    with ``expect(path, status)`` (status None: the request fails outright)."""

    problems: list[str] = field(default_factory=list)
    expected: list[tuple[str, int | None]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def expect(self, path: str, status: int | None) -> None:
        self.expected.append((path, status))

    def _declared(self, url: str, status: int | None) -> bool:
        return any(path in url and want == status for path, want in self.expected)

    def on_console(self, msg) -> None:
        self.console.append(f"{msg.type}: {msg.text}")
        if msg.type != "error":
            return
        # Chromium logs each failed resource load; a declared failure is handled by the page
        url = (msg.location or {}).get("url", "")
        status = re.search(r"status of (\d{3})", msg.text)
        if msg.text.startswith("Failed to load resource") and self._declared(
                url, int(status.group(1)) if status else None):
            return
        self.problems.append(f"console error: {msg.text} ({url})")

    def on_page_error(self, error) -> None:
        self.problems.append(f"uncaught in the page: {error}")

    def on_request_failed(self, request) -> None:
        if not self._declared(request.url, None):
            self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def on_response(self, response) -> None:
        if response.status >= 400 and not self._declared(response.url, response.status):
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")


@pytest.fixture
def open_page(browser, request):
    """``open_page(url, viewport=..., **context_options)`` -> (page, watch); the page's context
    is closed after the test, with a screenshot first if the test failed."""
    opened = []

    def open_(url: str, viewport: dict = DESKTOP, **options):
        context = browser.new_context(viewport=viewport, **options)
        page = context.new_page()
        watch = PageWatch()
        page.on("console", watch.on_console)
        page.on("pageerror", watch.on_page_error)
        page.on("requestfailed", watch.on_request_failed)
        page.on("response", watch.on_response)
        # Records how the pad was drawn on (mouse, touch), so a test can prove which it used.
        page.add_init_script("window.__pointerTypes = [];"
                             "addEventListener('pointerdown', e => __pointerTypes.push(e.pointerType), true);")
        opened.append((context, page, watch))
        page.goto(url)
        return page, watch

    yield open_
    failed = request.node.stash.get(_failed_key, False)
    problems = []
    for n, (context, page, watch) in enumerate(opened):
        problems += watch.problems
        if failed or watch.problems:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^\w.-]+", "_", request.node.nodeid) + (f"-{n}" if n else "")
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001  (a crashed page still gets its log kept)
                watch.console.append(f"(no screenshot: {exc})")
            (ARTIFACTS / f"{stem}.console.txt").write_text("\n".join(watch.console) + "\n")
        context.close()
    if problems:
        pytest.fail("left unhandled on the page:\n  " + "\n  ".join(problems), pytrace=False)
