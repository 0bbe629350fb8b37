"""Stack configuration (infra/config.py): declarations, the three stack files, and every
validation rule, the pipeline's keys included."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from infra import config, releases
from tests.infra.harness import PROJECT, ROOT, STACKS, run, stack_config

DIGITS = releases.find("digits", "1")[0].entry          # digits/1@sha256:<its manifest's>


def raw_for(stack: str, **overrides) -> dict[str, str]:
    """The stack's config as parse() receives it (project keys without namespace)."""
    values, _ = stack_config(stack, overrides)
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}


def parse(stack: str = "dev", region: str = "eu-west-1", unknown=(), **overrides):
    return config.parse(raw_for(stack, **overrides), stack=stack, region=region,
                        unknown_keys=tuple(unknown))


# -------------------------------------------------------------------- declarations --
def test_every_declared_key_fills_a_field_and_every_field_is_declared():
    declared = {d.field for d in config.declarations().values()}
    fields = {f.name for f in dataclasses.fields(config.StackConfig)} - set(config.StackConfig.DERIVED)
    assert declared == fields


def test_every_declaration_has_a_type_default_and_description():
    for key, decl in config.declarations().items():
        assert decl.type in ("string", "integer", "boolean", "array"), key
        assert decl.default is not None, f"{key}: Pulumi requires a value when no default exists"
        assert len(decl.description) > 20, f"{key}: describe the key"


def test_pulumi_yaml_runtime_and_defaults_are_valid():
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["name"] == PROJECT
    assert doc["runtime"]["name"] == "python"
    assert doc["runtime"]["options"]["toolchain"] == "pip"
    # The declared defaults alone (plus what every stack must say) form a valid config.
    # (An approval, on by default, needs the approvers named.)
    digits = releases.find("digits", "1")[0].entry
    cfg = config.parse({"owner": "team", "costCentre": "cc-1", "models": f'["{digits}"]',
                        "githubRepository": "acme/ml-app",
                        "approvers": '["arn:aws:iam::123456789012:group/approvers"]'},
                       stack="sandbox", region="us-east-1")
    assert cfg.protect_data is True and cfg.https is False


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_set_only_declared_keys_and_validate(stack):
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    keys = set(doc["config"])
    project_keys = {k.split(":", 1)[1] for k in keys if k.startswith(f"{PROJECT}:")}
    assert project_keys, "the stack file sets no project keys"
    assert project_keys <= set(config.declarations()), project_keys - set(config.declarations())
    assert doc["config"]["aws:region"]
    assert doc["config"]["pulumi:disable-default-providers"] == ["aws"]
    cfg = parse(stack, region=doc["config"]["aws:region"])
    assert cfg.stack == stack


def test_stack_files_differ_where_the_issue_says():
    dev, staging, prod = (parse(s) for s in STACKS)
    assert dev.nat_gateways == "single" and dev.fargate_spot_weight > dev.fargate_weight
    assert dev.desired_count == 1 and dev.log_retention_days <= 7
    assert prod.production and prod.nat_gateways == "one-per-az"
    assert prod.min_count >= 2 and prod.availability_zones >= 2
    assert prod.fargate_base >= prod.min_count
    assert prod.https and prod.protect_data and prod.waf_enabled
    assert prod.log_retention_days > staging.log_retention_days > dev.log_retention_days
    assert staging.https and not dev.https


