"""The model registry (infra/model_registry.py): every configured version, uploaded as
committed, each object encrypted with the stack key under its own encryption context."""

from __future__ import annotations

import hashlib
import json

from tests.infra.harness import deployed_models, one, resources_of_type


def test_model_objects_are_the_committed_versions_encrypted_with_the_key(any_graph):
    objects = resources_of_type(any_graph, "aws:s3/bucketObjectv2:BucketObjectv2")
    key_arn = one(any_graph, "aws:kms/key:Key").outputs["arn"]
    expected = set()
    for model in deployed_models(any_graph):
        manifest = json.loads((model.folder / "manifest.json").read_text())
        expected |= {f"{model.prefix}/{name}" for name in ("manifest.json", *manifest["files"])}
    assert {o.inputs["key"] for o in objects} == expected
    for o in objects:
        assert o.inputs["serverSideEncryption"] == "aws:kms" and o.inputs["kmsKeyId"] == key_arn
        # no Bucket Key: the object's ARN is its encryption context (the task role's key
        # grant names the deployed prefixes, infra/iam.py)
        assert o.inputs["bucketKeyEnabled"] is False
        name, version, file_name = o.inputs["key"].split("/")[1:]
        path = o.inputs["source"].path
        assert path.endswith(f"model/artifacts/{name}/{version}/{file_name}")
        assert o.inputs["sourceHash"] == hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_the_stacks_deploy_their_own_model_lists(graphs):
    """Per-stack: dev and staging serve diabetes beside digits; prod has not promoted it."""
    listed = {stack: [m.entry.split("@")[0] for m in deployed_models(g)]
              for stack, g in graphs.items()}
    assert listed == {"dev": ["digits/1", "diabetes/1"], "staging": ["digits/1", "diabetes/1"],
                      "prod": ["digits/1"]}
    prod_keys = {o.inputs["key"] for o in resources_of_type(graphs["prod"],
                                                            "aws:s3/bucketObjectv2:BucketObjectv2")}
    assert not [k for k in prod_keys if k.startswith("models/diabetes/")]


def test_promoting_one_model_is_one_line_that_changes_only_that_model(tmp_path, monkeypatch):
    """staging: diabetes/1 -> diabetes/2 (a second release in a copy of model/artifacts).
    Only diabetes's objects, the task's env and role, the dashboard and the outputs change;
    digits's objects and everything else are untouched."""
    import shutil

    from infra import releases
    from tests.conftest import another_version
    from tests.infra.harness import run_program

    root = tmp_path / "artifacts"
    for name in ("digits", "diabetes"):
        shutil.copytree(releases.MODEL_ROOT / name / "1", root / name / "1")
    another_version(root / "diabetes" / "1", root, "2")
    monkeypatch.setattr(releases, "MODEL_ROOT", root)
    digits, diabetes_1, diabetes_2 = (releases.find(n, v)[0].entry for n, v in
                                      (("digits", "1"), ("diabetes", "1"), ("diabetes", "2")))
    before = run_program("staging", {"models": [digits, diabetes_1]})
    after = run_program("staging", {"models": [digits, diabetes_2]})

    def by_name(graph):          # a FileAsset compares by identity: compare its path
        return {(r.type, r.name): {k: getattr(v, "path", v) for k, v in r.inputs.items()}
                for r in graph.resources}

    old, new = by_name(before), by_name(after)
    removed, added = set(old) - set(new), set(new) - set(old)
    changed = {k for k in set(old) & set(new) if old[k] != new[k]}
    objects = "aws:s3/bucketObjectv2:BucketObjectv2"
    assert {name for _, name in removed} == {f"ml-app-staging-models-diabetes-1-{f}" for f in
                                            ("manifest.json", "model.keras", "model.tflite")}
    assert {name for _, name in added} == {f"ml-app-staging-models-diabetes-2-{f}" for f in
                                          ("manifest.json", "model.keras", "model.tflite")}
    assert {t for t, _ in removed | added} == {objects}
    assert {t for t, _ in changed} == {"aws:ecs/taskDefinition:TaskDefinition",
                                       "aws:iam/rolePolicy:RolePolicy",
                                       "aws:cloudwatch/dashboard:Dashboard"}
    [policy] = [name for t, name in changed if t == "aws:iam/rolePolicy:RolePolicy"]
    assert policy.endswith("-task")                      # the task role, not the execution role
    assert {k: v for k, v in before.exports.items() if k not in ("models", "modelUri",
                                                                 "modelManifestSha256")} == \
        {k: v for k, v in after.exports.items() if k not in ("models", "modelUri",
                                                             "modelManifestSha256")}
    assert after.exports["models"] == f"{digits},{diabetes_2}"
