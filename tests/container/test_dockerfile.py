"""Static checks of the Dockerfile and build context: no engine needed, so not marked
``container`` (they run in ``make test-fast`` too)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_has_no_findings():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install -r requirements-dev.txt gives it)")
    proc = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_hadolint_ignore_has_a_reason():
    for line in DOCKERFILE.splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line), f"ignore without a reason: {line}"


def test_base_image_is_an_argument_and_builds_are_multi_stage():
    lines = [ln for ln in DOCKERFILE.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "ARG PYTHON_IMAGE=python:3.11-slim-bookworm"
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2 and all(ln.startswith("FROM ${PYTHON_IMAGE}") for ln in froms)
    assert not re.search(r"^#\s*syntax=", DOCKERFILE, re.M), "a syntax line pulls from Docker Hub"


def test_dependencies_are_installed_before_code_is_copied():
    reqs = DOCKERFILE.index("COPY app/requirements.txt")
    install = DOCKERFILE.index("pip install")
    code = DOCKERFILE.index("COPY app /srv/app")
    assert reqs < install < code


def test_build_context_is_an_allow_list_of_app():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [ln.strip() for ln in ignore if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*" and "!app/" in rules
    assert [r for r in rules if r.startswith("!")] == ["!app/"]
