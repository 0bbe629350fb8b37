"""A model version folder's manifest: reading it and proving the files are the reviewed bytes.

The manifest lists every file with its sha256 and size (design.md section 4). The service
refuses to start when a file is missing or differs, naming the file and both hashes.
``serving_spec`` reads what serving needs (the input and output contract) from either
schema version (docs/model.md, "The manifest"), with schema 1's defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = ("name", "version", "input", "files")
# A name becomes a URL segment, an S3 prefix and a metrics dimension; a version is a positive
# integer (TF Serving's rule). model/manifest.schema.json says the same.
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION_RULE = re.compile(r"^[1-9][0-9]{0,63}$")   # 64 digits at most, like a name
TENSOR_NAME_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
TENSOR_NAME_TEXT = "1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or _"
# The input types LiteRT models take that the service converts request numbers to:
# dtype -> (smallest, largest) value, None for float32's (any finite number).
DTYPES: dict[str, tuple[int, int] | None] = {
    "float32": None, "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1),
    "int8": (-128, 127), "uint8": (0, 255)}
DTYPE_RULE = re.compile("^(" + "|".join(DTYPES) + ")$")
# Schema 1 (no schema_version: digits/1 only) predates these keys.
SCHEMA_1_DEFAULTS = {"input_name": "pixels", "input_dtype": "float32", "output_dtype": "float32"}


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
            "MODEL_SHA256 (in the stack: the model's line under ml-app:models in "
            "Pulumi.<stack>.yaml)")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ModelIntegrityError(f"{where}: not valid JSON ({exc})") from None
    required = REQUIRED_KEYS
    if isinstance(manifest, dict) and "schema_version" not in manifest:
        required += ("labels",)                        # schema 1 always has labels
    missing = [k for k in required if k not in manifest] if isinstance(manifest, dict) else required
    if missing:
        raise ModelIntegrityError(f"{where}: missing keys {', '.join(missing)}; release the "
                                  "model again with `make release` (docs/model.md)")
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


@dataclass(frozen=True)
class ServingSpec:
    """What one model version takes and gives, as the service validates and describes it."""

    name: str
    version: str
    input_name: str
    shape: tuple[int, ...]               # one instance, without the batch dimension
    dtype: str                           # a key of DTYPES
    lo: float
    hi: float
    description: str
    output_name: str
    output_shape: tuple[int, ...]
    output_dtype: str
    labels: tuple[str, ...] | None       # a classifier's, one per output entry

    @property
    def whole_numbers(self) -> bool:
        return DTYPES[self.dtype] is not None


def _is_number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def serving_spec(manifest: dict, where: str) -> ServingSpec:
    """The serving contract of a parsed manifest; ModelIntegrityError listing every key that
    is missing or unusable (a release writes valid ones: this guards against hand edits)."""
    schema_1 = "schema_version" not in manifest
    defaults = SCHEMA_1_DEFAULTS if schema_1 else {}
    problems: list[str] = []
    name, version = manifest.get("name"), str(manifest.get("version"))
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        problems.append(f"name {name!r} must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a "
                        "letter or digit")
    if not VERSION_RULE.fullmatch(version):
        problems.append(f"version {version!r} must be a positive whole number of at most 64 "
                        "digits")
    spec_in = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    spec_out = manifest.get("output")
    if spec_out is None and schema_1 and isinstance(manifest.get("labels"), list):
        spec_out = {"name": "probabilities", "shape": [len(manifest["labels"])]}
    spec_out = spec_out if isinstance(spec_out, dict) else {}

    def shape_of(section: dict, key: str) -> tuple[int, ...]:
        shape = section.get("shape")
        if not (isinstance(shape, list) and shape
                and all(type(d) is int and d >= 1 for d in shape)):
            problems.append(f"{key}.shape {shape!r} must be a non-empty list of whole numbers "
                            ">= 1 (one instance, without the batch dimension)")
            return (1,)
        return tuple(shape)

    def text(section: dict, key: str, field: str, rule: re.Pattern, what: str) -> str:
        value = section.get(field, defaults.get(f"{key}_{field}"))
        if not isinstance(value, str) or not rule.fullmatch(value):
            problems.append(f"{key}.{field} {value!r} must be {what}")
            return "?"
        return value

    shape = shape_of(spec_in, "input")
    dtype = text(spec_in, "input", "dtype", DTYPE_RULE, f"one of {', '.join(DTYPES)}")
    lo, hi = spec_in.get("min"), spec_in.get("max")
    if not (_is_number(lo) and _is_number(hi) and lo < hi):
        problems.append(f"input.min {lo!r} and input.max {hi!r} must be finite numbers, min "
                        "below max")
        lo, hi = 0.0, 1.0
    elif DTYPES.get(dtype) is not None:   # an integer input: whole bounds within its range
        least, most = DTYPES[dtype]
        if not (float(lo).is_integer() and float(hi).is_integer() and least <= lo and hi <= most):
            problems.append(f"input.min {lo!r} and input.max {hi!r} must be whole numbers "
                            f"within {dtype}'s range {least}..{most}")
    labels = manifest.get("labels")
    output_shape = shape_of(spec_out, "output")
    if labels is not None:
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
                and len(set(labels)) == len(labels)):
            problems.append("labels must be a list of unique, non-empty strings")
        elif output_shape != (len(labels),):
            problems.append(f"labels: {len(labels)} labels but output.shape "
                            f"{list(output_shape)}; a label names each entry of a "
                            "one-dimensional output")
    spec = ServingSpec(
        name=str(name), version=version,
        input_name=text(spec_in, "input", "name", TENSOR_NAME_RULE, TENSOR_NAME_TEXT),
        shape=shape, dtype=dtype,
        lo=lo, hi=hi, description=str(spec_in.get("description", "")),
        output_name=text(spec_out, "output", "name", TENSOR_NAME_RULE, TENSOR_NAME_TEXT),
        output_shape=output_shape,
        output_dtype=text(spec_out, "output", "dtype", re.compile(r"^[a-z][a-z0-9]{0,15}$"),
                          "a tensor type such as float32"),
        labels=tuple(labels) if isinstance(labels, list) else None)
    if problems:
        raise ModelIntegrityError(f"{where}: " + "; ".join(problems) + ". Release the model "
                                  "again with `make release` (docs/model.md, The manifest)")
    return spec
