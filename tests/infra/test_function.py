"""The Lambda target (infra/function.py) over every stack run on Lambda: the function on the
image digest with its explicit architecture and the image's Lambda entry, the live alias on
the published version, the Function URL and its auth, JSON logs to the stack's log group, the
repository policy Lambda pulls through, the execution role; each a valid Lambda request."""

from __future__ import annotations

import re

import pytest

from infra.function import ARCHITECTURES, COMMAND, ENTRY_POINT
from infra.image import PLATFORM
from tests.infra.harness import (ROOT, Graph, as_list, config_value, deployed_models,
                                 json_input, one, validate, within)
from tests.infra.iam_eval import Request, resource_policy_effects, trust_allows

COMPONENT = "ml-app:infra:LambdaFunction"
LAMBDA_IDS = ("dev-lambda", "staging-lambda", "prod-lambda")


@pytest.fixture(params=LAMBDA_IDS)
def fn(request, target_graphs) -> Graph:
    return target_graphs[request.param]


def _function(graph: Graph):
    return one(graph, "aws:lambda/function:Function", COMPONENT)


def test_the_function_runs_the_pushed_digest_through_the_images_lambda_entry(fn):
    f = _function(fn).inputs
    assert f["name"] == fn.exports["functionName"] == f"ml-app-{fn.stack}-function"
    assert f["packageType"] == "Image"
    assert f["imageUri"] == fn.exports["imageRef"] and "@sha256:" in f["imageUri"]
    # The image is built for linux/amd64 (infra/image.py): Lambda must not guess.
    assert PLATFORM == "linux/amd64" and f["architectures"] == [ARCHITECTURES[PLATFORM]] \
        == ["x86_64"]
    assert f["imageConfig"] == {"entryPoints": ["/opt/venv/bin/python3", "-m", "awslambdaric"],
                                "commands": ["app.lambda_handler.handler"]}
    env = f["environment"]["variables"]
    assert env["MODEL_URI"] == fn.exports["modelUri"]
    assert env["MODEL_SHA256"] == fn.exports["modelManifestSha256"]
    # The app's metrics land where the dashboard reads them (monitoring.dashboard_body).
    assert env["METRICS_NAMESPACE"] == f"ml-app/{fn.stack}"
    # Lambda sets AWS_REGION itself (a reserved name); no API key (IAM authenticates).
    assert "AWS_REGION" not in env and not {k for k in env if k.startswith("API_")}
    assert f["publish"] is True


def test_size_and_concurrency_come_from_the_config(fn):
    f = _function(fn).inputs
    assert f["memorySize"] == int(config_value(fn, "lambdaMemoryMb"))
    assert f["timeout"] == int(config_value(fn, "lambdaTimeoutSeconds"))
    assert f["ephemeralStorage"] == {"size": int(config_value(fn, "lambdaEphemeralStorageMb"))}
    assert f["reservedConcurrentExecutions"] == int(config_value(fn, "lambdaReservedConcurrency"))
    provisioned = within(fn, COMPONENT,
                         "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig")
    wanted = int(config_value(fn, "lambdaProvisionedConcurrency"))
    if not wanted:
        assert not provisioned
        return
    [p] = provisioned
    assert p.inputs == {"functionName": f["name"], "qualifier": "live",
                        "provisionedConcurrentExecutions": wanted}


