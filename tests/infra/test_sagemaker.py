"""The SageMaker target (infra/sagemaker.py) over every stack run on SageMaker: the model on
the image digest with the registry's pinned model, the endpoint configuration (instances or
serverless, data capture), the endpoint's blue/green update that rolls back on the alarms,
variant autoscaling, the execution role; each a valid request of SageMaker's API."""

from __future__ import annotations

import os
import re

import pytest

from infra.sagemaker import (BAKE_SECONDS, TERMINATION_WAIT_SECONDS, UPDATE_TIMEOUT_SECONDS,
                             EndpointCapacity)
from tests.infra.harness import (ROOT, Graph, as_list, config_value, deployed_models,
                                 json_input, one, resources_of_type, run_program,
                                 target_variant, validate, within)
from tests.infra.iam_eval import trust_allows

COMPONENT = "ml-app:infra:SageMakerEndpoint"
SAGEMAKER_IDS = ("dev-sagemaker", "staging-sagemaker", "prod-sagemaker")


@pytest.fixture(params=SAGEMAKER_IDS)
def sm(request, target_graphs) -> Graph:
    return target_graphs[request.param]


def _pascal(value, renames=None):
    """Pulumi's camelCase inputs as the API's PascalCase request members."""
    renames = {"MemorySizeInMb": "MemorySizeInMB", **(renames or {})}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = k[:1].upper() + k[1:]
            out[renames.get(key, key)] = _pascal(v, renames)
        return out
    if isinstance(value, list):
        return [_pascal(v, renames) for v in value]
    return value


def _serverless(graph: Graph) -> bool:
    return int(config_value(graph, "sagemakerServerlessMemoryMb")) > 0


# ----------------------------------------------------------------------------- model --
def test_the_model_runs_the_pushed_digest_with_the_registrys_pinned_model(sm):
    model = one(sm, "aws:sagemaker/model:Model", COMPONENT).inputs
    container = model["primaryContainer"]
    assert container["image"] == sm.exports["imageRef"] and "@sha256:" in container["image"]
    assert container["mode"] == "SingleModel"
    env = container["environment"]
    assert env["MODEL_URI"] == sm.exports["modelUri"]
    assert env["MODEL_SHA256"] == sm.exports["modelManifestSha256"]
    assert env["AWS_REGION"] == sm.config["aws:region"]
    assert env["METRICS_NAMESPACE"] == f"ml-app/{sm.stack}"
    # One worker per vCPU; SageMaker recommends one for a serverless endpoint.
    assert env["WEB_CONCURRENCY"] == ("1" if _serverless(sm) else "2")
    # Callers authenticate with IAM (design.md 10): no API key on this path.
    assert not {k for k in env if k.startswith("API_")}
    # The container reads its model from S3 itself, as on ECS.
    assert model["enableNetworkIsolation"] is False
    role = one(sm, "aws:iam/role:Role", COMPONENT)
    assert model["executionRoleArn"] == role.outputs["arn"]
    assert role.urn in one(sm, "aws:sagemaker/model:Model").depends_on


@pytest.mark.parametrize("instance_type, workers", [
    ("ml.t2.medium", 2), ("ml.c6i.large", 2), ("ml.c6i.xlarge", 4), ("ml.m5.4xlarge", 16),
    ("ml.c5.24xlarge", 64)])
def test_one_app_worker_per_vcpu(instance_type, workers):
    assert EndpointCapacity(instance_type, 1, 1, 100).workers == workers
    assert EndpointCapacity(instance_type, 1, 1, 100, serverless_memory_mb=2048).workers == 1