# ------------------------------------------------------------------ validation table --
# Each row: overrides (on the dev stack unless "stack" is given), the key that must be
# named, and a fragment of the rule that must be stated.
BAD_CONFIGS = [
    ({"cpu": 300}, "cpu", "Fargate cpu size"),
    ({"cpu": 256, "memory": 4096}, "memory", "Fargate accepts memory 512 to 2048"),
    ({"cpu": "lots"}, "cpu", "whole number"),
    ({"minCount": 3, "desiredCount": 2, "maxCount": 4}, "minCount", "minCount <= desiredCount <= maxCount"),
    ({"desiredCount": 5, "maxCount": 4}, "maxCount", "minCount <= desiredCount <= maxCount"),
    ({"maxCount": 500}, "maxCount", "from 1 to 100"),
    ({"minCount": 0}, "minCount", "from 1 to 100"),
    ({"vpcCidr": "10.0.0.0/33"}, "vpcCidr", "CIDR"),
    ({"vpcCidr": "10.0.0.1/16"}, "vpcCidr", "CIDR"),
    ({"vpcCidr": "8.8.0.0/16"}, "vpcCidr", "private"),
    ({"vpcCidr": "10.0.0.0/8"}, "vpcCidr", "/16 to /24"),
    ({"allowedCidrs": ["0.0.0.0/0", "300.1.1.1/32"]}, "allowedCidrs", "not a network"),
    ({"allowedCidrs": []}, "allowedCidrs", "at least one"),
    ({"allowedCidrs": "0.0.0.0/0"}, "allowedCidrs", "list of strings"),
    ({"availabilityZones": 1}, "availabilityZones", "2 or 3"),
    ({"natGateways": "many"}, "natGateways", "one of one-per-az, single, none"),
    ({"natGateways": "none", "vpcEndpoints": False}, "vpcEndpoints", "VPC endpoints"),
    ({"logRetentionDays": 10}, "logRetentionDays", "retention CloudWatch Logs accepts"),
    ({"logRetentionDays": 0}, "logRetentionDays", "retention CloudWatch Logs accepts"),
    ({"models": ["digits/99@sha256:" + "0" * 64]}, "models",
     "no released version at model/artifacts/digits/99/manifest.json (committed versions: "
     "diabetes/1, digits/1)"),
    ({"models": ["../app/1@sha256:" + "0" * 64]}, "models", "must be <name>/<version>@sha256:"),
    ({"models": ["digits"]}, "models", "must be <name>/<version>@sha256:"),
    ({"models": ["digits/1"]}, "models", f"is not pinned: write '{DIGITS}'"),
    ({"models": ["digits/1@sha256:" + "0" * 64]}, "models",
     f"has sha256 {DIGITS[-64:]}, not the pinned one"),
    ({"models": [DIGITS, DIGITS]}, "models", "lists digits/1 more than once"),
    ({"models": []}, "models", f"is required: the model versions this stack deploys, the "
                               f"default model first, one entry each as <name>/<version>@sha256:"),
    ({"models": "digits/1"}, "models", "list of strings"),
    ({"modelName": "digits", "modelVersion": "1"}, "modelName",
     f'replaced by ml-app:models (a list: several models, each pinned by its manifest\'s '
     f'sha256); write instead `ml-app:models: ["{DIGITS}"]` and remove ml-app:modelName and '
     f'ml-app:modelVersion'),
    ({"modelVersion": "7"}, "modelVersion",
     'write instead `ml-app:models: ["digits/7@sha256:<sha256 of '
     'model/artifacts/digits/7/manifest.json>"]` and remove ml-app:modelVersion'),
    ({"owner": ""}, "owner", "is required"),
    ({"owner": "x" * 300}, "owner", "1 to 256 characters"),
    ({"costCentre": "cc<1>"}, "costCentre", "tag"),
    ({"awsAccountId": "1234"}, "awsAccountId", "12-digit"),
    ({"certificateArn": "arn:aws:acm:eu-west-1:1:cert"}, "certificateArn", "ACM certificate ARN"),
    ({"certificateArn": "arn:aws:acm:us-east-1:222222222222:certificate/0f5e6c1a-3b7d-4c2e-9a8f-1d2c3b4a5e6f"},
     "certificateArn", "stack's region"),
    ({"domainName": "Not A Domain"}, "domainName", "DNS name"),
    ({"domainName": "api.example.com"}, "hostedZoneId", "needs hostedZoneId"),
    ({"hostedZoneId": "Z123"}, "domainName", "needs the domainName"),
    ({"domainName": "api.example.com", "hostedZoneId": "zone"}, "hostedZoneId", "hosted zone ID"),
    ({"wafRateLimit": 5}, "wafRateLimit", "from 10 to 2000000000"),
    ({"fargateWeight": 0, "fargateSpotWeight": 0}, "fargateSpotWeight", "weight above 0"),
    ({"fargateBase": -1}, "fargateBase", "from 0 to"),
    ({"scaleRequestsPerTarget": 0}, "scaleRequestsPerTarget", "from 1 to"),
    ({"alarmEmail": "oncall"}, "alarmEmail", "e-mail"),
    ({"alarmErrorRatePercent": 0}, "alarmErrorRatePercent", "from 1 to 100"),
    ({"alarmLatencyP99Ms": 1}, "alarmLatencyP99Ms", "from 10 to 60000"),
    ({"production": "yes"}, "production", "true or false"),
    # production rules
    ({"stack": "prod", "certificateArn": None, "domainName": None, "hostedZoneId": None},
     "certificateArn", "HTTPS is required when production is true"),
    ({"stack": "prod", "minCount": 1, "desiredCount": 1, "fargateBase": 1}, "minCount",
     "at least 2 tasks"),
    ({"stack": "prod", "natGateways": "single"}, "natGateways", "one NAT gateway per zone"),
    ({"stack": "prod", "protectData": False}, "protectData", "protected data"),
    ({"stack": "prod", "wafEnabled": False}, "wafEnabled", "WAF"),
    ({"stack": "prod", "fargateBase": 1}, "fargateBase", "must not depend on Spot"),
    ({"stack": "prod", "production": False}, "production", "looks like production"),
    ({"stack": "prod", "auditLogs": False}, "auditLogs", "audit logs"),
    # approvers
    ({"stack": "prod", "approvers": ["alice"]}, "approvers", "not an IAM role or group ARN"),
    ({"stack": "prod", "approvers": ["arn:aws:iam::333333333333:user/alice"]}, "approvers",
     "not an IAM role or group ARN"),
    ({"stack": "prod", "approvers": ["arn:aws:iam::111111111111:role/x"]}, "approvers",
     "must belong to awsAccountId 333333333333"),
    ({"stack": "prod", "approvers": []}, "approvers", "a manual approval needs approvers"),
    ({"approvers": ["arn:aws:iam::123456789012:role/x"]}, "approvers",
     "need requireApproval: true"),
    ({"stack": "prod", "approvers": ["arn:aws:iam::333333333333:role/x"] * 2}, "approvers",
     "lists an approver twice"),
    # audit logs
    ({"stack": "staging", "auditLogBucket": "acme-logs"}, "auditLogBucket",
     "must start with ml-app-staging-audit-logs-"),
    ({"stack": "staging", "auditLogBucket": "ml-app-staging-audit-logs-1",
      "pulumiBackend": "s3", "pulumiStateBucket": "ml-app-staging-audit-logs-1",
      "pulumiSecretsKeyArn": "arn:aws:kms:eu-west-1:222222222222:key/"
                             "0b6e1c3a-5d2f-4e8b-9a7c-1f2e3d4c5b6a"},
     "auditLogBucket", "cannot be another bucket of the stack"),
    ({"stack": "staging", "auditLogBucket": "Not_A_Bucket"}, "auditLogBucket", "S3 bucket name"),
    ({"auditLogBucket": "ml-app-dev-audit-logs-1"}, "auditLogBucket", "auditLogs is false"),
    # promotion
    ({"promotedFrom": "staging"}, "promotedFrom", "must set ml-app:promotesTo: dev"),
    ({"stack": "staging", "promotesTo": "dev"}, "promotesTo", "must set ml-app:promotedFrom"),
    ({"promotedFrom": "qa"}, "promotedFrom", "there is no Pulumi.qa.yaml"),
    ({"promotedFrom": "dev"}, "promotedFrom", "must name another stack"),
    ({"stack": "prod", "awsAccountId": None}, "promotedFrom", "needs awsAccountId"),
    ({"promotesTo": "prod"}, "promotesTo", "needs awsAccountId"),
    ({"stack": "prod", "promotedFrom": "not a stack!"}, "promotedFrom", "another stack of"),
    # where the image runs (ml-app:target) and each target's keys
    ({"target": "k8s"}, "target", "must be one of ecs, sagemaker, lambda"),
    ({"target": "ECS"}, "target", "must be one of ecs, sagemaker, lambda"),
    ({"target": "sagemaker", "sagemakerInstanceType": "m5.large"}, "sagemakerInstanceType",
     "not a SageMaker endpoint instance type"),
    ({"target": "sagemaker", "sagemakerInstanceType": "ml.m5.larg"}, "sagemakerInstanceType",
     "did you mean ml.m5.large?"),
    ({"target": "sagemaker", "sagemakerInstanceType": "ml.c7g.large"}, "sagemakerInstanceType",
     "Graviton (arm64)"),
    ({"target": "sagemaker", "sagemakerInstanceType": ""}, "sagemakerInstanceType",
     "is required"),
    ({"target": "sagemaker", "sagemakerServerlessMemoryMb": 512},
     "sagemakerServerlessMemoryMb", "from 1024 to 6144 MB in steps of 1024"),
    ({"target": "sagemaker", "sagemakerServerlessMemoryMb": 8192},
     "sagemakerServerlessMemoryMb", "from 1024 to 6144 MB"),
    ({"target": "sagemaker", "sagemakerServerlessMemoryMb": 1500},
     "sagemakerServerlessMemoryMb", "steps of 1024"),
    ({"target": "sagemaker", "sagemakerServerlessMaxConcurrency": 500},
     "sagemakerServerlessMaxConcurrency", "from 1 to 200"),
    ({"target": "sagemaker", "sagemakerInstanceCount": 3, "sagemakerMaxInstanceCount": 2},
     "sagemakerMaxInstanceCount", "sagemakerInstanceCount <= sagemakerMaxInstanceCount"),
    ({"target": "sagemaker", "sagemakerServerlessMemoryMb": 2048,
      "sagemakerDataCapturePercent": 5}, "sagemakerDataCapturePercent",
     "serverless endpoints cannot capture data"),
    ({"sagemakerDataCapturePercent": 101}, "sagemakerDataCapturePercent", "from 0 to 100"),
    ({"stack": "prod", "target": "sagemaker"}, "sagemakerInstanceCount", "at least 2 instances"),
    ({"target": "lambda", "lambdaMemoryMb": 64}, "lambdaMemoryMb", "from 128 to 10240"),
    ({"target": "lambda", "lambdaMemoryMb": 20480}, "lambdaMemoryMb", "from 128 to 10240"),
    ({"target": "lambda", "lambdaTimeoutSeconds": 0}, "lambdaTimeoutSeconds", "from 1 to 900"),
    ({"target": "lambda", "lambdaTimeoutSeconds": 901}, "lambdaTimeoutSeconds",
     "from 1 to 900"),
    ({"target": "lambda", "lambdaEphemeralStorageMb": 256}, "lambdaEphemeralStorageMb",
     "from 512 to 10240"),
    ({"target": "lambda", "lambdaReservedConcurrency": 0}, "lambdaReservedConcurrency",
     "from 1 to"),
    ({"target": "lambda", "lambdaProvisionedConcurrency": 20, "lambdaReservedConcurrency": 10},
     "lambdaProvisionedConcurrency", "lambdaProvisionedConcurrency <= lambdaReservedConcurrency"),
    ({"target": "lambda", "lambdaUrlAuth": "PUBLIC"}, "lambdaUrlAuth", "must be AWS_IAM"),
    ({"stack": "prod", "target": "lambda", "lambdaUrlAuth": "NONE"}, "lambdaUrlAuth",
     "refused when production is true: set lambdaUrlAuth: AWS_IAM"),
    ({"stack": "prod", "lambdaUrlAuth": "NONE"}, "lambdaUrlAuth", "refused when production"),
]


