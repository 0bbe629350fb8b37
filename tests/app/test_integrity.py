"""A model version whose bytes differ from its manifest is never served."""

from __future__ import annotations

import hashlib
import json

import pytest

from app import ModelIntegrityError, create_app
from tests.conftest import MODEL_DIR, manifest_sha256


def _settings(folder, tmp_path, **extra):
    return {"MODEL_URI": str(folder), "MODEL_CACHE_DIR": str(tmp_path / "c"),
            "METRICS_ENABLED": "false", **extra}


def test_committed_release_verifies(manifest):
    for name, entry in manifest["files"].items():
        data = (MODEL_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size"]


def test_tampered_tflite_is_refused_naming_file_and_both_hashes(model_copy, tmp_path, manifest):
    path = model_copy / "model.tflite"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as info:
        create_app(_settings(model_copy, tmp_path))
    message = str(info.value)
    assert "model.tflite" in message and "sha256 mismatch" in message
    assert manifest["files"]["model.tflite"]["sha256"] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message


def test_missing_file_is_refused(model_copy, tmp_path):
    (model_copy / "model.keras").unlink()
    with pytest.raises(ModelIntegrityError, match="model.keras: missing"):
        create_app(_settings(model_copy, tmp_path))


def test_missing_manifest_is_refused(model_copy, tmp_path):
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ModelIntegrityError, match="manifest.json: not found"):
        create_app(_settings(model_copy, tmp_path))


def test_manifest_pinned_by_model_sha256(model_copy, tmp_path):
    real = manifest_sha256(model_copy)
    assert create_app(_settings(model_copy, tmp_path, MODEL_SHA256=real))
    wrong = "0" * 64
    with pytest.raises(ModelIntegrityError) as info:
        create_app(_settings(model_copy, tmp_path, MODEL_SHA256=wrong))
    assert wrong in str(info.value) and real in str(info.value)


def test_edited_manifest_still_fails_the_pin(model_copy, tmp_path):
    """Re-hashing a tampered file into the manifest does not get past MODEL_SHA256."""
    original = manifest_sha256(model_copy)
    (model_copy / "model.tflite").write_bytes(b"evil")
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["files"]["model.tflite"] = {"sha256": hashlib.sha256(b"evil").hexdigest(), "size": 4}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="MODEL_SHA256"):
        create_app(_settings(model_copy, tmp_path, MODEL_SHA256=original))


def test_malformed_manifest_is_refused(model_copy, tmp_path):
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        create_app(_settings(model_copy, tmp_path))
    (model_copy / "manifest.json").write_text(json.dumps({"name": "digits"}))
    with pytest.raises(ModelIntegrityError, match="missing keys"):
        create_app(_settings(model_copy, tmp_path))


def test_file_uri_and_missing_folder(tmp_path):
    assert create_app(_settings(f"file://{MODEL_DIR}", tmp_path))
    with pytest.raises(ModelIntegrityError, match="no such folder"):
        create_app(_settings(tmp_path / "nope", tmp_path))
