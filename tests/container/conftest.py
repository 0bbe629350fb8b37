"""Build the real image once per session and run containers from it.

Engine: ``$DOCKER`` if set (``eval "$(bash ../shared/tools/docker-env.sh)"`` sets it), else
``docker`` on PATH. When no engine answers, the container tests are skipped with the reason,
except under ``REQUIRE_DOCKER=1`` (CI: ``.ci/run``), where that is a failure.

Every container runs with ``--network host`` (the CI engine has no bridge network, so there is
no ``-p``) and gets its own free loopback port through ``PORT``. Every container is removed by
id when its test ends, pass or fail; the image is kept so the next run reuses its layers.

Knobs: ``ML_APP_TEST_IMAGE`` (tag to build, default ``ml-app:test``),
``ML_APP_TEST_SKIP_BUILD=1`` (use that tag as it is, e.g. an image CI already built).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port

IMAGE_TAG = os.environ.get("ML_APP_TEST_IMAGE", "ml-app:test")
BUILD_TIMEOUT = 840       # below pytest-timeout's 900 s; a cold build takes ~20 s here
READY_TIMEOUT = 60        # the service is ready in well under a second; this bounds a hang
PREDICT = "/v1/models/digits:predict"


class DockerError(AssertionError):
    pass


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Docker:
    """A thin wrapper over the docker CLI; every call is bounded by a timeout."""

    exe: str
    started: list[str] = field(default_factory=list)

    def env(self) -> dict:
        return {**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "1")}

    def __call__(self, *args: str, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run([self.exe, *args], capture_output=True, text=True,
                                  timeout=timeout, env=self.env(), input=input)
        except subprocess.TimeoutExpired as exc:
            raise DockerError(f"`docker {' '.join(args)}` did not finish within {timeout}s") from exc
        if check and proc.returncode != 0:
            raise DockerError(f"`docker {' '.join(args)}` exited {proc.returncode}:\n"
                              f"{proc.stderr[-3000:]}")
        return proc

    def run(self, image: str, *args: str, env: dict | None = None,
            volumes: dict | None = None, cmd: tuple[str, ...] = ()) -> str:
        """``docker run -d``; returns the container id and remembers it for cleanup."""
        argv = ["run", "-d", "--network", "host", "--label", "ml-app-test=1"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        for host_path, target in (volumes or {}).items():
            argv += ["-v", f"{host_path}:{target}"]
        cid = self(*argv, *args, image, *cmd, timeout=60).stdout.strip()
        self.started.append(cid)
        return cid

    def oneshot(self, image: str, *cmd: str, args: tuple[str, ...] = (),
                timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``cmd`` in a fresh container to completion; the container is removed even if
        the call times out (it is named, so it can be found)."""
        name = f"ml-app-test-{uuid.uuid4().hex[:12]}"
        try:
            return self("run", "--name", name, "--network", "host", "--label", "ml-app-test=1",
                        *args, image, *cmd, timeout=timeout, check=False)
        finally:
            self("rm", "-f", "-v", name, check=False, timeout=60)

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref).stdout)[0]

    def logs(self, cid: str) -> str:
        proc = self("logs", cid, check=False, timeout=30)
        return proc.stdout + proc.stderr

    def remove(self, cid: str) -> None:
        self("rm", "-f", "-v", cid, check=False, timeout=60)

    def wait_exit(self, cid: str, timeout: float) -> int:
        """Exit code of the container; fails if it is still running after ``timeout``."""
        try:
            return int(self("wait", cid, timeout=timeout).stdout.strip())
        except DockerError as exc:
            raise DockerError(f"container {cid[:12]} still running after {timeout}s; "
                              f"logs:\n{self.logs(cid)[-3000:]}") from exc


