"""Security properties over each stack's whole resource graph (not single resources): who can
reach what over the network, and which data is protected from deletion.

Every test first asserts that the set it checks is not empty, so that a refactoring that
renames a type or drops a resource makes the test fail instead of pass vacuously.
"""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import (Graph, Resource, as_list, config_value, one, resources_of_type,
                                 target_of)


WORLD = ("0.0.0.0/0", "::/0")


# ----------------------------------------------------------------- network exposure --
def _ingress_rules(graph: Graph) -> list[tuple[Resource, dict]]:
    """(owning resource, normalised rule) for every kind of ingress declaration."""
    rules = []
    for r in resources_of_type(graph, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        rules.append((r, {"sg": r.inputs["securityGroupId"], "protocol": r.inputs["ipProtocol"],
                          "from": r.inputs.get("fromPort"), "to": r.inputs.get("toPort"),
                          "cidrs": [c for c in (r.inputs.get("cidrIpv4"), r.inputs.get("cidrIpv6")) if c],
                          "source_sg": r.inputs.get("referencedSecurityGroupId")}))
    for r in resources_of_type(graph, "aws:ec2/securityGroupRule:SecurityGroupRule"):
        if r.inputs.get("type") == "ingress":
            rules.append((r, {"sg": r.inputs["securityGroupId"], "protocol": r.inputs["protocol"],
                              "from": r.inputs.get("fromPort"), "to": r.inputs.get("toPort"),
                              "cidrs": as_list(r.inputs.get("cidrBlocks")) + as_list(r.inputs.get("ipv6CidrBlocks")),
                              "source_sg": r.inputs.get("sourceSecurityGroupId")}))
    for r in resources_of_type(graph, "aws:ec2/securityGroup:SecurityGroup",
                               "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"):
        for rule in as_list(r.inputs.get("ingress")):
            rules.append((r, {"sg": r.outputs.get("id"), "protocol": rule.get("protocol"),
                              "from": rule.get("fromPort"), "to": rule.get("toPort"),
                              "cidrs": as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks")),
                              "source_sg": as_list(rule.get("securityGroups"))}))
    return rules


def _alb_and_task_groups(graph: Graph) -> tuple[str, str]:
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    [alb_sg] = alb.inputs["securityGroups"]
    service = one(graph, "aws:ecs/service:Service")
    [task_sg] = service.inputs["networkConfiguration"]["securityGroups"]
    assert alb_sg != task_sg
    return alb_sg, task_sg


def test_only_the_alb_is_open_to_clients_and_only_on_80_and_443(graph):
    alb_sg, _ = _alb_and_task_groups(graph)
    rules = _ingress_rules(graph)
    assert rules
    allowed = set(json.loads(config_value(graph, "allowedCidrs")))
    client_rules = [rule for _, rule in rules if rule["cidrs"] and rule["sg"] == alb_sg]
    assert client_rules, "the ALB accepts no client network"
    for owner, rule in rules:
        world = [c for c in rule["cidrs"] if c in WORLD]
        if world:
            assert rule["sg"] == alb_sg, f"{owner.label} opens {world} on a non-ALB group"
            assert rule["protocol"] == "tcp" and rule["from"] == rule["to"] in (80, 443), \
                f"{owner.label}: world-open on {rule['protocol']} {rule['from']}-{rule['to']}"
    for rule in client_rules:
        assert rule["protocol"] == "tcp" and rule["from"] == rule["to"] in (80, 443)
        assert set(rule["cidrs"]) <= allowed
    if "0.0.0.0/0" in allowed:
        assert any("0.0.0.0/0" in r["cidrs"] for r in client_rules)
    else:
        assert not any(set(r["cidrs"]) & set(WORLD) for _, r in rules)


def test_sagemaker_and_lambda_open_no_port_and_authenticate_callers_with_iam(target_graph):
    """No security group, no listener, no VPC: clients reach the endpoint through SageMaker's
    runtime API and the function through its URL, signed with SigV4 (design.md 10); a public
    URL only where the configuration says so, never in production."""
    assert not _ingress_rules(target_graph)
    assert not resources_of_type(target_graph, "aws:ec2/securityGroup:SecurityGroup",
                                 "aws:lb/listener:Listener", "aws:ec2/vpc:Vpc")
    if target_of(target_graph) == "lambda":
        url = one(target_graph, "aws:lambda/functionUrl:FunctionUrl").inputs
        assert url["authorizationType"] == config_value(target_graph, "lambdaUrlAuth")
        if config_value(target_graph, "production") == "true":
            assert url["authorizationType"] == "AWS_IAM"
        assert "cors" not in url       # no browser origin may call it with credentials
    else:
        # SageMaker's only entry is the IAM-authenticated InvokeEndpoint.
        assert one(target_graph, "aws:sagemaker/endpoint:Endpoint")


def test_tasks_accept_only_the_alb_on_the_container_port(graph):
    alb_sg, task_sg = _alb_and_task_groups(graph)
    task_rules = [rule for _, rule in _ingress_rules(graph) if rule["sg"] == task_sg]
    assert task_rules == [{"sg": task_sg, "protocol": "tcp", "from": 8080, "to": 8080,
                           "cidrs": [], "source_sg": alb_sg}]
    egress = [r for r in resources_of_type(
        graph, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]
    alb_out = [r.inputs for r in egress if r.inputs["securityGroupId"] == alb_sg]
    assert alb_out and all(e.get("referencedSecurityGroupId") == task_sg and e["fromPort"] == 8080
                           for e in alb_out)
    task_out = [r.inputs for r in egress if r.inputs["securityGroupId"] == task_sg]
    assert task_out and all(e["ipProtocol"] == "tcp" and e["fromPort"] == e["toPort"] == 443
                            for e in task_out)


def test_production_data_is_protected_and_other_stacks_follow_protect_data(any_graph):
    protect = config_value(any_graph, "protectData") == "true"
    if any_graph.stack == "prod":
        assert protect
    data = [one(any_graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry"), one(any_graph, "aws:kms/key:Key"),
            one(any_graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")]
    for resource in data:
        assert resource.protect is protect, resource.label
    assert one(any_graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").inputs["forceDestroy"] is (not protect)
    if target_of(any_graph) == "ecs":
        assert one(any_graph, "aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is protect
    # Every bucket follows protectData (SageMaker's data capture bucket included).
    for bucket in resources_of_type(any_graph, "aws:s3/bucket:Bucket"):
        assert bucket.inputs["forceDestroy"] is (not protect), bucket.label


@pytest.mark.parametrize("stack", ["prod", "prod-sagemaker", "prod-lambda"])
def test_prod_protects_every_piece_of_data(graphs, target_graphs, stack):
    graph = graphs.get(stack) or target_graphs[stack]
    protected = {r.type for r in graph.resources if r.protect}
    # Data and what decrypts it are protected; nothing else is (a protected ALB or service
    # would block every replacement).
    assert {"aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:ecr/repository:Repository"} \
        <= protected <= {"aws:s3/bucket:Bucket", "aws:kms/key:Key",
                         "aws:ecr/repository:Repository", "aws:cloudwatch/logGroup:LogGroup"}
