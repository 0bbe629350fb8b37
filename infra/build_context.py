"""A content hash of a Docker build's inputs, used as the image tag.

Tagging by content rather than by commit means a commit that does not touch the image does
not redeploy it (pulumi-docker#872), and the same inputs always give the same tag, which an
ECR repository with immutable tags then accepts exactly once.

The inputs are the Dockerfile, the build platform and arguments, and every file of the
context that ``.dockerignore`` lets through. The matcher follows Docker's rules: patterns
are slash-separated globs (``*``, ``?``, ``[...]``, ``**`` for any number of directories),
a pattern also matches everything below a matching directory, ``!`` re-includes, and the
last matching pattern wins.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_GLOB_CHARS = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    literal_prefix: str   # the part before the first glob character


def _translate(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def parse_dockerignore(text: str) -> list[_Pattern]:
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        if body in ("", "."):
            continue
        match = _GLOB_CHARS.search(body)
        prefix = body[:match.start()] if match else body
        patterns.append(_Pattern(_translate(body), negated, prefix))
    return patterns


def is_excluded(rel_path: str, patterns: list[_Pattern]) -> bool:
    """BuildKit's rule (MatchesOrParentMatches): the last pattern matching the path or one of
    its parent folders decides."""
    parts = rel_path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(len(parts), 0, -1)]
    excluded = False
    for p in patterns:
        if any(p.regex.match(prefix) for prefix in prefixes):
            excluded = not p.negated
    return excluded


def _may_reinclude(rel_dir: str, patterns: list[_Pattern]) -> bool:
    """Could a negated pattern bring back something under an excluded folder?"""
    return any(p.negated and (p.literal_prefix.startswith(rel_dir + "/")
                              or rel_dir.startswith(p.literal_prefix.rstrip("/"))
                              or not p.literal_prefix)
               for p in patterns)


def context_files(context: Path) -> list[str]:
    """Relative paths of the files Docker would send, sorted."""
    ignore = context / ".dockerignore"
    patterns = parse_dockerignore(ignore.read_text()) if ignore.is_file() else []
    found = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d == ".git" or (is_excluded(rel, patterns) and not _may_reinclude(rel, patterns)):
                continue  # prune: nothing below can be sent
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if not is_excluded(rel, patterns):
                found.append(rel)
    return sorted(found)


@lru_cache(maxsize=8)
def build_inputs_hash(context: Path, dockerfile: str, platform: str,
                      build_args: tuple[tuple[str, str], ...] = ()) -> str:
    """sha256 over the Dockerfile, platform, build args and the context's files."""
    digest = hashlib.sha256()
    digest.update(f"platform={platform}\n".encode())
    for key, value in sorted(build_args):
        digest.update(f"arg {key}={value}\n".encode())
    digest.update(b"dockerfile\n" + (context / dockerfile).read_bytes())
    for rel in context_files(context):
        path = context / rel
        mode = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"\nfile {rel} {mode} ".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