@pytest.mark.parametrize("overrides,key,rule", BAD_CONFIGS,
                         ids=[f"{row[1]}-{i}" for i, row in enumerate(BAD_CONFIGS)])
def test_bad_config_is_refused_naming_key_value_rule_and_file(overrides, key, rule):
    overrides = dict(overrides)
    stack = overrides.pop("stack", "dev")
    with pytest.raises(config.ConfigError) as caught:
        parse(stack, **overrides)
    lines = [line for line in caught.value.problems if f"{PROJECT}:{key} = " in line]
    assert lines, f"no problem names {PROJECT}:{key}: {caught.value.problems}"
    assert any(rule in line for line in lines), f"rule {rule!r} not stated in {lines}"
    assert all(line.endswith(f"edit Pulumi.{stack}.yaml") for line in caught.value.problems)


def test_the_ecs_only_rules_leave_the_other_targets_alone():
    """HTTPS, tasks per zone, NAT per zone, WAF and an on-demand base are the load
    balancer's and the tasks' rules: a production stack on SageMaker or Lambda has neither
    (and neither a VPC)."""
    ecs_only = {"certificateArn": None, "domainName": None, "hostedZoneId": None,
                "minCount": 1, "desiredCount": 1, "fargateBase": 0, "natGateways": "single",
                "wafEnabled": False}
    for target, more in (("sagemaker", {"sagemakerInstanceCount": 2}), ("lambda", {})):
        cfg = parse("prod", target=target, **ecs_only, **more)
        assert cfg.target == target and cfg.production
    with pytest.raises(config.ConfigError) as caught:
        parse("prod", **ecs_only)
    assert len(caught.value.problems) >= 5
    # Still production: protected data, approvals and audit logs whatever the target.
    with pytest.raises(config.ConfigError, match="protectData"):
        parse("prod", target="lambda", protectData=False)


