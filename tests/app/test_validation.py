"""The request parser follows the manifest's input spec, whatever its shape and type: shapes
of one, two and three dimensions, integer inputs (whole numbers only, cast to the model's
type), and manifests the service cannot serve refused before start."""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.manifest import ModelIntegrityError, ServingSpec, serving_spec
from app.validation import BadRequest, InstanceParser


def spec(shape, dtype="float32", lo=0, hi=255, name="image") -> ServingSpec:
    return ServingSpec(name="m", version="3", input_name=name, shape=tuple(shape), dtype=dtype,
                       lo=lo, hi=hi, description="", output_name="out", output_shape=(2,),
                       output_dtype="float32", labels=None)


def parse(parser, instances):
    return parser.parse({"instances": instances})[0]


def test_a_three_dimensional_uint8_input_flat_or_nested():
    parser = InstanceParser(spec((2, 3, 2), "uint8"), max_batch=4)
    nested = [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 255]]]
    flat = [v for plane in nested for row in plane for v in row]
    x = parse(parser, [nested, flat, {"image": flat}])
    assert x.dtype == np.uint8 and x.shape == (3, 2, 3, 2)
    assert (x[0] == x[1]).all() and x[0, 1, 2, 1] == 255
    assert parse(parser, [[2.0] * 12]).dtype == np.uint8         # 2.0 is a whole number


@pytest.mark.parametrize("instance, words", [
    ([0.5] + [0] * 11, ["value 0 = 0.5 is not a whole number", "uint8"]),
    ([256] + [0] * 11, ["value 0 = 256", "[0, 255]"]),
    ([[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9]]], ["instances[0][1]", "expected 3 lists",
                                                    "shape [2, 3, 2]", "got 2"]),
    ([[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10]]], ["instances[0][1][2]",
                                                          "expected 2 numbers per row, got 1"]),
    ([[[0, 1], [2, 3], [4, 5]], [[6, 7], 8, [10, 11]]], ["instances[0][1][1]", "expected a list"]),
    ([0] * 11, ["12 numbers or a nested list of shape [2, 3, 2], each a whole number from 0 to 255",
                "'image' of model 'm' version 3", "got a list of 11"]),
    (["1"] + [0] * 11, ["value 0 is a string; expected a whole number from 0 to 255"]),
])
def test_bad_instances_of_an_integer_input(instance, words):
    parser = InstanceParser(spec((2, 3, 2), "uint8"), max_batch=4)
    with pytest.raises(BadRequest) as info:
        parse(parser, [instance])
    assert info.value.status == 400
    for word in words:
        assert word in info.value.message, info.value.message


def test_a_one_dimensional_input_takes_one_flat_list():
    parser = InstanceParser(spec((3,), "int32", lo=-5, hi=5, name="codes"), max_batch=4)
    x = parse(parser, [[-5, 0, 5]])
    assert x.dtype == np.int32 and x.tolist() == [[-5, 0, 5]]
    with pytest.raises(BadRequest, match=r"expected 3 numbers, each a whole number from -5 to 5"):
        parse(parser, [[[-5], [0], [5]]])
    assert parser.parse_csv(b"1,2,3\n-1,-2,-3").tolist() == [[1, 2, 3], [-1, -2, -3]]


def _manifest(**input_keys):
    return {"schema_version": 2, "name": "m", "version": "1",
            "input": {"name": "x", "shape": [3], "dtype": "float32", "min": 0, "max": 1,
                      **input_keys},
            "output": {"name": "y", "shape": [2], "dtype": "float32"}, "files": {}}


@pytest.mark.parametrize("change, words", [
    ({"dtype": "int8", "min": -200, "max": 5}, ["whole numbers within int8's range -128..127"]),
    ({"dtype": "int32", "min": 0.5, "max": 5}, ["whole numbers"]),
    ({"min": 3, "max": 1}, ["min below max"]),
    ({"shape": [3, 0]}, ["input.shape [3, 0]", "whole numbers >= 1"]),
    ({"shape": []}, ["input.shape []"]),
    ({"name": "9lives"}, ["input.name '9lives'"]),
    # A trailing newline is not part of a name ("$" alone would let it through).
    ({"name": "x\n"}, ["input.name 'x\\n'"]),
])
def test_manifests_the_service_cannot_serve_are_refused(change, words):
    with pytest.raises(ModelIntegrityError) as info:
        serving_spec(_manifest(**change), "where/manifest.json")
    for word in ("where/manifest.json", *words):
        assert word in str(info.value)


@pytest.mark.parametrize("field, value", [("name", "m\n"), ("version", "1\n")])
def test_a_name_or_version_with_a_trailing_newline_is_refused(field, value):
    # Python's "$" matches before a final newline: the rules are applied whole (fullmatch).
    with pytest.raises(ModelIntegrityError, match=re.escape(f"{field} {value!r}")):
        serving_spec({**_manifest(), field: value}, "m")


def test_a_version_is_at_most_64_digits():
    """Like a name: the two, with the manifest's hash, fit SageMaker's CustomAttributes."""
    assert serving_spec({**_manifest(), "version": "9" * 64}, "m").version == "9" * 64
    with pytest.raises(ModelIntegrityError, match="positive whole number of at most 64 digits"):
        serving_spec({**_manifest(), "version": "9" * 65}, "m")


def test_labels_must_name_the_outputs_and_schema_1_gets_its_defaults():
    manifest = {**_manifest(), "labels": ["a", "b", "c"]}
    with pytest.raises(ModelIntegrityError, match=r"3 labels but output.shape \[2\]"):
        serving_spec(manifest, "m")
    schema_1 = {"name": "digits", "version": "1", "labels": list("0123456789"), "files": {},
                "input": {"shape": [8, 8], "min": 0, "max": 16},
                "output": {"name": "probabilities", "shape": [10]}}
    got = serving_spec(schema_1, "m")
    assert (got.input_name, got.dtype, got.output_dtype) == ("pixels", "float32", "float32")
    del schema_1["input"]["min"]
    del schema_1["version"]
    with pytest.raises(ModelIntegrityError) as info:
        serving_spec(schema_1, "m")
    assert "version 'None'" in str(info.value) and "input.min None" in str(info.value)