def test_names_follow_the_content_so_a_new_image_is_a_new_model_and_config():
    """SageMaker never changes a model or an endpoint configuration: a new digest (or model
    version, or size) must be a new one of each, under a new name; an unchanged program keeps
    its names (no update at all)."""
    stack, overrides = target_variant("dev-sagemaker")
    first, again = run_program(stack, overrides), run_program(stack, overrides)
    names = lambda g: {t: one(g, f"aws:sagemaker/{t}").inputs["name"]  # noqa: E731
                       for t in ("model:Model", "endpointConfiguration:EndpointConfiguration",
                                 "endpoint:Endpoint")}
    assert names(first) == names(again)
    digest = "sha256:" + "1" * 64
    rebuilt = run_program(stack, overrides, ecr_images={first.exports["imageTag"]: digest})
    assert rebuilt.exports["imageRef"].endswith(digest)
    before, after = names(first), names(rebuilt)
    assert after["endpoint:Endpoint"] == before["endpoint:Endpoint"] == "ml-app-dev"
    for kind in ("model:Model", "endpointConfiguration:EndpointConfiguration"):
        assert after[kind] != before[kind], kind
        assert re.fullmatch(r"ml-app-dev-(model|config)-[0-9a-f]{8}", after[kind]), after[kind]
        assert len(after[kind]) <= 63
    bigger = run_program(stack, {**overrides, "sagemakerInstanceType": "ml.c6i.xlarge"})
    assert names(bigger)["model:Model"] != before["model:Model"]   # WEB_CONCURRENCY 4


