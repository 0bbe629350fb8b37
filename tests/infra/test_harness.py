"""The harness's own checks (tests/infra/harness.py) can fail: the linters and the mocks."""

from __future__ import annotations

import json

import parliament
from botocore.validate import ParamValidator

from pulumi.runtime.mocks import MockResourceArgs

from infra import config
from tests.infra.harness import (MOCK_ACCOUNT, MOCK_OUTPUTS, PROJECT, STACKS, TARGET_VARIANTS,
                                 AwsMocks, check_enums, input_shape, stack_config)


def test_parliament_is_live():
    """The linter must be able to fail: a wildcard policy produces findings."""
    bad = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "iam:PassRole"], "Resource": "*"}]})
    issues = {f.issue for f in parliament.analyze_policy_string(
        bad, include_community_auditors=True).findings}
    assert "RESOURCE_STAR" in issues


def test_the_validator_catches_typos_wrong_types_and_bad_enums():
    """It must be able to fail."""
    shape = input_shape("ecs", "RegisterTaskDefinition")
    bad = {"family": "x", "containerDefinitions": [{"name": "app", "image": "i",
                                                    "readOnlyRootFilesystem": True,
                                                    "stopTimeout": "30"}]}
    report = ParamValidator().validate(bad, shape).generate_report()
    assert "readOnlyRootFilesystem" in report and "stopTimeout" in report
    assert check_enums({"family": "x", "networkMode": "bridged", "containerDefinitions": []},
                       shape) == [".networkMode: 'bridged' not in ['bridge', 'host', 'awsvpc', 'none']"]
    assert check_enums({"AlarmName": "", "EvaluationPeriods": 0},
                       input_shape("cloudwatch", "PutMetricAlarm")) == [
        ".AlarmName: length 0 outside [1, 255]", ".EvaluationPeriods: 0 outside [1, None]"]


def test_every_mocked_arn_is_shaped_like_an_arn_of_this_account():
    """The mocks' ARN table: arn:aws:<service>:<region or none>:<account or none>:<resource>,
    so that policy tests comparing ARNs compare what AWS would return."""
    mocks = AwsMocks("eu-west-1", MOCK_ACCOUNT)
    inputs = {"family": "ml-app-dev", "url": "https://token.actions.githubusercontent.com",
              "functionName": "ml-app-dev-function"}
    checked = 0
    for type_, outputs in MOCK_OUTPUTS.items():
        if "arn" not in outputs:
            continue
        _, made = mocks.new_resource(MockResourceArgs(type_, "ml-app-dev-x", dict(inputs)))
        parts = made["arn"].split(":", 5)
        assert parts[:2] == ["arn", "aws"] and parts[2] and parts[5], made["arn"]
        assert parts[3] in ("", "eu-west-1") and parts[4] in ("", MOCK_ACCOUNT), made["arn"]
        checked += 1
    assert checked >= 15


def test_every_target_runs_on_every_stack():
    """The committed stacks run on ECS and TARGET_VARIANTS runs each on every other target
    (``any_graph``): a new value of config.TARGETS without its variants would be run by no
    test (docs/architecture.md, "Where a change goes")."""
    committed = {stack_config(stack)[0][f"{PROJECT}:target"] for stack in STACKS}
    assert committed == {"ecs"}
    assert set(TARGET_VARIANTS) == set(config.TARGETS) - committed
    for target, variants in TARGET_VARIANTS.items():
        assert set(variants) == set(STACKS), target
        assert all(overrides["target"] == target for overrides in variants.values()), target
