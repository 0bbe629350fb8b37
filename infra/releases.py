"""Released model versions: what ``make release`` commits and a stack deploys.

A release is a folder ``model/artifacts/<name>/<version>/`` committed to git whose
``manifest.json`` names the model and its version and holds the sha256 of every file
(design.md 4). ``find`` reads one and checks it as the service will before it serves: the
files exist and match their hashes. A stack pins each release it deploys by the sha256 of
its manifest, one entry of ``ml-app:models`` each: ``<name>/<version>@sha256:<hash>``
(``pinned`` reads and checks one).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_ROOT = Path(__file__).resolve().parents[1] / "model" / "artifacts"
MANIFEST_NAME = "manifest.json"
# A name or version is a folder under model/artifacts/, an S3 prefix segment and a URL segment
# (the rule model/release.py and app/manifest.py apply too).
PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
ENTRY = re.compile(rf"^(?P<name>{PART})/(?P<version>{PART})(?:@sha256:(?P<sha256>[0-9a-f]{{64}}))?$")
ENTRY_FORM = "<name>/<version>@sha256:<sha256 of its manifest.json>"


@dataclass(frozen=True)
class ModelVersion:
    """A released model version, pinned by the sha256 of its manifest."""

    name: str
    version: str
    manifest_sha256: str
    files: tuple[str, ...]          # file names in the folder, the manifest included

    @property
    def folder(self) -> Path:
        return MODEL_ROOT / self.name / self.version

    @property
    def prefix(self) -> str:
        """Key prefix of this version in the model bucket."""
        return f"models/{self.name}/{self.version}"

    @property
    def entry(self) -> str:
        """How a stack file pins this version (one entry of ml-app:models)."""
        return f"{self.name}/{self.version}@sha256:{self.manifest_sha256}"


def find(name: str, version: str) -> tuple[ModelVersion | None, list[str]]:
    """The committed release ``name``/``version``, and what is wrong with it (each a rule
    that names the file; empty when it can be deployed)."""
    folder = MODEL_ROOT / name / version
    where = f"model/artifacts/{name}/{version}/{MANIFEST_NAME}"
    if not (folder / MANIFEST_NAME).is_file():
        available = sorted(str(p.parent.relative_to(MODEL_ROOT))
                           for p in MODEL_ROOT.glob(f"*/*/{MANIFEST_NAME}"))
        return None, [f"no released version at {where} "
                      f"(committed versions: {', '.join(available) or 'none'})"]
    raw = (folder / MANIFEST_NAME).read_bytes()
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return None, [f"{where} is not a valid manifest (needs a files map)"]
    problems = []
    if manifest.get("name") != name or str(manifest.get("version")) != version:
        problems.append(f"the manifest in that folder names {manifest.get('name')!r} version "
                        f"{manifest.get('version')!r}: folder and manifest disagree")
    for file_name, entry in sorted(files.items()):
        path = folder / file_name
        if not path.is_file():
            problems.append(f"{file_name} is listed in the manifest but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            problems.append(f"{file_name} does not match its sha256 in the manifest "
                            "(the service would refuse to load it)")
    return ModelVersion(name, version, hashlib.sha256(raw).hexdigest(),
                        tuple(sorted([MANIFEST_NAME, *files]))), problems


def pinned(entry: str) -> tuple[ModelVersion | None, list[str]]:
    """The release one ``ml-app:models`` entry names, and what is wrong with the entry or
    the release (each problem says what to write instead, where it can)."""
    found = ENTRY.match(entry.strip()) if isinstance(entry, str) else None
    if not found:
        return None, [f"entry {entry!r} must be {ENTRY_FORM}, e.g. "
                      "digits/1@sha256:6c06...; name and version are 1 to 64 of A-Z a-z 0-9 "
                      ". _ - (folders under model/artifacts/)"]
    name, version, pin = found.group("name", "version", "sha256")
    release, problems = find(name, version)
    if release is None:
        return None, [f"entry {entry!r}: {problem}" for problem in problems]
    problems = [f"entry {entry!r}: {problem}" for problem in problems]
    if pin is None:
        problems.append(f"entry {entry!r} is not pinned: write {release.entry!r} (the sha256 "
                        f"of model/artifacts/{name}/{version}/{MANIFEST_NAME}), so the stack "
                        "file says exactly which bytes it deploys")
    elif pin != release.manifest_sha256:
        problems.append(f"entry {entry!r}: model/artifacts/{name}/{version}/{MANIFEST_NAME} has "
                        f"sha256 {release.manifest_sha256}, not the pinned one; a released "
                        "version never changes: restore the committed folder, or if this "
                        f"release is the one to deploy, write {release.entry!r}")
    return release, problems