def test_a_stack_name_a_target_cannot_use_is_refused():
    """SageMaker names the endpoint after the stack (lower-case letters, digits, -); its
    ARNs are lower case, the stack's grants must match them."""
    raw = raw_for("dev", target="sagemaker")
    with pytest.raises(config.ConfigError, match=r"ml-app:target = 'sagemaker': the SageMaker "
                                                 r"endpoint is named 'ml-app-Dev_1'"):
        config.parse(raw, stack="Dev_1", region="eu-west-1")
    raw = raw_for("dev", target="lambda")
    with pytest.raises(config.ConfigError, match=r"ml-app:target = 'lambda': the function"):
        config.parse(raw, stack="x" * 60, region="eu-west-1")
    config.parse(raw_for("dev", target="lambda"), stack="Dev_1", region="eu-west-1")


def test_instance_types_come_from_botocore_and_the_default_is_one():
    types = config.sagemaker_instance_types()
    assert len(types) > 100 and "ml.c6i.large" in types
    default = config.declarations()["sagemakerInstanceType"].default
    assert config.sagemaker_instance_problem(default) is None
    assert config.sagemaker_instance_problem("ml.m6g.large")     # Graviton
    assert config.sagemaker_instance_problem("ml.g5.xlarge") is None


@pytest.mark.parametrize("overrides", [{"target": "k8s"},
                                       {"target": "lambda", "lambdaMemoryMb": 64},
                                       {"target": "sagemaker",
                                        "sagemakerServerlessMemoryMb": 7168}])
