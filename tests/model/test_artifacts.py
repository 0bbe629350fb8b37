"""The committed version folders are what their manifests say, and the manifest schema is the
documented contract: every committed version verifies, its LiteRT model has the declared
input and output, and the second model (diabetes) is reproducible from its script."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model.manifest import SCHEMA_PATH, schema_problems, verify_version
from tests.conftest import ROOT
from tests.model.conftest import litert

ARTIFACTS = ROOT / "model" / "artifacts"
VERSIONS = sorted(p.parent for p in ARTIFACTS.glob("*/*/manifest.json"))
IDS = [f"{p.parent.name}/{p.name}" for p in VERSIONS]
DIABETES = ARTIFACTS / "diabetes" / "1"


def load(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_both_models_are_committed():
    assert {"digits/1", "diabetes/1"} <= set(IDS)


@pytest.mark.parametrize("folder", VERSIONS, ids=IDS)
def test_committed_version_verifies(folder):
    manifest = verify_version(folder)  # schema, folder name, every file's sha256
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json", *manifest["files"]])
    for path in folder.iterdir():
        assert path.stat().st_size < 1_000_000, f"{path} is over 1 MB (house rule)"


@pytest.mark.parametrize("folder", VERSIONS, ids=IDS)
def test_litert_model_has_the_declared_input_and_output(folder):
    """What the service will rely on: the input it validates is the input the model takes,
    the batch resizes, and the output has the declared shape (and one entry per label)."""
    from ai_edge_litert.interpreter import Interpreter

    manifest = load(folder)
    spec, output = manifest["input"], manifest["output"]
    interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=1)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape_signature"]) == [-1, *spec["shape"]]
    assert np.dtype(inp["dtype"]).name == spec.get("dtype", "float32")
    assert np.dtype(out["dtype"]).name == output.get("dtype", "float32")
    x = np.full((3, *spec["shape"]), spec["min"], dtype=np.dtype(inp["dtype"]))
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (3, *output["shape"])
    if "labels" in manifest:
        assert output["shape"] == [len(manifest["labels"])]


@pytest.mark.parametrize("folder", [f for f in VERSIONS if "schema_version" in load(f)],
                         ids=[i for f, i in zip(VERSIONS, IDS) if "schema_version" in load(f)])
def test_committed_release_still_has_parity(folder):
    """Re-run the parity check the release made, on fresh inputs, against the kept original."""
    import keras

    from model.parity import check_parity, generated_inputs
    from model.sources import InputSpec

    manifest = load(folder)
    spec = InputSpec(**{**manifest["input"], "shape": tuple(manifest["input"]["shape"])})
    x = generated_inputs(spec, 64, seed=99).x
    assert manifest["source"]["format"] in ("keras", "h5")  # what is committed today
    kept = keras.saving.load_model(folder / manifest["source"]["file"], compile=False)
    check_parity(kept.predict(x, verbose=0), litert(folder / "model.tflite", x),
                 manifest["parity"]["atol"], manifest["parity"]["rtol"])


def test_digits_1_is_unchanged():
    """Its sha256 is pinned by the stacks (MODEL_SHA256, tests/infra/snapshots): schema 1
    stays valid exactly as it is."""
    import hashlib

    raw = (ARTIFACTS / "digits" / "1" / "manifest.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == \
        "6c06ea1edb6897270c814808f18d487bd71df9137d4aaf5742570257ac64ffdd"
    assert "schema_version" not in json.loads(raw)


def test_diabetes_differs_from_digits_in_every_way_the_service_sees():
    digits, diabetes = load(ARTIFACTS / "digits" / "1"), load(DIABETES)
    assert diabetes["input"] == {
        "name": "features", "shape": [10], "dtype": "float32", "min": -0.3, "max": 0.3,
        "description": diabetes["input"]["description"]}
    assert diabetes["output"] == {"name": "progression", "shape": [1], "dtype": "float32"}
    assert "labels" not in diabetes  # a regressor
    assert diabetes["input"]["shape"] != digits["input"]["shape"]
    assert (diabetes["input"]["min"], diabetes["input"]["max"]) != (digits["input"]["min"],
                                                                     digits["input"]["max"])
    # its held-out data fit the declared range, with room (the scaled features' extremes are
    # -0.138 and 0.199)
    from model.examples import diabetes as example

    x_train, x_test, _, _ = example.load_split()
    assert -0.3 < min(x_train.min(), x_test.min()) and max(x_train.max(), x_test.max()) < 0.3
    assert diabetes["metrics"]["heldout_r2"] > 0.3  # better than a constant; linear gets 0.33


def test_diabetes_script_reproduces_the_committed_release(tmp_path, capsys):
    """The committed version came from model/examples/diabetes.py and `make release`: the
    script gives the same held-out set (same bytes as the parity sample) and, within a
    tolerance for floating point across CPUs, the same figures."""
    from model.examples import diabetes as example

    assert example.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].strip().startswith("make release MODEL=")
    committed = load(DIABETES)
    sha = re.search(r"sha256 ([0-9a-f]{64})", committed["parity"]["inputs"]).group(1)
    from model.manifest import sha256_file

    assert sha256_file(tmp_path / "heldout.npy") == sha
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["heldout_r2"] == pytest.approx(committed["metrics"]["heldout_r2"], abs=0.02)
    assert metrics["heldout_mae"] == pytest.approx(committed["metrics"]["heldout_mae"], abs=1.0)
    assert committed["framework"]["keras"] and committed["source"]["format"] == "keras"


# --- the schema -------------------------------------------------------------------------------

def test_schema_catches_what_the_service_would_trip_on():
    good = load(DIABETES)
    assert schema_problems(good) == []
    cases = {
        "labels: 2 labels but output shape [1]": {**good, "labels": ["a", "b"]},
        "input: min 0.3 is not below max 0.3": {**good, "input": {**good["input"], "min": 0.3}},
        "'dtype' is a required property": {**good, "output": {"name": "y", "shape": [1]}},
        "'name' is a required property": {**good, "input": {k: v for k, v in good["input"].items()
                                                             if k != "name"}},
        "Additional properties are not allowed ('extra' was unexpected)": {**good, "extra": 1},
        "'model.tflite' is a required property": {**good, "files": {}},
        "'labels' is a required property": {k: v for k, v in good.items()
                                            if k not in ("schema_version", "labels")},
        "does not match": {**good, "files": {**good["files"],
                                             "../x": good["files"]["model.keras"]}},
    }
    for expected, manifest in cases.items():
        problems = schema_problems(manifest)
        assert any(expected in p for p in problems), (expected, problems)


def test_docs_describe_every_key_of_the_schema():
    """docs/model.md is the human copy of the contract: every key the schema knows is in it."""
    schema = json.loads(SCHEMA_PATH.read_text())
    doc = (ROOT / "docs" / "model.md").read_text()

    def keys(node, prefix=""):
        for name, sub in node.get("properties", {}).items():
            yield prefix + name
            yield from keys(sub, prefix + name + ".")

    missing = [k for k in keys(schema) if f"`{k}`" not in doc]
    assert not missing, f"docs/model.md does not describe {missing}"


def test_the_schema_accepts_the_names_and_types_the_service_does():
    """One rule, three places: the schema, the release's checks and the service's reader
    (app/manifest.py, whose rules model/ imports) must not drift apart."""
    from model.manifest import DTYPES, NAME_RULE, TENSOR_NAME_RULE, VERSION_RULE

    properties = json.loads(SCHEMA_PATH.read_text())["properties"]
    assert properties["name"]["pattern"] == NAME_RULE.pattern
    assert properties["version"]["pattern"] == VERSION_RULE.pattern
    for section in ("input", "output"):
        assert properties[section]["properties"]["name"]["pattern"] == TENSOR_NAME_RULE.pattern
    assert properties["input"]["properties"]["dtype"]["enum"] == list(DTYPES)
