"""The model registry (infra/model_registry.py): the committed version, uploaded as is."""

from __future__ import annotations

import hashlib
import json

from infra import releases
from tests.infra.harness import config_value, one, resources_of_type


def test_model_objects_are_the_committed_version_encrypted_with_the_key(any_graph):
    cfg_version = config_value(any_graph, "modelVersion")
    folder = releases.MODEL_ROOT / config_value(any_graph, "modelName") / cfg_version
    objects = resources_of_type(any_graph, "aws:s3/bucketObjectv2:BucketObjectv2")
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {"manifest.json", *manifest["files"]}
    assert {o.inputs["key"].rsplit("/", 1)[1] for o in objects} == expected
    key_arn = one(any_graph, "aws:kms/key:Key").outputs["arn"]
    for o in objects:
        assert o.inputs["key"].startswith(f"models/{config_value(any_graph, 'modelName')}/{cfg_version}/")
        assert o.inputs["serverSideEncryption"] == "aws:kms" and o.inputs["kmsKeyId"] == key_arn
        path = o.inputs["source"].path
        assert path.startswith(str(folder))
        assert o.inputs["sourceHash"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