def test_a_bad_target_config_creates_nothing(overrides):
    graph = run("dev", overrides)
    assert isinstance(graph.error, config.ConfigError)
    key = [k for k in overrides if k != "target" or len(overrides) == 1][-1]
    assert f"ml-app:{key} = " in str(graph.error) and "edit Pulumi.dev.yaml" in str(graph.error)
    assert graph.resources == []


def test_region_is_required_and_checked():
    with pytest.raises(config.ConfigError, match=r"aws:region = None: is required"):
        parse(region=None)
    with pytest.raises(config.ConfigError, match=r"aws:region = 'Ireland': must be an AWS region"):
        parse(region="Ireland")


def test_every_problem_is_reported_at_once():
    with pytest.raises(config.ConfigError) as caught:
        parse(cpu=300, logRetentionDays=10, natGateways="many", alarmEmail="x",
              unknown=["cpuu"])
    problems = caught.value.problems
    assert len(problems) == 5, problems
    message = str(caught.value)
    assert message.startswith("invalid configuration for stack 'dev' (5 problems")
    for key in ("cpu", "logRetentionDays", "natGateways", "alarmEmail", "cpuu"):
        assert f"{PROJECT}:{key} = " in message


def test_unknown_key_is_a_typo_with_a_suggestion():
    with pytest.raises(config.ConfigError, match=r"ml-app:certifcateArn = .*did you mean "
                                                 r"ml-app:certificateArn\?"):
        parse(unknown=["certifcateArn"])


def test_empty_strings_mean_unset_for_optional_keys():
    cfg = parse(certificateArn="", domainName=" ", alarmEmail="")
    assert cfg.certificate_arn is None and cfg.domain_name is None and cfg.alarm_email is None


