"""The manifest contract on the release side: model/manifest.schema.json, the rules a JSON
Schema cannot say, and verifying a version folder. The service keeps its own reader in
app/manifest.py (the image holds nothing from model/); the hashing helpers and the naming
rules are shared, so a release accepts exactly the names and types the service does."""

from __future__ import annotations

import json
from pathlib import Path

from app.manifest import (DTYPES, MANIFEST_NAME, NAME_RULE, TENSOR_NAME_RULE, VERSION_RULE,
                          file_entry, sha256_file, verify_file)

__all__ = ["DTYPES", "MANIFEST_NAME", "NAME_RULE", "SCHEMA_PATH", "TENSOR_NAME_RULE",
           "VERSION_RULE", "file_entry", "schema_problems", "sha256_file", "verify_version"]

SCHEMA_PATH = Path(__file__).resolve().parent / "manifest.schema.json"


def schema_problems(manifest: dict) -> list[str]:
    """Where a manifest breaks model/manifest.schema.json, plus what JSON Schema cannot say:
    labels name the entries of a one-dimensional output, and min is below max."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in validator.iter_errors(manifest)]
    if problems:
        return problems
    labels, output, spec = manifest.get("labels"), manifest.get("output"), manifest["input"]
    if labels is not None and output is not None and output["shape"] != [len(labels)]:
        problems.append(f"labels: {len(labels)} labels but output shape {output['shape']}")
    if not spec["min"] < spec["max"]:
        problems.append(f"input: min {spec['min']} is not below max {spec['max']}")
    return problems


def verify_version(folder: Path) -> dict:
    """Check a version folder as a release leaves it: the manifest keeps to the schema, names
    this folder, and every listed file has its sha256. Return the manifest; raise ValueError
    (schema, naming) or app.manifest.ModelIntegrityError (files)."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    problems = schema_problems(manifest)
    if (manifest.get("name"), manifest.get("version")) != (folder.parent.name, folder.name):
        problems.append(f"manifest names {manifest.get('name')}/{manifest.get('version')}, "
                        f"the folder is {folder.parent.name}/{folder.name}")
    if problems:
        raise ValueError(f"{folder / MANIFEST_NAME}: " + "; ".join(problems))
    for name, entry in manifest["files"].items():
        verify_file(folder / name, name, entry)
    return manifest
