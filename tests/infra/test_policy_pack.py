"""The CrossGuard pack's rules (policy/rules.py) over every stack's mocked graph, each rule
shown able to fail, and the pack's wiring (policy/__main__.py) checked without the engine."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from policy import rules
from tests.infra.harness import ROOT, Graph


def stack_resources(graph: Graph) -> list[tuple[str, dict]]:
    """What CrossGuard hands a stack policy: every resource's type and properties (for
    the mocked graph: inputs merged with the mocked outputs, as after an update)."""
    return [(r.type, {**r.outputs, **r.inputs}) for r in graph.resources if r.custom]


def test_mandatory_rules_pass_on_every_stack(any_graph):
    found = rules.violations(stack_resources(any_graph), mandatory_only=True)
    assert not found, found


def test_prod_passes_the_advisory_rules_too(graphs, target_graphs):
    for graph in (graphs["prod"], target_graphs["prod-sagemaker"], target_graphs["prod-lambda"]):
        assert rules.violations(stack_resources(graph)) == [], graph.stack


def test_a_public_function_url_is_warned_about(target_graphs):
    found = rules.violations(stack_resources(target_graphs["staging-lambda"]))
    assert {name for name, _, _ in found} == {"lambda-url-authenticated"}
    assert rules.violations(stack_resources(target_graphs["dev-lambda"])) == []


def test_dev_is_warned_about_plain_http(graphs):
    found = rules.violations(stack_resources(graphs["dev"]))
    assert {name for name, _, _ in found} == {"http-redirects-to-https"}


def test_rule_names_are_unique():
    names = [r.name for r in rules.RULES]
    assert len(names) == len(set(names))


# One compliant-looking resource made non-compliant per rule: every rule must be able to
# fail, and say why.
BAD = {
    "s3-public-access-blocked": ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                                 {"blockPublicAcls": True, "blockPublicPolicy": False,
                                  "ignorePublicAcls": True, "restrictPublicBuckets": True}),
    "s3-versioning": ("aws:s3/bucketVersioning:BucketVersioning",
                      {"versioningConfiguration": {"status": "Suspended"}}),
    "s3-tls-only": ("aws:s3/bucketPolicy:BucketPolicy",
                    {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                                                          "Action": "s3:GetObject", "Resource": "*"}]})}),
    "no-world-ingress": ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                         {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22}),
    "subnet-no-public-ip": ("aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": True}),
    "ecs-task-hardened": ("aws:ecs/taskDefinition:TaskDefinition",
                          {"containerDefinitions": json.dumps([{"name": "app", "image": "repo:latest",
                                                                "user": "root"}])}),
    "ecs-service-private": ("aws:ecs/service:Service",
                            {"networkConfiguration": {"assignPublicIp": True},
                             "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                             "alarms": {"enable": True, "rollback": True, "alarmNames": ["a"]}}),
    "ecs-service-rollback": ("aws:ecs/service:Service",
                             {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}),
    "log-group-encrypted-retained": ("aws:cloudwatch/logGroup:LogGroup", {"name": "/x"}),
    "kms-rotation": ("aws:kms/key:Key", {"enableKeyRotation": False}),
    "ecr-repository-hardened": ("aws:ecr/repository:Repository", {"imageTagMutability": "MUTABLE"}),
    "alb-drop-invalid-headers": ("aws:lb/loadBalancer:LoadBalancer", {"loadBalancerType": "application"}),
    "listener-modern-tls": ("aws:lb/listener:Listener",
                            {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"}),
    "http-redirects-to-https": ("aws:lb/listener:Listener",
                                {"protocol": "HTTP", "defaultActions": [{"type": "forward"}]}),
    "sns-topic-encrypted": ("aws:sns/topic:Topic", {}),
    "secret-encrypted-with-cmk": ("aws:secretsmanager/secret:Secret", {}),
    "service-principals-act-for-this-account": ("aws:sns/topicPolicy:TopicPolicy", {
        "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "sns:Publish",
                                             "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                             "Resource": "*"}]})}),
    "github-trust-pinned-to-an-environment": ("aws:iam/role:Role", {
        "assumeRolePolicy": json.dumps({"Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/"
                                       "token.actions.githubusercontent.com"},
            "Condition": {"StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": "repo:acme/app:pull_request"}}}]})}),
    "vpc-endpoint-has-a-policy": ("aws:ec2/vpcEndpoint:VpcEndpoint", {"vpcEndpointType": "Gateway"}),
    "sagemaker-model-by-digest": ("aws:sagemaker/model:Model",
                                  {"primaryContainer": {"image": "repo:latest"}}),
    "sagemaker-endpoint-rolls-back": ("aws:sagemaker/endpoint:Endpoint",
                                      {"deploymentConfig": {"blueGreenUpdatePolicy": {}}}),
    "sagemaker-capture-encrypted": ("aws:sagemaker/endpointConfiguration:EndpointConfiguration",
                                    {"dataCaptureConfig": {"enableCapture": True,
                                                           "destinationS3Uri": "s3://b/c"}}),
    "lambda-function-hardened": ("aws:lambda/function:Function",
                                 {"packageType": "Image", "imageUri": "repo:latest"}),
    "lambda-url-authenticated": ("aws:lambda/functionUrl:FunctionUrl",
                                 {"authorizationType": "NONE"}),
    "no-wildcard-actions": ("aws:iam/rolePolicy:RolePolicy",
                            {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*",
                                                                  "Resource": "arn:aws:s3:::b"}]})}),
}


def test_identity_star_resource_rule_can_fail_and_skips_boundaries():
    def policy(*actions, condition=None):
        statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
        if condition:
            statement["Condition"] = condition
        return json.dumps({"Statement": [statement]})

    check = rules.identity_star_resource_only_where_required
    role_policy = "aws:iam/rolePolicy:RolePolicy"
    assert check([(role_policy, {"role": "r", "policy": policy("s3:GetObject")})])
    assert check([(role_policy, {"role": "r", "policy": policy("secretsmanager:GetSecretValue")})])
    assert check([(role_policy, {"role": "r", "policy": policy("ec2:CreateVpc")})])
    assert not check([(role_policy, {"role": "r", "policy": policy("ecr:GetAuthorizationToken")})])
    assert not check([(role_policy, {"role": "r", "policy": policy("ec2:DescribeVpcs")})])
    assert not check([(role_policy, {"role": "r", "policy": policy(
        "ec2:CreateVpc", condition={"StringEquals": {"aws:RequestTag/stack": "dev"}})})])
    boundary = ("aws:iam/policy:Policy", {"name": "ceiling", "policy": policy("s3:*")})
    assert check([boundary])
    assert not check([boundary, ("aws:iam/role:Role",
                                 {"permissionsBoundary": "arn:aws:iam::1:policy/ceiling"})])


@pytest.mark.parametrize("rule", [r for r in rules.RULES if not r.stack], ids=lambda r: r.name)
def test_each_resource_rule_can_fail(rule):
    assert rule.name in BAD, f"add a non-compliant example for {rule.name}"
    resource_type, props = BAD[rule.name]
    messages = rule.check(resource_type, props)
    assert messages and all(isinstance(m, str) and m for m in messages)
    assert rule.check("aws:some/other:Type", props) == []


@pytest.mark.parametrize("image", ["repo:latest", "repo@sha256:", "repo:v1@sha256:abc",
                                   "repo@sha256:" + "A" * 64, "repo@sha256:" + "a" * 64 + "\n",
                                   "@sha256:" + "a" * 64, None])
def test_the_digest_rules_take_only_a_whole_digest(image):
    """ECS, SageMaker and Lambda refuse what only looks like a digest (one check for all
    three: policy/rules.py's IMAGE_BY_DIGEST); the whole digest passes each of them."""
    def found(image):
        return [rules.ecs_task_hardened("aws:ecs/taskDefinition:TaskDefinition", {
                    "containerDefinitions": [{"name": "app", "image": image}]}),
                rules.sagemaker_model_by_digest("aws:sagemaker/model:Model",
                                                {"primaryContainer": {"image": image}}),
                rules.lambda_function_hardened("aws:lambda/function:Function",
                                               {"packageType": "Image", "imageUri": image})]

    pinned = "1.dkr.ecr.eu-west-1.amazonaws.com/ml-app-dev-app@sha256:" + "0" * 64
    assert not any("digest" in m for rule in found(pinned) for m in rule)
    assert all(any("digest" in m for m in rule) for rule in found(image))


def test_the_stack_rule_finds_a_bucket_without_its_settings(graphs):
    resources = stack_resources(graphs["dev"])
    without_versioning = [(t, p) for t, p in resources if t != "aws:s3/bucketVersioning:BucketVersioning"]
    found = rules.buckets_fully_configured(without_versioning)
    assert found and all("has no versioning" in m for m in found)
    assert rules.buckets_fully_configured(resources) == []


def test_the_stack_rules_for_the_new_invariants_can_fail(graphs):
    resources = stack_resources(graphs["prod"])
    assert rules.s3_encryption(resources) == []
    assert rules.roles_carry_a_boundary(resources) == []
    assert rules.ecr_push_only_by_one_role(resources) == []
    # A log bucket under the stack's key (ALB could not deliver), and a model bucket on
    # SSE-S3, are both refused.
    swapped = []
    for t, p in resources:
        if t.startswith("aws:s3/bucketServerSideEncryptionConfiguration"):
            algorithm = p["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
            p = {**p, "rules": [{"applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms" if algorithm == "AES256" else "AES256"}}]}
        swapped.append((t, p))
    found = rules.s3_encryption(swapped)
    assert any("receives AWS log delivery" in m for m in found)
    assert any("must be SSE-KMS" in m for m in found)
    unbounded = [(t, {**p, "permissionsBoundary": None} if t == "aws:iam/role:Role" else p)
                 for t, p in resources]
    assert rules.roles_carry_a_boundary(unbounded)
    assert rules.ecr_push_only_by_one_role(
        [(t, p) for t, p in resources if t != "aws:ecr/repositoryPolicy:RepositoryPolicy"])


def test_rules_read_props_through_mappings_not_dicts():
    """CrossGuard hands rules read-only Mapping/Sequence proxies, not dicts and lists."""
    from pulumi_policy.proxy import unknown_checking_proxy
    for name, (resource_type, props) in BAD.items():
        rule = next(r for r in rules.RULES if r.name == name)
        assert rule.check(resource_type, unknown_checking_proxy(dict(props))) == \
            rule.check(resource_type, props), name


def test_the_pack_wraps_every_rule_with_its_enforcement_level(monkeypatch):
    """Run policy/__main__.py with PolicyPack replaced by a recorder (the real one starts
    the analyzer's gRPC server and blocks)."""
    import pulumi_policy
    captured = {}

    class Recorder:
        def __init__(self, name, policies, **kwargs):
            captured.update(name=name, policies=policies)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", Recorder)
    monkeypatch.syspath_prepend(str(ROOT / "policy"))
    sys.modules.pop("rules", None)
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    policies = {p.name: p for p in captured["policies"]}
    assert set(policies) == {r.name for r in rules.RULES}
    for rule in rules.RULES:
        policy = policies[rule.name]
        expected = pulumi_policy.StackValidationPolicy if rule.stack \
            else pulumi_policy.ResourceValidationPolicy
        assert isinstance(policy, expected)
        level = pulumi_policy.EnforcementLevel.MANDATORY if rule.mandatory \
            else pulumi_policy.EnforcementLevel.ADVISORY
        assert policy.enforcement_level == level


def test_pack_files_pin_pulumi_policy():
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in requirements
    import yaml
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["name"] == "python"
