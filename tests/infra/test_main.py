"""The program (__main__.py): every component wired, every resource in one, the outputs."""

from __future__ import annotations

import json

from tests.infra.harness import ROOT, config_value, json_input, one, target_of


def test_every_resource_has_a_component_parent_and_components_register_outputs(any_graph):
    components = [r for r in any_graph.resources if not r.custom]
    assert len(components) >= 8
    component_urns = {c.urn for c in components}
    orphans = [r.label for r in any_graph.resources
               if r.custom and not r.type.startswith("pulumi:providers:")
               and r.parent not in component_urns]
    assert not orphans, f"resources outside any component (missing parent=self): {orphans}"
    for c in components:
        assert c.type.startswith("ml-app:"), c.label
        assert any_graph.component_outputs.get(c.urn), f"{c.label} never called register_outputs"


def test_resource_names_are_unique_per_type(any_graph):
    seen = [(r.type, r.name) for r in any_graph.resources]
    assert len(seen) == len(set(seen))


# Every stack exports these; each target adds its own (TARGET_EXPORTS).
EXPORTS = {"target", "ecrRepositoryUrl", "imageRef", "modelUri", "modelManifestSha256", "models",
           "modelBucket", "logGroupName", "alarmTopicArn", "dashboardUrl", "kmsKeyArn",
           "pipelineName", "permissionsBoundaryArn", "githubPreviewRoleArn", "consoleLinks"}
TARGET_EXPORTS = {
    "ecs": {"serviceUrl", "albDnsName", "clusterName", "serviceName", "taskDefinitionArn"},
    "sagemaker": {"endpointName", "endpointConfigName", "invocationUrl"},
    "lambda": {"serviceUrl", "functionName", "functionAlias", "functionVersion"},
}
# What only one target creates: no ECS cluster, load balancer, VPC or NAT where the image
# does not run on ECS (docs/targets.md: which network pieces remain, and why).
TARGET_TYPES = {
    "ecs": {"aws:ecs/cluster:Cluster", "aws:ecs/service:Service", "aws:lb/loadBalancer:LoadBalancer",
            "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/natGateway:NatGateway", "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:wafv2/webAcl:WebAcl",
            "aws:secretsmanager/secret:Secret", "aws:acm/certificate:Certificate",
            "aws:route53/record:Record"},
    "sagemaker": {"aws:sagemaker/model:Model", "aws:sagemaker/endpoint:Endpoint",
                  "aws:sagemaker/endpointConfiguration:EndpointConfiguration"},
    "lambda": {"aws:lambda/function:Function", "aws:lambda/alias:Alias",
               "aws:lambda/functionUrl:FunctionUrl"},
}
# ... of which these exist only as the configuration says (natGateways, wafEnabled,
# apiKeyEnabled, domainName); every other one is always there on its target.
OPTIONAL_TYPES = {"aws:ec2/natGateway:NatGateway", "aws:wafv2/webAcl:WebAcl",
                  "aws:secretsmanager/secret:Secret", "aws:acm/certificate:Certificate",
                  "aws:route53/record:Record"}


def test_stack_outputs(any_graph):
    target = target_of(any_graph)
    exports = any_graph.exports
    assert EXPORTS | TARGET_EXPORTS[target] <= set(exports), \
        EXPORTS | TARGET_EXPORTS[target] - set(exports)
    assert exports["target"] == target
    others = set().union(*TARGET_EXPORTS.values()) - TARGET_EXPORTS[target]
    assert not others & set(exports), others & set(exports)
    # docs/deploy.md's "Outputs" table names every output of the stack.
    section = (ROOT / "docs" / "deploy.md").read_text().split("## 5. Outputs", 1)[1]
    table = section.split("\n## ", 1)[0]
    undocumented = [k for k in exports if f"`{k}`" not in table]
    assert not undocumented, f"add to the outputs table of docs/deploy.md: {undocumented}"
    assert exports["permissionsBoundaryArn"].endswith(
        f":policy/ml-app-{any_graph.stack}-permissions-boundary")
    # The API key is the ALB path's (design.md 10): SageMaker and Lambda callers sign.
    assert ("apiKeySecretName" in exports) == \
        (target == "ecs" and config_value(any_graph, "apiKeyEnabled") == "true")
    assert all(link.startswith("https://") for link in exports["consoleLinks"].values())
    assert not any_graph.secret_exports


def test_each_target_serves_the_image_digest_and_the_pinned_model(any_graph):
    """Whatever the target, it runs the pushed digest with the registry's model deployment:
    MODEL_URI and MODEL_SHA256 as the outputs name them."""
    exports, target = any_graph.exports, target_of(any_graph)
    if target == "ecs":
        [task] = json_input(one(any_graph, "aws:ecs/taskDefinition:TaskDefinition"),
                            "containerDefinitions")
        image, env = task["image"], {e["name"]: e["value"] for e in task["environment"]}
        assert exports["clusterName"] == exports["serviceName"] == f"ml-app-{any_graph.stack}"
    elif target == "sagemaker":
        container = one(any_graph, "aws:sagemaker/model:Model").inputs["primaryContainer"]
        image, env = container["image"], container["environment"]
        assert exports["endpointName"] == f"ml-app-{any_graph.stack}"
    else:
        function = one(any_graph, "aws:lambda/function:Function")
        image, env = function.inputs["imageUri"], function.inputs["environment"]["variables"]
        assert exports["functionName"] == f"ml-app-{any_graph.stack}-function"
    assert image == exports["imageRef"] and "@sha256:" in image
    assert env["MODEL_URI"] == exports["modelUri"]
    assert env["MODEL_SHA256"] == exports["modelManifestSha256"]
    assert "API_KEY" not in env
    # The app accepts exactly this environment (its settings refuse a name that looks like
    # one of theirs but is not, and a bad value), as it would at start-up on that target.
    from app.config import load_server_settings, load_settings
    settings = load_settings(env)
    assert ",".join(s.uri for s in settings.models) == env["MODEL_URI"]
    assert ",".join(s.sha256 for s in settings.models) == env["MODEL_SHA256"]
    assert settings.api_key is None
    load_server_settings(env)
    # the entries of ml-app:models, in order: what `make smoke` checks the service serves
    assert exports["models"].split(",") == json.loads(config_value(any_graph, "models"))
    assert [e.split("@sha256:")[1] for e in exports["models"].split(",")] == \
        env["MODEL_SHA256"].split(",")


def test_only_the_targets_pieces_exist(any_graph):
    target = target_of(any_graph)
    types = {r.type for r in any_graph.resources}
    missing = TARGET_TYPES[target] - OPTIONAL_TYPES - types
    assert not missing, f"{target}: its own resources are missing: {sorted(missing)}"
    for other, other_types in TARGET_TYPES.items():
        if other != target:
            assert not other_types & types, f"{target} stack creates {other}'s " \
                f"{sorted(other_types & types)}"
