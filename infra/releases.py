"""Released model versions: what ``make train`` commits and a stack deploys.

A release is a folder ``model/artifacts/<name>/<version>/`` committed to git whose
``manifest.json`` names the model and its version and holds the sha256 of every file
(design.md 4). ``find`` reads one and checks it as the service will before it serves: the
files exist and match their hashes. A stack pins a release by the sha256 of its manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MODEL_ROOT = Path(__file__).resolve().parents[1] / "model" / "artifacts"
MANIFEST_NAME = "manifest.json"


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