def test_logs_are_json_in_the_stacks_encrypted_log_group(fn):
    logging = _function(fn).inputs["loggingConfig"]
    group = one(fn, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring").inputs
    assert logging["logFormat"] == "JSON"
    assert logging["logGroup"] == group["name"] == f"/ml-app/{fn.stack}/service"
    assert group["kmsKeyId"] == fn.exports["kmsKeyArn"]
    assert group["retentionInDays"] == int(config_value(fn, "logRetentionDays"))


def test_the_url_serves_the_live_alias_of_the_published_version(fn):
    alias = one(fn, "aws:lambda/alias:Alias", COMPONENT).inputs
    function = _function(fn)
    assert alias["name"] == fn.exports["functionAlias"] == "live"
    assert alias["functionVersion"] == function.outputs["version"] == fn.exports["functionVersion"]
    url = one(fn, "aws:lambda/functionUrl:FunctionUrl", COMPONENT)
    assert url.inputs["qualifier"] == "live"
    assert url.inputs["functionName"] == function.outputs["name"]
    assert url.inputs["authorizationType"] == config_value(fn, "lambdaUrlAuth")
    assert url.inputs["invokeMode"] == "BUFFERED"
    assert fn.exports["serviceUrl"] == url.outputs["functionUrl"].rstrip("/")


def test_lambda_pulls_the_image_through_the_repository_policy(fn):
    """AWS's statement for a function in the repository's account, narrowed to the stack's
    function: the Lambda service may read the image for it, for no other function; the
    function waits for the policy."""
    policy = one(fn, "aws:ecr/repositoryPolicy:RepositoryPolicy")
    statements = json_input(policy, "policy")["Statement"]
    repository = one(fn, "aws:ecr/repository:Repository").outputs["arn"]
    function = _function(fn).outputs["arn"]

    def lambda_may(action: str, source: str) -> bool:
        found = resource_policy_effects(statements, Request(action, repository,
                                                            {"aws:SourceArn": source}),
                                        service="lambda.amazonaws.com")
        return found == {"service": {"Allow"}}

    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
        assert lambda_may(action, function) and lambda_may(action, f"{function}:7")
        assert not lambda_may(action, function.replace("-function", "-other"))
    assert not lambda_may("ecr:PutImage", function)
    assert policy.urn in _function(fn).explicit_depends_on


def test_the_execution_role_is_scoped_like_the_task_role(fn):
    role = one(fn, "aws:iam/role:Role", COMPONENT)
    assert role.inputs["path"] == f"/ml-app/{fn.stack}/service/lambda/"
    assert _function(fn).inputs["role"] == role.outputs["arn"]
    trust = json_input(role, "assumeRolePolicy")["Statement"]
    account = role.outputs["arn"].split(":")[4]
    assert trust_allows(trust, service="lambda.amazonaws.com",
                        context={"aws:SourceAccount": account})
    assert not trust_allows(trust, service="lambda.amazonaws.com",
                            context={"aws:SourceAccount": "999999999999"})
    assert not trust_allows(trust, service="ecs-tasks.amazonaws.com",
                            context={"aws:SourceAccount": account})
    statements = {s["Sid"]: s for s in json_input(
        one(fn, "aws:iam/rolePolicy:RolePolicy", COMPONENT), "policy")["Statement"]}
    assert set(statements) == {"ReadTheDeployedModelVersion", "DecryptModelObjects",
                               "WriteTheServiceLogGroup"}
    bucket = one(fn, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["arn"]
    # every deployed model version's objects, and only those (ml-app:models)
    assert as_list(statements["ReadTheDeployedModelVersion"]["Resource"]) == \
        [f"{bucket}/{m.prefix}/*" for m in deployed_models(fn)]
    group = one(fn, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring").outputs["arn"]
    assert statements["WriteTheServiceLogGroup"]["Resource"] == f"{group}:log-stream:*"


def test_the_function_alias_url_and_concurrency_are_valid_lambda_requests(fn):
    f = _function(fn).inputs
    validate("lambda", "CreateFunction", {
        "FunctionName": f["name"], "Role": f["role"], "PackageType": f["packageType"],
        "Code": {"ImageUri": f["imageUri"]}, "Description": f["description"],
        "Timeout": f["timeout"], "MemorySize": f["memorySize"], "Publish": f["publish"],
        "Environment": {"Variables": f["environment"]["variables"]},
        "Architectures": f["architectures"],
        "EphemeralStorage": {"Size": f["ephemeralStorage"]["size"]},
        "ImageConfig": {"EntryPoint": f["imageConfig"]["entryPoints"],
                        "Command": f["imageConfig"]["commands"]},
        "LoggingConfig": {"LogFormat": f["loggingConfig"]["logFormat"],
                          "ApplicationLogLevel": f["loggingConfig"]["applicationLogLevel"],
                          "SystemLogLevel": f["loggingConfig"]["systemLogLevel"],
                          "LogGroup": f["loggingConfig"]["logGroup"]}})
    validate("lambda", "PutFunctionConcurrency", {
        "FunctionName": f["name"],
        "ReservedConcurrentExecutions": f["reservedConcurrentExecutions"]})
    alias = one(fn, "aws:lambda/alias:Alias").inputs
    validate("lambda", "CreateAlias", {"FunctionName": alias["functionName"],
                                       "Name": alias["name"],
                                       "FunctionVersion": alias["functionVersion"],
                                       "Description": alias["description"]})
    url = one(fn, "aws:lambda/functionUrl:FunctionUrl").inputs
    validate("lambda", "CreateFunctionUrlConfig", {
        "FunctionName": url["functionName"], "Qualifier": url["qualifier"],
        "AuthType": url["authorizationType"], "InvokeMode": url["invokeMode"]})
    for p in within(fn, COMPONENT,
                    "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig"):
        validate("lambda", "PutProvisionedConcurrencyConfig", {
            "FunctionName": p.inputs["functionName"], "Qualifier": p.inputs["qualifier"],
            "ProvisionedConcurrentExecutions": p.inputs["provisionedConcurrentExecutions"]})


def test_an_out_of_range_memory_would_fail_the_shape_check(target_graphs):
    f = _function(target_graphs["dev-lambda"]).inputs
    with pytest.raises(AssertionError, match="MemorySize"):
        validate("lambda", "CreateFunction", {
            "FunctionName": f["name"], "Role": f["role"], "Code": {"ImageUri": f["imageUri"]},
            "PackageType": "Image", "MemorySize": 64})


def test_the_images_lambda_entry_is_what_image_config_names():
    """The image half of issue 9: the runtime interface client is in the image's venv and
    app.lambda_handler defines ``handler``."""
    handler = ROOT / "app" / "lambda_handler.py"
    assert re.search(r"^def handler\(event, context\)", handler.read_text(), re.M)
    assert COMMAND == ["app.lambda_handler.handler"]
    assert re.search(r"^awslambdaric==", (ROOT / "app" / "requirements.txt").read_text(), re.M)
    assert ENTRY_POINT[0] == "/opt/venv/bin/python3"
    assert "python3 -m venv /opt/venv" in (ROOT / "Dockerfile").read_text()
