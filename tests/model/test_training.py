"""Training is reproducible, export is verified, and the released version is what it claims."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from model import data
from model.train import main
from tests.conftest import MODEL_DIR, ROOT


def test_committed_manifest_describes_the_release(manifest):
    assert (manifest["name"], manifest["version"]) == ("digits", "1")
    assert manifest["input"] == {**manifest["input"], "shape": [8, 8], "dtype": "float32",
                                 "min": 0.0, "max": 16.0}
    assert manifest["labels"] == [str(d) for d in range(10)]
    metrics = manifest["metrics"]
    assert metrics["heldout_accuracy"] >= 0.95 and metrics["heldout_samples"] == 360
    assert metrics["parity_max_abs_diff"] <= 1e-4 and metrics["parity_argmax_agreement"] == 1.0
    assert {"tensorflow", "keras", "python"} <= set(manifest["framework"])
    assert set(manifest["files"]) == {"model.tflite", "model.keras"}
    # the data it was trained on is the data this machine loads
    assert manifest["training"]["data_fingerprint"] == data.fingerprint()


def test_split_is_fixed_and_stratified():
    a, b = data.load_split(), data.load_split()
    assert np.array_equal(a.y_test, b.y_test) and len(a.y_test) == 360
    counts = np.bincount(a.y_test)
    assert counts.min() >= 35 and counts.max() <= 37


def test_refuses_to_overwrite_a_released_version(capsys):
    assert main(["--version", "1"]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, word", [(["--version", "abc"], "positive integers"),
                                        (["--epochs", "0"], "at least 1"),
                                        (["--name", "../x"], "name '../x'")])
def test_bad_arguments(args, word, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(args + ["--out", str(tmp_path)])
    assert word in capsys.readouterr().err


@pytest.mark.slow
def test_two_trainings_give_the_same_weights():
    from model.train import train

    a, _, acc_a = train(seed=7, epochs=2, verbose=0)
    b, _, acc_b = train(seed=7, epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    assert acc_a == acc_b


@pytest.mark.slow
def test_retraining_reproduces_the_committed_release(tmp_path, manifest):
    run = subprocess.run([sys.executable, "-m", "model.train", "--out", str(tmp_path),
                          "--version", "1", "--seed", str(manifest["training"]["seed"]),
                          "--epochs", str(manifest["training"]["epochs"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    # progress (epochs, then each release step), then one summary line
    assert "Epoch 40/40" in run.stdout and "[train] parity: max abs diff" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith(
        f"trained and released digits version 1 to {tmp_path / 'digits' / '1'}: 3 files")
    retrained = json.loads((tmp_path / "digits" / "1" / "manifest.json").read_text())
    assert retrained["metrics"]["heldout_accuracy"] == pytest.approx(
        manifest["metrics"]["heldout_accuracy"], abs=0.01)
    assert retrained["training"]["data_fingerprint"] == manifest["training"]["data_fingerprint"]
    # The new folder is complete and self-consistent, like the committed one, in the
    # committed version's terms (schema 2 adds to schema 1, changes nothing it had).
    from app.manifest import verify_folder
    from model.manifest import verify_version
    assert verify_folder(tmp_path / "digits" / "1")["version"] == "1"
    assert verify_version(tmp_path / "digits" / "1")["schema_version"] == 2
    for key in ("input", "output"):
        assert retrained[key] == {**retrained[key], **manifest[key]}
    assert retrained["labels"] == manifest["labels"] and retrained["input"]["name"] == "pixels"
    assert retrained["metrics"]["parity_argmax_agreement"] == 1.0
    assert oct((tmp_path / "digits" / "1").stat().st_mode)[-3:] == "755"


def test_committed_files_match_their_hashes():
    from app.manifest import verify_folder
    assert verify_folder(MODEL_DIR)["name"] == "digits"
