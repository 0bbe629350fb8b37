"""Released model versions (infra/releases.py): found, pinned and checked as the service
will check them, with a clear problem for each way a release can be wrong."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from infra import releases


@pytest.fixture
def model_root(tmp_path, monkeypatch):
    """A copy of the committed releases, to break."""
    root = tmp_path / "artifacts"
    shutil.copytree(releases.MODEL_ROOT / "digits" / "1", root / "digits" / "1")
    monkeypatch.setattr(releases, "MODEL_ROOT", root)
    return root


def test_the_committed_version_is_found_and_pinned_by_its_manifest():
    release, problems = releases.find("digits", "1")
    assert problems == []
    manifest = releases.MODEL_ROOT / "digits" / "1" / "manifest.json"
    assert release.manifest_sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert set(release.files) == {"manifest.json", *json.loads(manifest.read_text())["files"]}
    assert release.folder == manifest.parent and release.prefix == "models/digits/1"


def test_a_missing_version_names_the_committed_ones(model_root):
    release, [problem] = releases.find("digits", "7")
    assert release is None
    assert "no released version at model/artifacts/digits/7/manifest.json" in problem
    assert "committed versions: digits/1" in problem


def test_a_changed_or_missing_file_is_a_problem(model_root):
    (model_root / "digits" / "1" / "model.tflite").write_bytes(b"not the model")
    (model_root / "digits" / "1" / "model.keras").unlink()
    release, problems = releases.find("digits", "1")
    assert release is not None
    assert problems == ["model.keras is listed in the manifest but missing",
                        "model.tflite does not match its sha256 in the manifest (the service "
                        "would refuse to load it)"]


def test_a_manifest_of_another_version_or_without_files_is_refused(model_root):
    manifest = model_root / "digits" / "1" / "manifest.json"
    document = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**document, "version": "2"}))
    _, problems = releases.find("digits", "1")
    assert problems == ["the manifest in that folder names 'digits' version '2': folder and "
                        "manifest disagree"]
    manifest.write_text(json.dumps({"name": "digits", "version": "1"}))
    release, [problem] = releases.find("digits", "1")
    assert release is None and problem.endswith("is not a valid manifest (needs a files map)")


def test_an_entry_pins_a_release_by_its_manifest_hash(model_root):
    release, _ = releases.find("digits", "1")
    assert release.entry == f"digits/1@sha256:{release.manifest_sha256}"
    assert releases.pinned(release.entry) == (release, [])
    assert releases.pinned(f"  {release.entry} ") == (release, [])


@pytest.mark.parametrize("entry, words", [
    ("digits/1", ["is not pinned: write 'digits/1@sha256:", "so the stack file says exactly"]),
    ("digits/1@sha256:" + "0" * 64, ["manifest.json has sha256", "not the pinned one",
                                     "write 'digits/1@sha256:"]),
    ("digits/2@sha256:" + "0" * 64, ["no released version at model/artifacts/digits/2",
                                     "committed versions: digits/1"]),
    ("digits/1@sha256:ABC", ["must be <name>/<version>@sha256:"]),
    ("digits@sha256:" + "0" * 64, ["must be <name>/<version>@sha256:"]),
    ("../x/1", ["must be <name>/<version>@sha256:"]),
    (7, ["must be <name>/<version>@sha256:"]),
])
def test_a_bad_entry_says_what_to_write(model_root, entry, words):
    _, problems = releases.pinned(entry)
    assert problems
    for word in words:
        assert any(word in p for p in problems), (word, problems)