def test_models_are_the_pinned_releases_in_order():
    cfg = parse("staging")
    assert [(m.name, m.version) for m in cfg.models] == [("digits", "1"), ("diabetes", "1")]
    import hashlib
    for model in cfg.models:
        manifest = model.folder / "manifest.json"
        assert model.manifest_sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()
        assert {"manifest.json", "model.tflite"} <= set(model.files)
        assert model.prefix == f"models/{model.name}/{model.version}"
        assert model.entry == f"{model.name}/{model.version}@sha256:{model.manifest_sha256}"


def test_two_versions_of_one_model_can_be_deployed_side_by_side(tmp_path, monkeypatch):
    import shutil

    from tests.conftest import another_version
    root = tmp_path / "artifacts"
    shutil.copytree(releases.MODEL_ROOT / "digits" / "1", root / "digits" / "1")
    another_version(root / "digits" / "1", root, "2")
    monkeypatch.setattr(releases, "MODEL_ROOT", root)
    second = releases.find("digits", "2")[0]
    cfg = parse(models=[second.entry, DIGITS])
    assert [m.entry for m in cfg.models] == [second.entry, DIGITS]
    assert second.manifest_sha256 != DIGITS[-64:]


def test_a_tampered_model_file_is_refused(tmp_path, monkeypatch):
    import shutil
    fake_root = tmp_path / "artifacts"
    shutil.copytree(releases.MODEL_ROOT / "digits" / "1", fake_root / "digits" / "1")
    (fake_root / "digits" / "1" / "model.tflite").write_bytes(b"not the model")
    monkeypatch.setattr(releases, "MODEL_ROOT", fake_root)
    with pytest.raises(config.ConfigError, match="model.tflite does not match its sha256"):
        parse(models=[DIGITS])


def test_the_old_scalar_keys_fail_with_the_line_to_write_through_the_program():
    """A deployed stack's Pulumi.<stack>.yaml from before ml-app:models: the engine passes
    modelName/modelVersion as undeclared keys; the error says what to write instead."""
    graph = run("prod", {"models": None, "modelName": "digits", "modelVersion": "1"})
    assert isinstance(graph.error, config.ConfigError)
    message = str(graph.error)
    assert f'write instead `ml-app:models: ["{DIGITS}"]`' in message
    assert "not a key of this project" not in message        # not reported as a typo
    assert "edit Pulumi.prod.yaml" in message
    assert graph.resources == []


# ------------------------------------------------------------- through the program --
def test_invalid_config_creates_nothing_and_names_the_problem():
    graph = run("dev", {"cpu": 300, "bogusKey": "1"})
    assert isinstance(graph.error, config.ConfigError)
    assert "ml-app:cpu = 300" in str(graph.error)
    assert "ml-app:bogusKey" in str(graph.error)  # unknown keys come from the engine's config
    assert graph.resources == []


def test_config_error_is_a_clean_pulumi_error():
    import pulumi
    assert issubclass(config.ConfigError, pulumi.RunError)


def test_configuration_doc_covers_every_key():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [key for key in config.declarations() if f"| `{key}` |" not in doc]
    assert not missing, f"document these keys in docs/configuration.md: {missing}"


