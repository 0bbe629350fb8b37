"""The image tag is a hash of exactly what Docker would build from (infra/build_context.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.build_context import build_inputs_hash, context_files, is_excluded, parse_dockerignore


def make_context(root: Path, files: dict[str, str], dockerignore: str | None) -> Path:
    for rel, text in {"Dockerfile": "FROM scratch\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    return root


def digest(root: Path) -> str:
    build_inputs_hash.cache_clear()
    return build_inputs_hash(root, "Dockerfile", "linux/amd64", ())


@pytest.mark.parametrize("path,excluded", [
    ("app/x.py", False), ("app/static/a.js", False), ("model/m.tflite", True),
    (".venv/lib/x.py", True), ("app/__pycache__/x.pyc", True),
    ("app/sub/__pycache__/y.pyc", True), ("README.md", True),
])
def test_allow_list_dockerignore_semantics(path, excluded):
    patterns = parse_dockerignore("# allow-list\n*\n!app/\napp/**/__pycache__\n")
    assert is_excluded(path, patterns) is excluded


@pytest.mark.parametrize("pattern,path,excluded", [
    ("*.md", "README.md", True), ("*.md", "docs/a.md", False), ("**/*.md", "docs/a.md", True),
    ("docs", "docs/deep/a.txt", True), ("/tmp", "tmp/x", True), ("a?c", "abc", True),
    ("[ab]x", "bx", True), ("[!ab]x", "bx", False),
])
def test_glob_rules(pattern, path, excluded):
    assert is_excluded(path, parse_dockerignore(pattern)) is excluded


def test_last_matching_pattern_wins():
    patterns = parse_dockerignore("docs\n!docs/keep.md\n")
    assert not is_excluded("docs/keep.md", patterns) and is_excluded("docs/other.md", patterns)


def test_hash_follows_the_context_and_only_the_context(tmp_path):
    root = make_context(tmp_path, {"app/main.py": "print(1)\n", "model/big.bin": "x",
                                   "notes.md": "n"}, "*\n!app/\n")
    assert context_files(root) == ["app/main.py"]
    before = digest(root)
    (root / "model" / "big.bin").write_text("changed")      # outside the context
    (root / "notes.md").write_text("changed")
    assert digest(root) == before
    (root / "app" / "main.py").write_text("print(2)\n")      # inside
    assert digest(root) != before
    changed_code = digest(root)
    (root / "Dockerfile").write_text("FROM scratch\nUSER 1\n")  # the Dockerfile itself
    assert digest(root) != changed_code


def test_platform_and_build_args_change_the_hash(tmp_path):
    root = make_context(tmp_path, {"app/main.py": "x"}, None)
    base = build_inputs_hash(root, "Dockerfile", "linux/amd64", ())
    assert build_inputs_hash(root, "Dockerfile", "linux/arm64", ()) != base
    assert build_inputs_hash(root, "Dockerfile", "linux/amd64", (("A", "1"),)) != base


def test_the_repository_context_is_the_app_folder():
    root = Path(__file__).resolve().parents[2]
    files = context_files(root)
    assert files and all(f.startswith("app/") for f in files), files[:5]
    assert "app/wsgi.py" in files and not any("__pycache__" in f for f in files)
