"""The docs (README.md, docs/*.md) name only what exists: every `module.NAME` of infra/ or of
tests/infra/ resolves, and every repository path they quote is there. Names in prose rot
silently when code is renamed; this keeps "where to change what" true."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Made by a command, not committed (git ignores them): the policy pack's virtualenv
# (docs/deploy.md), the benchmark peers' virtualenvs and the benchmarks' results.
MADE_AT_RUN_TIME = ("policy/venv", "bench/.venvs", "bench/results/")

_NAME = re.compile(r"`([a-z_]+)\.([A-Za-z_][A-Za-z_0-9]*)`")
_PATH = re.compile(r"`((?:infra|app|tests|bench|ci|model|policy|docs|\.ci|\.github)/"
                   r"[A-Za-z0-9_./-]+)`")


def _modules() -> dict[str, str]:
    """Short module name as the docs write it -> its import path."""
    found = {p.stem: f"infra.{p.stem}" for p in (ROOT / "infra").glob("*.py")}
    found |= {p.stem: f"tests.infra.{p.stem}" for p in (ROOT / "tests/infra").glob("*.py")}
    return found


def unresolved(text: str) -> list[str]:
    """The `module.NAME` references and quoted paths in ``text`` that name nothing."""
    modules, bad = _modules(), []
    for match in _NAME.finditer(text):
        module, name = match.groups()
        if module in modules and name != "py" \
                and not hasattr(importlib.import_module(modules[module]), name):
            bad.append(match.group(0))
    for match in _PATH.finditer(text):
        path = match.group(1).rstrip("/")
        if not any(c in path for c in "*<") and not path.startswith(MADE_AT_RUN_TIME) \
                and not (ROOT / path).exists():
            bad.append(match.group(0))
    return bad


def test_every_name_and_path_the_docs_quote_exists():
    bad = {doc.relative_to(ROOT).as_posix(): found for doc in DOCS
           if (found := unresolved(doc.read_text()))}
    assert not bad, f"rename these in the docs: {bad}"


def test_a_stale_name_or_path_would_be_caught():
    assert unresolved("a row of `boundary.NAMED_SERVICES` in `infra/boundaries.py`") == [
        "`boundary.NAMED_SERVICES`", "`infra/boundaries.py`"]
    assert unresolved("a row of `boundary.CEILING_NAMED` in `infra/boundary.py`, "
                      "`config.py`, `policy/venv`, `bench/results/x.json`") == []
