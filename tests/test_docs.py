"""The docs (README.md, docs/*.md) name only what exists: every `module.NAME` of infra/ or of
tests/infra/ resolves, every repository path they quote is there, and every relative link
lands on a file and, with a #fragment, on one of its headings. Names in prose rot silently
when code is renamed or a section retitled; this keeps "where to change what" true."""

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
_LINK = re.compile(r"\]\(([^)\s#]*)(?:#([^)\s]+))?\)")
_FENCED = re.compile(r"^```.*?^```", re.M | re.S)


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


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces
    to '-' (lines in code blocks are not headings)."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", _FENCED.sub("", text), re.M)}


def broken_links(doc: Path, text: str) -> list[str]:
    """The relative links in ``text`` (a page at ``doc``) whose file or heading is missing."""
    bad = []
    for match in _LINK.finditer(_FENCED.sub("", text)):
        path, anchor = match.groups()
        if re.match(r"[a-z]+:", path):             # https:, mailto:: not ours to check
            continue
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(
                text if target == doc else target.read_text())):
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


def test_every_relative_link_lands_on_a_file_and_heading():
    bad = {doc.relative_to(ROOT).as_posix(): found for doc in DOCS
           if (found := broken_links(doc, doc.read_text()))}
    assert not bad, f"fix these links: {bad}"


def test_a_link_to_a_missing_file_or_heading_would_be_caught():
    doc = ROOT / "docs" / "model.md"
    text = ("# Versions and promotion\n```bash\n# not a heading\n```\n"
            "[a](api.md#several-models-and-versions) [b](#versions-and-promotion) "
            "[c](figures/image.svg) [d](https://example.com/#x) "
            "[e](api.md#several-models) [f](#not-a-heading) [g](nowhere.md)")
    assert broken_links(doc, text) == ["](api.md#several-models)", "](#not-a-heading)",
                                       "](nowhere.md)"]
