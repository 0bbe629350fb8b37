"""`make release`: any Keras model (.keras, .h5, SavedModel) becomes a verified version folder,
or nothing at all, with a message that says why and what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from model.manifest import verify_version
from tests.conftest import ROOT
from tests.model.conftest import litert, tree

RANGE = ("--input-min=-1", "--input-max=1")


def original(manifest, folder, x):
    """Run the original model the version folder kept (not the one we released from)."""
    import keras
    import tensorflow as tf

    kept = folder / manifest["source"]["file"]
    if manifest["source"]["format"] == "saved_model":
        with tarfile.open(kept) as tar:
            tar.extractall(folder.parent / "untarred", filter="data")
        fn = tf.saved_model.load(str(folder.parent / "untarred" / "saved_model")).signatures[
            manifest["source"]["signature"]]
        return next(iter(fn(**{manifest["input"]["name"]: tf.constant(x)}).values())).numpy()
    return keras.saving.load_model(kept, compile=False).predict(x, verbose=0)


@pytest.mark.parametrize("fmt, kept, input_name, output_name", [
    ("keras", "model.keras", "reading", "scores"),
    ("h5", "model.h5", "reading", "scores"),
    ("saved_model", "saved_model.tar", "reading", "output_0"),
])
def test_releases_each_format(models, release, tmp_path, fmt, kept, input_name, output_name):
    code, out, err = release(models[fmt], "--name", "sensor", *RANGE, "--labels", "low,mid,high",
                             "--out", tmp_path)
    assert code == 0, err
    folder = tmp_path / "sensor" / "1"
    assert tree(tmp_path) == sorted(["sensor", "sensor/1", "sensor/1/manifest.json",
                                     f"sensor/1/{kept}", "sensor/1/model.tflite"])
    manifest = verify_version(folder)  # schema, folder name, every file's sha256
    assert manifest["schema_version"] == 2
    assert manifest["source"]["format"] == fmt and manifest["source"]["file"] == kept
    assert manifest["input"] == {"name": input_name, "shape": [6], "dtype": "float32",
                                 "min": -1.0, "max": 1.0}
    assert manifest["output"] == {"name": output_name, "shape": [3], "dtype": "float32"}
    assert manifest["labels"] == ["low", "mid", "high"]
    assert {"python", "tensorflow", "keras", "ai_edge_litert", "numpy"} <= \
        set(manifest["framework"])
    metrics = manifest["metrics"]
    assert metrics["parity_samples"] == 256 and metrics["parity_argmax_agreement"] == 1.0
    assert 0 <= metrics["parity_max_abs_diff"] <= 1e-4
    assert manifest["parity"]["inputs"].startswith("generated: 256 inputs uniform in [-1, 1]")
    assert manifest["parity"]["batch_sizes"] == [256, 1]
    if fmt != "saved_model":  # the kept original is the user's file, byte for byte
        assert (folder / kept).read_bytes() == models[fmt].read_bytes()

    # The released LiteRT model answers like the kept original, at batch sizes of our choosing.
    x = np.random.default_rng(5).uniform(-1, 1, (7, 6)).astype(np.float32)
    np.testing.assert_allclose(litert(folder / "model.tflite", x), original(manifest, folder, x),
                               atol=1e-5)
    assert litert(folder / "model.tflite", x[:1]).shape == (1, 3)

    # Progress as it goes, then one summary line.
    lines = out.strip().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["loading", "converting", "checking",
                                                        "parity:"]
    assert lines[-1].startswith(f"released sensor version 1 to {folder}: 3 files")
    assert "parity max abs diff" in lines[-1] and lines[-1].endswith("s")
    assert oct(folder.stat().st_mode)[-3:] == "755"


def test_saved_model_tar_is_reproducible(models, release, tmp_path):
    """Two releases of one SavedModel keep byte-identical tars (no timestamps, no owners), so
    the same model always has the same sha256 in review."""
    for _ in range(2):
        assert release(models["saved_model"], "--name", "s", *RANGE, "--out", tmp_path)[0] == 0
    hashes = {json.loads((tmp_path / "s" / v / "manifest.json").read_text())["files"]
              ["saved_model.tar"]["sha256"] for v in ("1", "2")}
    assert len(hashes) == 1


def test_integer_input_with_open_dimension(models, release, tmp_path):
    """An unnamed int32 input with an open length: --input-shape fixes it, the name defaults to
    'input', generated inputs are whole numbers inside the range (valid token ids here)."""
    code, _, err = release(models["tokens"], "--name", "tokens", "--input-min=0",
                           "--input-max=9", "--out", tmp_path)
    assert code == 1 and "open dimensions" in err and "--input-shape" in err
    assert tree(tmp_path) == []
    code, _, err = release(models["tokens"], "--name", "tokens", "--input-min=0",
                           "--input-max=9", "--input-shape", "5", "--out", tmp_path)
    assert code == 0, err
    manifest = verify_version(tmp_path / "tokens" / "1")
    assert manifest["input"] == {"name": "input", "shape": [5], "dtype": "int32", "min": 0,
                                 "max": 9}
    assert "labels" not in manifest and manifest["output"]["shape"] == [2]
    x = np.array([[0, 9, 3, 3, 1]], dtype=np.int32)
    assert litert(tmp_path / "tokens" / "1" / "model.tflite", x).shape == (1, 2)


def test_sample_file_is_the_parity_input(models, release, tmp_path):
    sample = tmp_path / "readings.csv"
    rows = np.random.default_rng(1).uniform(-1, 1, (12, 6))
    sample.write_text("\n".join(",".join(f"{v:.5f}" for v in row) for row in rows) + "\n")
    code, out, err = release(models["keras"], "--name", "s", *RANGE, "--sample", sample,
                             "--out", tmp_path / "out")
    assert code == 0, err
    manifest = verify_version(tmp_path / "out" / "s" / "1")
    assert manifest["metrics"]["parity_samples"] == 12
    assert manifest["parity"]["inputs"].startswith("sample file readings.csv: 12 inputs (sha256 ")
    assert "checking parity on 12 inputs (sample file readings.csv)" in out


def test_own_metrics_and_names_are_recorded(models, release, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"heldout_accuracy": 0.91, "heldout_samples": 300}')
    code, _, err = release(models["keras"], "--name", "s", *RANGE, "--metrics", metrics,
                           "--input-name", "x", "--output-name", "probabilities",
                           "--description", "six readings", "--out", tmp_path)
    assert code == 0, err
    manifest = verify_version(tmp_path / "s" / "1")
    assert manifest["metrics"]["heldout_accuracy"] == 0.91
    assert manifest["input"]["name"] == "x" and manifest["input"]["description"] == "six readings"
    assert manifest["output"]["name"] == "probabilities"


# --- refusals: nothing is written -----------------------------------------------------------

@pytest.mark.parametrize("model, args, ops", [
    ("sm_det", ("--input-min=-1", "--input-max=1"), ["MatrixDeterminant"]),
    ("keras_det", ("--input-min=-1", "--input-max=1"), ["MatrixDeterminant"]),
])
def test_unsupported_operations_are_refused_by_name(models, release, tmp_path, model, args, ops):
    code, out, err = release(models[model], "--name", "m", *args, "--out", tmp_path)
    assert code == 1
    assert "LiteRT cannot run this model: it uses 1 unsupported operation: " in err
    for op in ops:
        assert op in err
    assert "What to do: replace these operations" in err and "Select TF ops" in err
    assert "nothing was written" in out and tree(tmp_path) == []


def test_unsupported_ops_are_named_from_converter_text_too():
    """Where the converter gives no structured errors, its text still names the ops."""
    from model.parity import unsupported_ops

    text = ("error: 'tf.Svd' op is neither a custom op nor a flex op\n"
            "Node number 3 (FlexRFFT) failed to prepare.\n"
            "Didn't find op for builtin opcode 'STABLEHLO_SCATTER' version '2'")
    assert set(unsupported_ops(RuntimeError(text))) == {"Svd", "FlexRFFT", "STABLEHLO_SCATTER"}


def concrete_function_conversion(self, spec, path):
    """The conversion Keras' LiteRT export replaced here: from a concrete function, it gives a
    model.tflite that returns NaN for the digits CNN (seen once; the parity check caught it)."""
    import tensorflow as tf

    fn = tf.function(lambda x: self.model(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, *spec.shape), spec.dtype))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], self.model)
    path.write_bytes(converter.convert())


def test_a_conversion_that_breaks_the_model_is_refused(release, tmp_path, monkeypatch):
    from model.sources import KerasSource

    monkeypatch.setattr(KerasSource, "to_litert", concrete_function_conversion)
    code, out, err = release(ROOT / "model" / "artifacts" / "digits" / "1" / "model.keras",
                             "--name", "digits", "--input-min=0", "--input-max=16",
                             "--out", tmp_path)
    assert code == 1
    assert "LiteRT does not reproduce the original model: 2560 of 2560 output values differ " \
           "by more than 0.0001 + 0.0001 x |original| (worst: input 0, output [0]: " in err
    assert "LiteRT nan)" in err and "2560 LiteRT values are NaN" in err
    assert "--atol" in err
    assert "nothing was written" in out and tree(tmp_path) == []


def test_parity_tolerance_is_absolute_plus_relative():
    from model.parity import ParityError, check_parity

    original = np.array([[0.5, 0.5], [200.0, -3.0]], dtype=np.float32)
    # 200 * 1e-4 = 0.02 allowed on the large value; 0.0001 + 0.00005 on the small ones
    within = original + np.array([[1e-4, -1e-4], [0.019, 0.0]], dtype=np.float32)
    assert check_parity(original, within)["max_abs_diff"] == pytest.approx(0.019, rel=1e-3)
    beyond = original + np.array([[0.0, 0.0], [0.0, 0.01]], dtype=np.float32)
    with pytest.raises(ParityError, match=r"1 of 4 output values differ by more than 0.0001 \+ "
                                          r"0.0001 x \|original\| \(worst: input 1, output \[1\]: "
                                          r"original -3, LiteRT -2.99"):
        check_parity(original, beyond)
    assert check_parity(original, beyond, atol=0.02)["max_abs_diff"] == pytest.approx(0.01, 1e-3)
    with pytest.raises(ParityError, match=r"shape \(3\), the original model \(2\)"):
        check_parity(original, np.zeros((2, 3), np.float32))


def test_argmax_agreement_is_measured_for_classifiers():
    from model.parity import check_parity

    probs = np.array([[0.1, 0.9], [0.6, 0.4]], dtype=np.float32)
    assert check_parity(probs, probs, classifier=True)["argmax_agreement"] == 1.0
    assert "argmax_agreement" not in check_parity(probs, probs)


def test_an_original_that_returns_nan_in_range_is_refused(models, release, tmp_path):
    code, _, err = release(models["sm_log"], "--name", "log", *RANGE, "--out", tmp_path)
    assert code == 1 and "the original model itself returns NaN or infinity" in err
    assert tree(tmp_path) == []
    # with a range where log is defined, the same model releases
    assert release(models["sm_log"], "--name", "log", "--input-min=0.5", "--input-max=2",
                   "--out", tmp_path)[0] == 0


def test_failure_leaves_existing_versions_alone(models, release, tmp_path):
    assert release(models["keras"], "--name", "m", *RANGE, "--out", tmp_path)[0] == 0
    before = tree(tmp_path)
    assert release(models["sm_log"], "--name", "m", *RANGE, "--out", tmp_path)[0] == 1
    assert tree(tmp_path) == before  # no half-written 2, no hidden work folder


def test_interrupted_release_leaves_nothing(models, release, tmp_path, monkeypatch):
    """Ctrl-C after conversion: the hidden work folder and the folders it made are removed."""
    from model.sources import KerasSource

    def interrupted(self, folder):
        assert any(folder.iterdir())  # model.tflite is already there
        raise KeyboardInterrupt

    monkeypatch.setattr(KerasSource, "keep", interrupted)
    out = tmp_path / "new" / "artifacts"
    with pytest.raises(KeyboardInterrupt):
        release(models["keras"], "--name", "m", *RANGE, "--out", out)
    assert tree(tmp_path) == []


def test_disk_full_is_a_clear_error(models, release, tmp_path, monkeypatch):
    import model.sources

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model.sources.shutil, "copyfile", full)
    code, _, err = release(models["keras"], "--name", "m", *RANGE, "--out", tmp_path)
    assert code == 1
    assert f"cannot write {tmp_path / 'm' / '1'}: [Errno 28] No space left on device" in err
    assert tree(tmp_path) == []


def test_a_version_that_appears_meanwhile_is_not_overwritten(models, release, tmp_path,
                                                            monkeypatch):
    """Two releases racing for one version: the second finds the first and stops."""
    from model.sources import KerasSource

    keep = KerasSource.keep

    def racing(self, folder):
        other = folder.parent / "1"
        other.mkdir()
        (other / "manifest.json").write_text("the other release's")
        return keep(self, folder)

    monkeypatch.setattr(KerasSource, "keep", racing)
    code, _, err = release(models["keras"], "--name", "m", *RANGE, "--out", tmp_path)
    assert code == 1 and "already exists; released versions are never overwritten" in err
    assert tree(tmp_path) == ["m", "m/1", "m/1/manifest.json"]
    assert (tmp_path / "m" / "1" / "manifest.json").read_text() == "the other release's"


# --- versions ---------------------------------------------------------------------------------

def test_versions_count_up_and_are_never_overwritten(models, release, tmp_path):
    for expected in ("1", "2"):
        code, out, _ = release(models["keras"], "--name", "m", *RANGE, "--out", tmp_path)
        assert code == 0 and f"released m version {expected} " in out
    (tmp_path / "m" / "10").mkdir()          # versions compare as numbers, not text
    (tmp_path / "m" / ".11.partial-x").mkdir()  # a killed release's leftover does not count
    code, out, _ = release(models["keras"], "--name", "m", *RANGE, "--out", tmp_path)
    assert code == 0 and "released m version 11 " in out

    manifest = (tmp_path / "m" / "2" / "manifest.json").read_bytes()
    code, out, err = release(models["h5"], "--name", "m", "--version", "2", *RANGE,
                             "--out", tmp_path)
    assert code == 1 and "m/2 already exists; released versions are never overwritten" in err
    assert (tmp_path / "m" / "2" / "manifest.json").read_bytes() == manifest
    assert "loading" not in out  # refused before loading anything


# --- bad flags and paths ----------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (("--name", "../x"), "name '../x': use 1 to 64 letters"),
    (("--name", ""), "name '': use 1 to 64 letters"),
    (("--name", "m\n"), "name 'm\\n': use 1 to 64 letters"),     # not a folder or URL segment
    (("--version", "0"), "version '0': versions are positive integers"),
    (("--version", "01"), "without leading zeros"),
    (("--version", "v2"), "version 'v2'"),
    (("--version", "1" * 65), "at most 64 digits"),
    (("--version", "2\n"), "version '2\\n'"),
    (("--version", "\u0662"), "version '\u0662'"),                 # a digit, but not ASCII
    (("--input-min=1",), "--input-min given without --input-max"),
    (("--input-min=1", "--input-max=1"), "--input-min 1 must be below --input-max 1"),
    (("--input-min=nan", "--input-max=1"), "--input-min nan: must be a finite number"),
    (("--samples", "2"), "--samples 2: must be from 3 to 100000"),
    (("--atol", "-1"), "--atol -1.0: must be a finite number >= 0"),
    (("--labels", "a,,b"), "give one non-empty label per output entry"),
    (("--labels", "a,b,a"), "'a' appear more than once"),
    (("--labels", "@/nonexistent/labels.txt"), "cannot read /nonexistent/labels.txt"),
    (("--input-shape", "8,x"), "--input-shape '8,x': give positive whole numbers"),
    (("--input-shape", "0"), "--input-shape '0'"),
    (("--input-name", "9lives"), "--input-name '9lives': use letters"),
    (("--output-name", "y\n"), "--output-name 'y\\n': use letters"),
    (("--sample", "/nonexistent.npy"), "--sample /nonexistent.npy: no such file"),
])
def test_bad_flags_are_named_before_anything_loads(models, release, tmp_path, args, expected):
    code, out, err = release(models["keras"], "--name", "m", "--out", tmp_path, *args)
    assert code == 2 and expected in err and out == ""
    assert tree(tmp_path) == []


def test_every_bad_flag_is_reported_at_once(release, tmp_path):
    code, _, err = release(tmp_path / "missing.keras", "--name", "a b", "--version", "x",
                           "--samples", "0", "--out", tmp_path)
    assert code == 2 and "4 problem(s)" in err
    for expected in ("missing.keras: no such file or directory", "name 'a b'", "version 'x'",
                     "--samples 0"):
        assert expected in err


def test_bad_metrics_file(models, release, tmp_path):
    metrics = tmp_path / "metrics.json"
    for body in ('["not", "an object"]', '{"accuracy": "high"}', '{"parity_max_abs_diff": 0}',
                 "{broken"):
        metrics.write_text(body)
        code, _, err = release(models["keras"], "--name", "m", *RANGE, "--metrics", metrics,
                               "--out", tmp_path / "out")
        assert code == 2 and f"--metrics {metrics}" in err, body


@pytest.mark.parametrize("make_path, expected", [
    (lambda d: d / "model.tflite", "unsupported file type '.tflite' (a .tflite file cannot be "
                                   "checked against its original"),
    (lambda d: d / "model.onnx", "unsupported file type '.onnx'; give a Keras 3 .keras file"),
    (lambda d: d / "model.keras", "Keras cannot load it as a Keras 3 .keras file"),
    (lambda d: d / "model.h5", "Keras cannot load it as a legacy Keras .h5 file"),
    (lambda d: d / "plain_dir", "a directory must be a TensorFlow SavedModel (with "
                                "saved_model.pb); give"),
    (lambda d: ROOT / "model" / "artifacts" / "digits" / "1",
     "(it holds manifest.json: that is a released version folder, not a model)"),
])
def test_paths_that_are_not_models(release, tmp_path, make_path, expected):
    path = make_path(tmp_path)
    if path.suffix:
        path.write_bytes(b"not a model")
    elif not path.exists():
        path.mkdir()
    code, out, err = release(path, "--name", "m", *RANGE, "--out", tmp_path / "out")
    assert code == 1 and expected in err, err
    assert "nothing was written" in out and tree(tmp_path / "out") == []


@pytest.mark.parametrize("model, args, expected", [
    ("keras", (), "the model does not declare its input range: pass --input-min and "
                  "--input-max (make release ... INPUT_MIN=.. INPUT_MAX=..)"),
    ("keras", (*RANGE, "--labels", "a,b"), "2 labels given, but the model's output has shape "
                                           "(3)"),
    ("keras", (*RANGE, "--input-shape", "7"), "--input-shape (7) contradicts the model's input "
                                              "shape (6)"),
    ("keras", (*RANGE, "--sample", "SAMPLE:[[1, 2]]"), "holds an array of shape (1, 2); the "
                                                      "model takes instances of shape (6)"),
    ("keras", (*RANGE, "--sample", "SAMPLE:[[0, 0, 0, 0, 0, 3]]"), "instance 0, value 5 = 3 is "
                                                                  "outside the declared input "
                                                                  "range [-1, 1]"),
    ("two_inputs", RANGE, "the model has 2 inputs (a, b); the service serves models with one "
                          "input tensor"),
    ("saved_model", (*RANGE, "--signature", "nope"), "has no signature 'nope' (it has: serve, "
                                                     "serving_default)"),
    ("sm_fixed_batch", RANGE, "the model's input has a fixed batch size of 1"),
    ("tokens", ("--input-min=0", "--input-max=1e12", "--input-shape", "5"),
     "does not fit the model's input dtype int32"),
    ("tokens", ("--input-min=0", "--input-max=9.5", "--input-shape", "5"),
     "the bounds must be whole numbers"),
])
def test_models_that_do_not_fit_the_flags(models, release, tmp_path, model, args, expected):
    args = list(args)
    for i, arg in enumerate(args):
        if arg.startswith("SAMPLE:"):
            (tmp_path / "sample.json").write_text(arg[len("SAMPLE:"):])
            args[i] = tmp_path / "sample.json"
    code, out, err = release(models[model], "--name", "m", *args, "--out", tmp_path / "out")
    assert code == 1 and expected in err, err
    assert tree(tmp_path / "out") == []


# --- through make -----------------------------------------------------------------------------

def make(*args, env=None):
    """`make` in the repository with this interpreter and no set-up step (STAMP empty)."""
    return subprocess.run(["make", "--no-print-directory", *args, "STAMP=", f"PY={sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_make_release(models, tmp_path):
    run = make("release", f"MODEL={models['h5']}", "NAME=sensor", "VERSION=3",
               "INPUT_MIN=-1", "INPUT_MAX=1", "LABELS=low,mid,high", f"ARGS=--out {tmp_path}")
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = verify_version(tmp_path / "sensor" / "3")
    assert manifest["labels"] == ["low", "mid", "high"] and manifest["source"]["format"] == "h5"
    assert run.stdout.strip().splitlines()[-1].startswith("released sensor version 3 to ")


def test_make_release_says_how_to_call_it(tmp_path):
    run = make("release", f"MODEL={tmp_path}")
    assert run.returncode == 2
    assert "usage: make release MODEL=<model.keras|model.h5|SavedModel dir> NAME=<name>" \
        in run.stderr
    # NAME from the environment does not count: WSL's shells export NAME as the host name
    run = make("release", f"MODEL={tmp_path}", env={"NAME": "my-laptop"})
    assert run.returncode == 2 and "usage: make release" in run.stderr
