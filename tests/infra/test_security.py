"""Security properties over each stack's whole resource graph (not single resources).

Every test first asserts that the set it checks is not empty, so that a refactoring that
renames a type or drops a resource makes the test fail instead of pass vacuously.
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache

import pytest

from tests.infra.harness import (Graph, Resource, as_list, one, policy_documents,
                                 resources_of_type)

WORLD = ("0.0.0.0/0", "::/0")


def config_value(graph: Graph, key: str) -> str:
    return graph.config[f"ml-app:{key}"]


def aws_resources(graph: Graph) -> list[Resource]:
    return [r for r in graph.resources if r.type.startswith("aws:")]


@lru_cache(maxsize=None)
def accepts_tags(type_token: str) -> bool:
    """Does the pulumi_aws resource class take a ``tags`` argument?"""
    _, module_path, class_name = type_token.split(":")
    module = module_path.split("/")[0]
    package = importlib.import_module("pulumi_aws" if module == "index" else f"pulumi_aws.{module}")
    cls = getattr(package, class_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def provider_of(graph: Graph) -> Resource:
    return one(graph, "pulumi:providers:aws")


# ------------------------------------------------------------ provider, tags, parents --
def test_one_explicit_aws_provider_carries_the_default_tags(graph):
    provider = provider_of(graph)
    import json
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags["project"] == "ml-app" and tags["stack"] == graph.stack
    assert tags["owner"] == config_value(graph, "owner") and tags["owner"]
    assert tags["cost-centre"] == config_value(graph, "costCentre") and tags["cost-centre"]
    assert provider.inputs["region"] == graph.config["aws:region"]


def test_every_aws_resource_and_invoke_uses_the_tagged_provider(graph):
    provider = provider_of(graph)
    resources = aws_resources(graph)
    taggable = [r for r in resources if accepts_tags(r.type)]
    assert len(taggable) > 30, "expected most resources to be taggable"
    wrong = [r.label for r in resources if not r.provider.startswith(provider.urn)]
    assert not wrong, f"resources on the default (untagged) provider: {wrong}"
    aws_invokes = [i for i in graph.invokes if i.token.startswith("aws:")]
    assert aws_invokes
    assert all(i.provider.startswith(provider.urn) for i in aws_invokes), \
        [i.token for i in aws_invokes if not i.provider.startswith(provider.urn)]


def test_every_resource_has_a_component_parent_and_components_register_outputs(graph):
    components = [r for r in graph.resources if not r.custom]
    assert len(components) >= 8
    component_urns = {c.urn for c in components}
    orphans = [r.label for r in graph.resources
               if r.custom and not r.type.startswith("pulumi:providers:")
               and r.parent not in component_urns]
    assert not orphans, f"resources outside any component (missing parent=self): {orphans}"
    for c in components:
        assert c.type.startswith("ml-app:"), c.label
        assert graph.component_outputs.get(c.urn), f"{c.label} never called register_outputs"


def test_resource_names_are_unique_per_type(graph):
    seen = [(r.type, r.name) for r in graph.resources]
    assert len(seen) == len(set(seen))


# ----------------------------------------------------------------------------- buckets --
def _for_bucket(graph: Graph, bucket: Resource, type_: str) -> list[Resource]:
    return [r for r in resources_of_type(graph, type_) if r.inputs.get("bucket") == bucket.outputs["bucket"]]


def test_every_bucket_is_encrypted_versioned_private_tls_only_and_expires_old_versions(graph):
    key_arn = one(graph, "aws:kms/key:Key").outputs["arn"]
    buckets = resources_of_type(graph, "aws:s3/bucket:Bucket")
    assert buckets
    for bucket in buckets:
        [versioning] = _for_bucket(graph, bucket, "aws:s3/bucketVersioning:BucketVersioning")
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"

        [sse] = _for_bucket(graph, bucket, "aws:s3/bucketServerSideEncryptionConfiguration:"
                                           "BucketServerSideEncryptionConfiguration")
        [rule] = sse.inputs["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
        assert rule["bucketKeyEnabled"] is True

        [pab] = _for_bucket(graph, bucket, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                     "restrictPublicBuckets"):
            assert pab.inputs[flag] is True, flag

        [ownership] = _for_bucket(graph, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"

        [policy] = _for_bucket(graph, bucket, "aws:s3/bucketPolicy:BucketPolicy")
        doc = [d for d in policy_documents(graph, "resource") if d.resource is policy][0]
        denies_http = [s for s in doc.statements if s["Effect"] == "Deny"
                       and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert denies_http and set(as_list(denies_http[0]["Resource"])) == {
            bucket.outputs["arn"], bucket.outputs["arn"] + "/*"}
        assert any(s["Condition"].get("NumericLessThan", {}).get("s3:TlsVersion") == "1.2"
                   for s in doc.statements)

        [lifecycle] = _for_bucket(graph, bucket, "aws:s3/bucketLifecycleConfiguration:"
                                                 "BucketLifecycleConfiguration")
        expiring = [r for r in lifecycle.inputs["rules"] if r.get("noncurrentVersionExpiration")]
        assert expiring and expiring[0]["status"] == "Enabled"
        assert expiring[0]["noncurrentVersionExpiration"]["noncurrentDays"] > 0


def test_model_objects_are_the_committed_version_encrypted_with_the_key(graph):
    from infra import releases
    cfg_version = config_value(graph, "modelVersion")
    folder = releases.MODEL_ROOT / config_value(graph, "modelName") / cfg_version
    objects = resources_of_type(graph, "aws:s3/bucketObjectv2:BucketObjectv2")
    manifest = __import__("json").loads((folder / "manifest.json").read_text())
    expected = {"manifest.json", *manifest["files"]}
    assert {o.inputs["key"].rsplit("/", 1)[1] for o in objects} == expected
    key_arn = one(graph, "aws:kms/key:Key").outputs["arn"]
    import hashlib
    for o in objects:
        assert o.inputs["key"].startswith(f"models/{config_value(graph, 'modelName')}/{cfg_version}/")
        assert o.inputs["serverSideEncryption"] == "aws:kms" and o.inputs["kmsKeyId"] == key_arn
        path = o.inputs["source"].path
        assert path.startswith(str(folder))
        assert o.inputs["sourceHash"] == hashlib.sha256(open(path, "rb").read()).hexdigest()


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
    allowed = set(__import__("json").loads(config_value(graph, "allowedCidrs")))
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


def test_the_default_security_group_is_emptied(graph):
    default = one(graph, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress") == [] and default.inputs.get("egress") == []


def _routes(graph: Graph) -> dict[str, list[dict]]:
    """route table id -> its routes."""
    table_routes: dict[str, list[dict]] = {}
    for route in resources_of_type(graph, "aws:ec2/route:Route"):
        table_routes.setdefault(route.inputs["routeTableId"], []).append(route.inputs)
    return table_routes


def _table_of_subnet(graph: Graph) -> dict[str, str]:
    return {a.inputs["subnetId"]: a.inputs["routeTableId"]
            for a in resources_of_type(graph, "aws:ec2/routeTableAssociation:RouteTableAssociation")}


def test_tasks_run_in_private_subnets_without_public_ips(graph):
    service = one(graph, "aws:ecs/service:Service")
    network = service.inputs["networkConfiguration"]
    assert network["assignPublicIp"] is False
    igw_ids = {g.outputs["id"] for g in resources_of_type(graph, "aws:ec2/internetGateway:InternetGateway")}
    assert igw_ids
    routes, tables = _routes(graph), _table_of_subnet(graph)
    subnets = {s.outputs["id"]: s for s in resources_of_type(graph, "aws:ec2/subnet:Subnet")}
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets.values())
    task_subnets = network["subnets"]
    assert len(task_subnets) == int(config_value(graph, "availabilityZones")) >= 2
    for subnet_id in task_subnets:
        table_routes = routes.get(tables[subnet_id], [])
        assert not any(r.get("gatewayId") in igw_ids for r in table_routes), \
            f"task subnet {subnets[subnet_id].name} routes to the internet gateway"
        if config_value(graph, "natGateways") != "none":
            assert any(r.get("natGatewayId") for r in table_routes)
    zones = {subnets[s].inputs["availabilityZone"] for s in task_subnets}
    assert len(zones) == len(task_subnets), "task subnets must be in distinct zones"
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["internal"] is False
    for subnet_id in alb.inputs["subnets"]:
        assert any(r.get("gatewayId") in igw_ids for r in routes[tables[subnet_id]])
    assert not set(alb.inputs["subnets"]) & set(task_subnets)


def test_nat_gateways_and_endpoints_follow_the_stack_config(graph):
    strategy = config_value(graph, "natGateways")
    zones = int(config_value(graph, "availabilityZones"))
    nats = resources_of_type(graph, "aws:ec2/natGateway:NatGateway")
    assert len(nats) == {"one-per-az": zones, "single": 1, "none": 0}[strategy]
    # com.amazonaws.<region>.<service>, where <service> may hold a dot (ecr.api)
    endpoints = {e.inputs["serviceName"].split(".", 3)[-1]: e
                 for e in resources_of_type(graph, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert endpoints["s3"].inputs["vpcEndpointType"] == "Gateway"
    interface = {k for k, e in endpoints.items() if e.inputs["vpcEndpointType"] == "Interface"}
    if config_value(graph, "vpcEndpoints") == "true":
        assert interface == {"ecr.api", "ecr.dkr", "logs", "secretsmanager"}
        assert all(endpoints[k].inputs["privateDnsEnabled"] is True for k in interface)
    else:
        assert interface == set()
    flow_logs = resources_of_type(graph, "aws:ec2/flowLog:FlowLog")
    assert len(flow_logs) == (1 if config_value(graph, "flowLogs") == "true" else 0)


# ----------------------------------------------------------------------- encryption --
def test_one_rotating_key_encrypts_logs_topic_secret_repository_and_bucket(graph):
    key = one(graph, "aws:kms/key:Key")
    key_arn = key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    log_groups = resources_of_type(graph, "aws:cloudwatch/logGroup:LogGroup")
    assert log_groups
    retention = int(config_value(graph, "logRetentionDays"))
    for group in log_groups:
        assert group.inputs["kmsKeyId"] == key_arn, group.label
        assert group.inputs["retentionInDays"] == retention, group.label
        assert group.inputs["name"].startswith(f"/ml-app/{graph.stack}/")
    assert one(graph, "aws:sns/topic:Topic").inputs["kmsMasterKeyId"] == key_arn
    for secret in resources_of_type(graph, "aws:secretsmanager/secret:Secret"):
        assert secret.inputs["kmsKeyId"] == key_arn
    repo = one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key_arn}]


def test_key_policy_lets_logs_use_the_key_only_for_this_stacks_log_groups(graph):
    [doc] = policy_documents(graph, "key")
    by_sid = {s["Sid"]: s for s in doc.statements}
    logs = by_sid["CloudWatchLogsForThisStacksLogGroups"]
    assert logs["Principal"] == {"Service": f"logs.{graph.config['aws:region']}.amazonaws.com"}
    context = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert context.endswith(f":log-group:/ml-app/{graph.stack}/*")
    root = by_sid["EnableIamPoliciesOfThisAccount"]
    assert root["Principal"]["AWS"].endswith(":root")


def test_ecr_repository_is_immutable_scanned_and_expires_images(graph):
    repo = one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    lifecycle = one(graph, "aws:ecr/lifecyclePolicy:LifecyclePolicy", "ml-app:infra:ContainerImage")
    rules = __import__("json").loads(lifecycle.inputs["policy"])["rules"]
    assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}


def test_production_data_is_protected_and_other_stacks_follow_protect_data(graph):
    protect = config_value(graph, "protectData") == "true"
    if graph.stack == "prod":
        assert protect
    data = [one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry"), one(graph, "aws:kms/key:Key"),
            one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")]
    for resource in data:
        assert resource.protect is protect, resource.label
    assert one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").inputs["forceDestroy"] is (not protect)
    assert one(graph, "aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is protect


@pytest.mark.parametrize("stack", ["prod"])
def test_prod_protects_every_piece_of_data(graphs, stack):
    graph = graphs[stack]
    protected = {r.type for r in graph.resources if r.protect}
    # Data and what decrypts it are protected; nothing else is (a protected ALB or service
    # would block every replacement).
    assert {"aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:ecr/repository:Repository"} \
        <= protected <= {"aws:s3/bucket:Bucket", "aws:kms/key:Key",
                         "aws:ecr/repository:Repository", "aws:cloudwatch/logGroup:LogGroup"}