# -------------------------------------------------------------- endpoint configuration --
def test_the_variant_is_stable_and_sized_from_the_config(sm):
    config = one(sm, "aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    [variant] = config["productionVariants"]
    assert variant["variantName"] == "live"      # blue/green requires the same name
    assert variant["modelName"] == one(sm, "aws:sagemaker/model:Model").inputs["name"]
    if _serverless(sm):
        assert variant["serverlessConfig"] == {
            "memorySizeInMb": int(config_value(sm, "sagemakerServerlessMemoryMb")),
            "maxConcurrency": int(config_value(sm, "sagemakerServerlessMaxConcurrency"))}
        assert "instanceType" not in variant and "initialInstanceCount" not in variant
    else:
        assert variant["instanceType"] == config_value(sm, "sagemakerInstanceType")
        assert variant["initialInstanceCount"] == int(config_value(sm, "sagemakerInstanceCount"))
        assert "serverlessConfig" not in variant


def test_data_capture_goes_to_its_own_encrypted_bucket_when_asked(sm):
    config = one(sm, "aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    percent = int(config_value(sm, "sagemakerDataCapturePercent"))
    buckets = within(sm, COMPONENT, "aws:s3/bucket:Bucket")
    statements = {s["Sid"]: s for s in json_input(
        one(sm, "aws:iam/rolePolicy:RolePolicy", COMPONENT), "policy")["Statement"]}
    if not percent:
        assert "dataCaptureConfig" not in config and not buckets
        assert "WriteCapturedData" not in statements and "dataCaptureBucket" not in sm.exports
        return
    [bucket] = buckets
    capture = config["dataCaptureConfig"]
    assert capture["enableCapture"] is True and capture["initialSamplingPercentage"] == percent
    assert capture["destinationS3Uri"] == f"s3://{bucket.outputs['bucket']}/captures"
    assert capture["kmsKeyId"] == sm.exports["kmsKeyArn"]
    assert {o["captureMode"] for o in capture["captureOptions"]} == {"Input", "Output"}
    assert sm.exports["dataCaptureBucket"] == bucket.outputs["bucket"]
    # The execution role writes there (SageMaker captures with it), encrypted through S3.
    assert statements["WriteCapturedData"]["Resource"] == f"{bucket.outputs['arn']}/captures/*"
    assert statements["EncryptCapturedData"]["Condition"]["StringEquals"]["kms:ViaService"] \
        == f"s3.{sm.config['aws:region']}.amazonaws.com"
    # Callers' data: kept as long as the logs, then expired (test_storage checks the rest).
    lifecycle = one(sm, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                    COMPONENT).inputs["rules"]
    assert lifecycle[0]["expiration"]["days"] == int(config_value(sm, "logRetentionDays"))


# ---------------------------------------------------------------------------- endpoint --
def test_the_endpoint_updates_blue_green_and_rolls_back_on_the_alarms(sm):
    endpoint = one(sm, "aws:sagemaker/endpoint:Endpoint", COMPONENT)
    assert endpoint.inputs["name"] == sm.exports["endpointName"] == f"ml-app-{sm.stack}"
    assert endpoint.inputs["endpointConfigName"] == sm.exports["endpointConfigName"] == \
        one(sm, "aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs["name"]
    deployment = endpoint.inputs["deploymentConfig"]
    policy = deployment["blueGreenUpdatePolicy"]
    assert policy["trafficRoutingConfiguration"] == {"type": "ALL_AT_ONCE",
                                                     "waitIntervalInSeconds": BAKE_SECONDS}
    assert policy["terminationWaitInSeconds"] == TERMINATION_WAIT_SECONDS
    # SageMaker: the timeout exceeds the waits (600 to 28800 s).
    assert BAKE_SECONDS + TERMINATION_WAIT_SECONDS < UPDATE_TIMEOUT_SECONDS <= 28800
    alarms = {a["alarmName"] for a in deployment["autoRollbackConfiguration"]["alarms"]}
    assert alarms == {f"ml-app-{sm.stack}-error-rate", f"ml-app-{sm.stack}-latency-p99"}
    created = {a.inputs["name"] for a in resources_of_type(
        sm, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms <= created
    assert sm.exports["invocationUrl"] == (
        f"https://runtime.sagemaker.{sm.config['aws:region']}.amazonaws.com/endpoints/"
        f"ml-app-{sm.stack}/invocations")


def _dependencies(graph: Graph, urn: str) -> set[str]:
    found, todo = set(), [urn]
    while todo:
        for dep in graph.by_urn(todo.pop()).depends_on:
            if dep not in found:
                found.add(dep)
                todo.append(dep)
    return found


def test_the_log_group_exists_before_sagemaker_would_create_it(sm):
    """SageMaker writes to /aws/sagemaker/Endpoints/<endpoint> and creates it if missing
    (unencrypted, kept forever): the stack creates it first, with its key and retention."""
    group = one(sm, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring")
    assert group.inputs["name"] == f"/aws/sagemaker/Endpoints/ml-app-{sm.stack}"
    assert group.inputs["kmsKeyId"] == sm.exports["kmsKeyArn"]
    endpoint = one(sm, "aws:sagemaker/endpoint:Endpoint")
    assert group.urn in _dependencies(sm, endpoint.urn)


def test_instances_scale_on_invocations_and_serverless_scales_itself(sm):
    targets = within(sm, COMPONENT, "aws:appautoscaling/target:Target")
    policies = within(sm, COMPONENT, "aws:appautoscaling/policy:Policy")
    count = int(config_value(sm, "sagemakerInstanceCount"))
    most = int(config_value(sm, "sagemakerMaxInstanceCount"))
    if _serverless(sm) or most == count:
        assert not targets and not policies
        return
    [target], [policy] = targets, policies
    assert target.inputs == {"serviceNamespace": "sagemaker",
                             "scalableDimension": "sagemaker:variant:DesiredInstanceCount",
                             "resourceId": f"endpoint/ml-app-{sm.stack}/variant/live",
                             "minCapacity": count, "maxCapacity": most}
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == \
        "SageMakerVariantInvocationsPerInstance"
    assert tracking["targetValue"] == int(config_value(sm, "scaleRequestsPerTarget"))
    validate("application-autoscaling", "RegisterScalableTarget", {
        "ServiceNamespace": "sagemaker", "ResourceId": target.inputs["resourceId"],
        "ScalableDimension": target.inputs["scalableDimension"],
        "MinCapacity": count, "MaxCapacity": most})
    validate("application-autoscaling", "PutScalingPolicy", {
        "PolicyName": policy.name, "ServiceNamespace": "sagemaker",
        "ResourceId": policy.inputs["resourceId"],
        "ScalableDimension": policy.inputs["scalableDimension"],
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": _pascal(tracking)})


def test_equal_counts_turn_autoscaling_off():
    stack, overrides = target_variant("dev-sagemaker")
    graph = run_program(stack, {**overrides, "sagemakerMaxInstanceCount": 1})
    assert not within(graph, COMPONENT, "aws:appautoscaling/target:Target")


# ---------------------------------------------------------------------- execution role --
def test_the_execution_role_reaches_exactly_what_hosting_needs(sm):
    role = one(sm, "aws:iam/role:Role", COMPONENT)
    assert role.inputs["path"] == f"/ml-app/{sm.stack}/service/sagemaker/"
    trust = json_input(role, "assumeRolePolicy")["Statement"]
    account = role.outputs["arn"].split(":")[4]
    region = sm.config["aws:region"]
    context = {"aws:SourceAccount": account,
               "aws:SourceArn": f"arn:aws:sagemaker:{region}:{account}:endpoint/x"}
    assert trust_allows(trust, service="sagemaker.amazonaws.com", context=context)
    assert not trust_allows(trust, service="sagemaker.amazonaws.com",
                            context={**context, "aws:SourceAccount": "999999999999"})
    assert not trust_allows(trust, service="lambda.amazonaws.com", context=context)
    statements = {s["Sid"]: s for s in json_input(
        one(sm, "aws:iam/rolePolicy:RolePolicy", COMPONENT), "policy")["Statement"]}
    repository = one(sm, "aws:ecr/repository:Repository").outputs["arn"]
    assert statements["PullThisRepository"]["Resource"] == repository
    bucket = one(sm, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["arn"]
    # every deployed model version's objects, and only those (ml-app:models)
    assert as_list(statements["ReadTheDeployedModelVersion"]["Resource"]) == \
        [f"{bucket}/{m.prefix}/*" for m in deployed_models(sm)]
    group = one(sm, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring").outputs["arn"]
    assert set(as_list(statements["WriteTheEndpointsLogGroup"]["Resource"])) == {
        group, f"{group}:log-stream:*"}
    assert statements["PublishInstanceMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}


# --------------------------------------------------------------------- API requests --
def test_the_model_config_and_endpoint_are_valid_sagemaker_requests(sm):
    model = one(sm, "aws:sagemaker/model:Model").inputs
    validate("sagemaker", "CreateModel", {
        "ModelName": model["name"], "ExecutionRoleArn": model["executionRoleArn"],
        "PrimaryContainer": _pascal(model["primaryContainer"]),
        "EnableNetworkIsolation": model["enableNetworkIsolation"]})
    config = one(sm, "aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    request = {"EndpointConfigName": config["name"],
               "ProductionVariants": _pascal(config["productionVariants"])}
    if "dataCaptureConfig" in config:
        request["DataCaptureConfig"] = _pascal(config["dataCaptureConfig"])
    validate("sagemaker", "CreateEndpointConfig", request)
    endpoint = one(sm, "aws:sagemaker/endpoint:Endpoint").inputs
    validate("sagemaker", "CreateEndpoint", {
        "EndpointName": endpoint["name"], "EndpointConfigName": endpoint["endpointConfigName"],
        "DeploymentConfig": _pascal(endpoint["deploymentConfig"])})


def test_a_misnamed_field_would_fail_the_shape_check(target_graphs):
    config = one(target_graphs["staging-sagemaker"],
                 "aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    variants = _pascal(config["productionVariants"], {"MemorySizeInMb": "MemorySizeInMb"})
    with pytest.raises(AssertionError, match="MemorySizeInMb"):
        validate("sagemaker", "CreateEndpointConfig",
                 {"EndpointConfigName": config["name"], "ProductionVariants": variants})


# ----------------------------------------------------------------- the image's side --
def test_sagemaker_can_start_the_image_as_it_starts_any():
    """SageMaker runs `docker run IMAGE serve` with the model environment above: `serve` is a
    program on the image's PATH (app/bin/serve, the image half of issue 9), executable (the
    Dockerfile's chmod keeps the execute bits it finds: u=rwX,go=rX)."""
    serve = ROOT / "app" / "bin" / "serve"
    dockerfile = (ROOT / "Dockerfile").read_text()
    path = re.search(r"ENV PATH=([^\s\\]+)", dockerfile).group(1)
    assert "/srv/app/bin" in path.split(":")
    assert "ENTRYPOINT" not in [line.split()[0] for line in dockerfile.splitlines() if line.strip()]
    assert serve.read_text().startswith("#!") and os.access(serve, os.X_OK)
