"""A model version folder's manifest: reading it and proving the files are the reviewed bytes.

The manifest lists every file with its sha256 and size (design.md section 4). The service
refuses to start when a file is missing or differs, naming the file and both hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = ("name", "version", "input", "labels", "files")


class ModelIntegrityError(Exception):
    """The model version cannot be trusted or found; the service must not start."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def parse_manifest(raw: bytes, where: str, expected_sha256: str | None = None) -> dict:
    """Parse manifest bytes; check MODEL_SHA256 (when given) and the keys the service uses."""
    actual = sha256_bytes(raw)
    if expected_sha256 and actual != expected_sha256:
        raise ModelIntegrityError(
            f"{where}: sha256 mismatch: expected {expected_sha256} (MODEL_SHA256), "
            f"got {actual}. The model folder is not the pinned version; fix MODEL_URI or "
            "MODEL_SHA256 (in the stack: modelVersion in Pulumi.<stack>.yaml)")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ModelIntegrityError(f"{where}: not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in manifest] if isinstance(manifest, dict) else REQUIRED_KEYS
    if missing:
        raise ModelIntegrityError(f"{where}: missing keys {', '.join(missing)}; "
                                  "regenerate it with `python -m model.train`")
    files = manifest["files"]
    if not isinstance(files, dict) or "model.tflite" not in files:
        raise ModelIntegrityError(f"{where}: 'files' must list model.tflite with its sha256")
    for name, entry in files.items():
        if "/" in name or name.startswith(".") or not isinstance(entry, dict) or "sha256" not in entry:
            raise ModelIntegrityError(f"{where}: bad file entry {name!r}: {entry!r}")
    manifest["_manifest_sha256"] = actual
    return manifest


def verify_file(path: Path, name: str, entry: dict) -> None:
    if not path.is_file():
        raise ModelIntegrityError(
            f"{name}: missing from {path.parent} (the manifest lists it with sha256 "
            f"{entry['sha256']}); upload the whole version folder again")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ModelIntegrityError(
            f"{name}: sha256 mismatch in {path.parent}: manifest says {entry['sha256']}, "
            f"file has {actual}. Refusing to serve a model that is not the released version; "
            "restore the file from the release (model/artifacts/) or release a new version")


def verify_folder(folder: Path, expected_manifest_sha256: str | None = None) -> dict:
    """Verify every file of a local version folder; return the manifest."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelIntegrityError(
            f"{MANIFEST_NAME}: not found in {folder}; MODEL_URI must point at a model version "
            "folder such as model/artifacts/digits/1")
    manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path), expected_manifest_sha256)
    for name, entry in manifest["files"].items():
        verify_file(folder / name, name, entry)
    return manifest