@pytest.fixture(scope="session")
def docker() -> Docker:
    exe = os.environ.get("DOCKER") or shutil.which("docker")
    reason = None
    if not exe:
        reason = "no docker client (set DOCKER or put docker on PATH)"
    else:
        try:
            proc = subprocess.run([exe, "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, text=True, timeout=20)
            if proc.returncode != 0 or not proc.stdout.strip():
                reason = (f"no Docker engine answers (`{exe} version` exited {proc.returncode}"
                          f"{': ' + proc.stderr.strip()[:300] if proc.stderr.strip() else ''})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"no Docker engine answers ({exe}: {exc})"
    if reason:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {reason}; start one with "
                        'eval "$(bash ../shared/tools/docker-env.sh)"', pytrace=False)
        pytest.skip(f"container tests need a Docker engine: {reason} "
                    "(REQUIRE_DOCKER=1 turns this into a failure)")
    d = Docker(exe)
    yield d
    for cid in d.started:          # belt and braces: tests remove their own containers
        d.remove(cid)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    build_args: dict
    build_seconds: float


@pytest.fixture(scope="session")
def image(docker) -> BuiltImage:
    """The repository's Dockerfile, built once per session (layers cached by BuildKit)."""
    build_args = {"REVISION": _git("rev-parse", "HEAD"), "VERSION": "test",
                  # the commit's date, not now: the same commit gives the same image
                  "CREATED": _git("log", "-1", "--format=%cI") or "unknown",
                  "SOURCE": _git("remote", "get-url", "origin") or "unknown"}
    if os.environ.get("ML_APP_TEST_SKIP_BUILD") == "1":
        docker("image", "inspect", IMAGE_TAG)
        labels = docker.inspect(IMAGE_TAG)["Config"]["Labels"] or {}
        build_args = {k: labels.get(f"org.opencontainers.image.{k.lower()}") for k in build_args}
        return BuiltImage(IMAGE_TAG, build_args, 0.0)
    argv = ["build", "--network", "host", "-t", IMAGE_TAG]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    before = docker("image", "inspect", "-f", "{{.Id}}", IMAGE_TAG, check=False).stdout.strip()
    t0 = time.monotonic()
    proc = docker(*argv, str(ROOT), timeout=BUILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        pytest.fail(f"docker build failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-5000:]}",
                    pytrace=False)
    if before and before != docker.inspect(IMAGE_TAG)["Id"]:
        docker("image", "rm", before, check=False)   # the previous build's image, now untagged
    return BuiltImage(IMAGE_TAG, build_args, time.monotonic() - t0)


@dataclass
class Service:
    """A running container of the image and the URL it serves on."""

    cid: str
    port: int
    url: str
    ready_seconds: float


def wait_ready(docker: Docker, cid: str, url: str, timeout: float = READY_TIMEOUT) -> float:
    """Seconds until ``url``/readyz answers 200; fails fast if the container exits."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{url}/readyz", timeout=1)
            if r.status_code == 200:
                return time.monotonic() - t0
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = exc
            state = docker.inspect(cid)["State"]
            if not state["Running"]:
                raise DockerError(f"container exited with {state['ExitCode']} before it was "
                                  f"ready; logs:\n{docker.logs(cid)[-3000:]}")
        time.sleep(0.05)
    raise DockerError(f"{url}/readyz not 200 within {timeout}s (last: {last}); logs:\n"
                      f"{docker.logs(cid)[-3000:]}")


LOCKED_DOWN = ("--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


@pytest.fixture
def start(docker, image):
    """start(env=..., volumes=..., args=..., wait=True) -> Service; removed after the test."""
    mine: list[str] = []

    def _start(env: dict | None = None, volumes: dict | None = None, args=LOCKED_DOWN,
               wait: bool = True, bind_host: str | None = None) -> Service:
        port = free_port()
        listen = {"BIND": f"{bind_host}:{port}"} if bind_host else {"PORT": str(port)}
        cid = docker.run(image.tag, *args, env={**listen, **(env or {})}, volumes=volumes)
        mine.append(cid)
        url = f"http://127.0.0.1:{port}"
        ready = wait_ready(docker, cid, url) if wait else 0.0
        return Service(cid, port, url, ready)

    yield _start
    for cid in mine:
        docker.remove(cid)


MOUNTED_MODEL = {"env": {"MODEL_URI": "/model"}, "volumes": {str(MODEL_DIR): "/model:ro"}}


@pytest.fixture(scope="module")
def served(docker, image):
    """One locked-down container serving the committed model version, for a whole module."""
    port = free_port()
    cid = docker.run(image.tag, *LOCKED_DOWN, "--health-interval", "1s",
                     "--health-start-period", "30s",
                     env={"PORT": str(port), **MOUNTED_MODEL["env"]},
                     volumes=MOUNTED_MODEL["volumes"])
    try:
        url = f"http://127.0.0.1:{port}"
        yield Service(cid, port, url, wait_ready(docker, cid, url))
    finally:
        docker.remove(cid)