# ------------------------------------------------------------------- pipeline keys --
@pytest.mark.parametrize("overrides, key, value, rule", [
    ({"githubRepository": None}, "githubRepository", "''", "is required"),
    ({"githubRepository": "  "}, "githubRepository", "''", "is required"),
    ({"githubRepository": "acme-ml"}, "githubRepository", "'acme-ml'", "<owner>/<repo>"),
    ({"githubRepository": "https://github.com/acme/ml-app"}, "githubRepository",
     "'https://github.com/acme/ml-app'", "<owner>/<repo>"),
    ({"pipelineBranch": "release/*"}, "pipelineBranch", "'release/*'", "wildcards"),
    ({"pipelineBranch": "my branch"}, "pipelineBranch", "'my branch'", "without spaces"),
    ({"pipelineBranch": "feature..x"}, "pipelineBranch", "'feature..x'", "check-ref-format"),
    ({"pipelineBranch": "-main"}, "pipelineBranch", "'-main'", "check-ref-format"),
    ({"pipelineBranch": ""}, "pipelineBranch", "''", "is required"),
    ({"pulumiBackend": "local"}, "pulumiBackend", "'local'", "cloud or s3"),
    ({"pulumiBackend": "s3"}, "pulumiStateBucket", "''", "required when pulumiBackend is s3"),
    ({"pulumiBackend": "s3", "pulumiStateBucket": "b"}, "pulumiSecretsKeyArn", "''",
     "required when pulumiBackend is s3"),
    ({"pulumiBackend": "s3", "pulumiStateBucket": "Not_A_Bucket"}, "pulumiStateBucket",
     "'Not_A_Bucket'", "must be an S3 bucket name"),
    ({"pulumiAccessTokenSecret": ""}, "pulumiAccessTokenSecret", "''",
     "required when pulumiBackend is cloud"),
    ({"codestarConnectionArn": "arn:aws:codestar-connections:us-east-1:123456789012:"
                               "connection/11111111-2222-4333-8444-555555555555"},
     "codestarConnectionArn", "us-east-1", "stack's region eu-west-1"),
    ({"githubOidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/gitlab.com"},
     "githubOidcProviderArn", "gitlab.com", "token.actions.githubusercontent.com"),
])
def test_bad_pipeline_config_is_refused_naming_key_value_rule_and_file(overrides, key, value,
                                                                        rule):
    with pytest.raises(config.ConfigError) as err:
        parse("dev", **overrides)
    [line] = [p for p in err.value.problems if p.startswith(f"ml-app:{key} = ")]
    assert value in line and rule in line and line.endswith("edit Pulumi.dev.yaml"), line


def test_prod_cannot_skip_the_approval():
    with pytest.raises(config.ConfigError) as err:
        parse("prod", requireApproval=False)
    assert any(p.startswith("ml-app:requireApproval = False: a manual approval")
               and "edit Pulumi.prod.yaml" in p for p in err.value.problems), err.value.problems


def test_a_missing_repository_stops_the_program_before_any_resource():
    graph = run("staging", {"githubRepository": None})
    assert isinstance(graph.error, config.ConfigError)
    assert "ml-app:githubRepository = '': is required" in str(graph.error)
    assert "edit Pulumi.staging.yaml" in str(graph.error)
    assert not [r for r in graph.resources if r.custom and not r.type.startswith("pulumi:")]


def test_the_stack_files_name_the_repository_and_the_branches():
    parsed = {s: parse(s) for s in STACKS}
    assert {c.github_repository for c in parsed.values()} == {"acme-ml/ml-app"}
    assert parsed["dev"].pipeline_branch == "develop"
    assert parsed["staging"].pipeline_branch == parsed["prod"].pipeline_branch == "main"
    assert parsed["prod"].require_approval is True
    assert (ROOT / "Pulumi.yaml").read_text().count("githubRepository:") == 1


def test_promotion_is_checked_from_both_ends_and_across_regions():
    """The other stack's file is read: its promotesTo/promotedFrom must point back, both
    need an account, and they must share a region."""
    files = {"up": {"ml-app:promotesTo": "down", "ml-app:awsAccountId": "111111111111",
                    "aws:region": "eu-west-1"},
             "elsewhere": {"ml-app:promotesTo": "down", "ml-app:awsAccountId": "111111111111",
                           "aws:region": "us-east-1"}}
    raw = raw_for("prod", promotedFrom="up", approvers=None)
    raw["approvers"] = '["arn:aws:iam::333333333333:role/x"]'
    cfg = config.parse(raw, stack="down", region="eu-west-1", stack_file=files.get)
    assert cfg.upstream_account_id == "111111111111"
    raw["promotedFrom"] = "elsewhere"
    with pytest.raises(config.ConfigError, match="another region: promotion works within one"):
        config.parse(raw, stack="down", region="eu-west-1", stack_file=files.get)


def test_a_promotion_without_its_upstream_stops_the_program_before_any_resource():
    graph = run("dev", {"promotedFrom": "staging"})
    assert isinstance(graph.error, config.ConfigError)
    assert "ml-app:promotedFrom = 'staging'" in str(graph.error)
    assert not [r for r in graph.resources if r.custom and not r.type.startswith("pulumi:")]
