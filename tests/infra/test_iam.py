"""IAM of the service (infra/iam.py): the task's two roles by exact ARN, and over every
policy of every graph (each target's service roles included): no wildcard actions, trust only
for this account, parliament with a commented allow-list (the pipeline's policies have theirs
in test_pipeline_iam.py)."""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import (AllowList, Graph, PolicyDoc, as_list, deployed_models, one,
                                 policy_documents, policy_key, unexpected_findings,
                                 used_entries, within)


# Parliament findings accepted for the service's policies, each with its reason (the
# harness's AllowList format). Anything else fails the test; an entry that no longer matches
# anything fails too (test_allow_list_has_no_stale_entries), so the list cannot rot.
ALLOWED_FINDINGS: AllowList = {
    ("roles-execution", "CREDENTIALS_EXPOSURE"): (
        {"ecr:getauthorizationtoken"},
        "ecr:GetAuthorizationToken is how ECS logs in to ECR to pull the image; it has no "
        "resource-level permissions, and the token only reaches repositories the role may "
        "read (the policy's next statement names this repository alone)"),
    ("execution", "CREDENTIALS_EXPOSURE"): (
        {"ecr:getauthorizationtoken"},
        "SageMaker's execution role logs in to ECR to pull the image, as ECS's does (same "
        "reason; its next statement names this repository alone)"),
}


# Components whose policies are linted by their own test files with their own allow-list
# (the delivery pipeline's deploy role must manage IAM and create VPCs, which parliament
# rightly flags): tests/infra/test_pipeline*.py.
LINTED_ELSEWHERE = ("ml-app:cicd:",)


def identity_policies(graph: Graph) -> list[PolicyDoc]:
    docs = [d for d in policy_documents(graph, "identity")
            if not any(a.type.startswith(LINTED_ELSEWHERE) for a in graph.ancestors(d.resource))]
    # ECS: the task and execution roles' (and the flow logs'); SageMaker, Lambda: one each.
    assert docs, "expected the service's role policies"
    return docs


def test_every_identity_policy_passes_parliament(any_graph):
    problems = {d.resource.name: unexpected_findings(policy_key(any_graph, d), d.text,
                                                     ALLOWED_FINDINGS)
                for d in identity_policies(any_graph)}
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_allow_list_has_no_stale_entries(graphs, target_graphs):
    used = set()
    for graph in [*graphs.values(), *target_graphs.values()]:
        for doc in identity_policies(graph):
            used |= used_entries(policy_key(graph, doc), doc.text, ALLOWED_FINDINGS)
    assert used == set(ALLOWED_FINDINGS)


def test_no_policy_anywhere_allows_every_action(any_graph):
    docs = policy_documents(any_graph)
    assert {d.kind for d in docs} >= {"identity", "trust", "key", "resource"}
    for doc in docs:
        for s in doc.statements:
            actions = as_list(s.get("Action"))
            assert "*" not in actions, f"{doc.resource.label}: Action \"*\""
            assert not (s["Effect"] == "Allow" and "NotAction" in s), doc.resource.label
            assert actions, f"{doc.resource.label}: statement without Action"


def test_resource_star_only_for_actions_without_resource_level_permissions(any_graph):
    for doc in identity_policies(any_graph):
        for s in doc.statements:
            if "*" in as_list(s["Resource"]):
                # Neither has resource-level permissions; PutMetricData (SageMaker's instance
                # metrics) is pinned to its namespace.
                namespace = s.get("Condition", {}).get("StringEquals", {}).get(
                    "cloudwatch:namespace")
                assert as_list(s["Action"]) == ["ecr:GetAuthorizationToken"] or (
                    as_list(s["Action"]) == ["cloudwatch:PutMetricData"] and namespace), \
                    f"{doc.resource.label} {s.get('Sid')}: Resource \"*\""


def test_every_role_is_assumable_only_by_its_service_for_this_account(any_graph):
    trusts = policy_documents(any_graph, "trust")
    assert trusts
    for doc in trusts:
        for s in doc.statements:
            principal = s["Principal"]
            conditions = s.get("Condition", {})
            if "Service" in principal:
                assert conditions.get("StringEquals", {}).get("aws:SourceAccount"), \
                    f"{doc.resource.label}: no aws:SourceAccount condition (confused deputy)"
            else:
                # Web identity (GitHub OIDC): the token's audience and subject are pinned.
                assert "Federated" in principal, f"{doc.resource.label}: {principal}"
                flat = json.dumps(conditions)
                assert ":aud" in flat and ":sub" in flat, doc.resource.label


def _statements(graph: Graph, suffix: str) -> dict[str, dict]:
    [policy] = [p for p in within(graph, "ml-app:infra:ServiceRoles",
                                  "aws:iam/rolePolicy:RolePolicy") if p.name.endswith(suffix)]
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def test_task_role_reads_and_decrypts_exactly_the_deployed_model_versions(graph):
    bucket = one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["arn"]
    key = one(graph, "aws:kms/key:Key").outputs["arn"]
    versions = [f"{bucket}/{m.prefix}/*" for m in deployed_models(graph)]
    assert len(versions) == len(json.loads(graph.config["ml-app:models"])) >= 1
    statements = _statements(graph, "-task")
    assert set(statements) == {"ReadTheDeployedModelVersion", "DecryptModelObjects"}
    read = statements["ReadTheDeployedModelVersion"]
    assert read["Action"] == "s3:GetObject" and as_list(read["Resource"]) == versions
    decrypt = statements["DecryptModelObjects"]
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == key
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{graph.config['aws:region']}.amazonaws.com"},
        # S3 names the object in the encryption context when no Bucket Key is used
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": read["Resource"]}}
    objects = within(graph, "ml-app:infra:ModelRegistry", "aws:s3/bucketObjectv2:BucketObjectv2")
    assert objects and all(o.inputs["bucketKeyEnabled"] is False for o in objects)


def test_execution_role_touches_only_this_repository_log_group_and_secret(graph):
    repo = one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage").outputs["arn"]
    group = one(graph, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring").outputs["arn"]
    statements = _statements(graph, "-execution")
    assert statements["PullThisRepository"]["Resource"] == repo
    assert "ecr:BatchGetImage" in statements["PullThisRepository"]["Action"]
    assert statements["WriteThisLogGroup"]["Resource"] == f"{group}:log-stream:*"
    if graph.config["ml-app:apiKeyEnabled"] == "true":
        secret = one(graph, "aws:secretsmanager/secret:Secret", "ml-app:infra:ApiKey").outputs["arn"]
        assert statements["ReadTheApiKey"]["Resource"] == secret
        assert statements["DecryptTheApiKey"]["Condition"]["StringEquals"]["kms:ViaService"] \
            .startswith("secretsmanager.")
    allowed = {"EcrLogin", "PullThisRepository", "WriteThisLogGroup", "ReadTheApiKey",
               "DecryptTheApiKey"}
    assert set(statements) <= allowed


def arn_pattern_problem(pattern: str) -> str | None:
    """Why a Resource/NotResource pattern is not a valid IAM ARN pattern (None if it is):
    "arn:partition:service:region:account:resource", six colon-separated segments, with no
    wildcard in the partition or the service ("You can't use a wildcard in the service
    segment that identifies the AWS product": IAM JSON policy elements, Resource)."""
    if pattern == "*":
        return None
    parts = pattern.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return "not arn:partition:service:region:account:resource"
    if any(c in parts[1] + parts[2] for c in "*?"):
        return "a wildcard in the partition or service segment"
    if not (parts[1] and parts[2] and parts[5]):
        return "an empty partition, service or resource"
    return None


def test_every_arn_pattern_names_its_partition_and_service(any_graph):
    """Every Resource and NotResource of every policy in the graph (the permissions
    boundary, each role's, each bucket's, key's and repository's): a pattern IAM would
    refuse, or read differently from us (tests/infra/iam_eval.py never matches a service
    wildcard), grants nothing or does not deploy."""
    bad = [(d.resource.name, s.get("Sid"), pattern, problem)
           for d in policy_documents(any_graph) for s in d.statements
           for pattern in as_list(s.get("Resource")) + as_list(s.get("NotResource"))
           if (problem := arn_pattern_problem(pattern))]
    assert not bad, bad


@pytest.mark.parametrize("pattern, problem", [
    # The ceiling's named grant before this check: a service wildcard.
    ("arn:aws:*:eu-west-1:333333333333:*/ml-app-prod", "service"),
    ("arn:*:s3:::ml-app-prod-*", "partition"),
    ("arn:aws:s?s:eu-west-1:333333333333:ml-app-prod-*", "service"),
    ("arn:aws:s3:::", "empty"),
    ("arn:aws:s3", "not arn"),
    ("ml-app-prod-*", "not arn"),
])
def test_a_bad_arn_pattern_would_be_caught(pattern, problem):
    assert problem in (arn_pattern_problem(pattern) or ""), pattern
    assert arn_pattern_problem("arn:aws:ecs:*:333333333333:*/ml-app-prod:*") is None


@pytest.mark.parametrize("stack", ["dev"])
def test_a_wildcard_would_be_caught(graphs, stack):
    """The checks above can fail: widen the task policy in a copy and lint it."""
    graph = graphs[stack]
    doc = [d for d in identity_policies(graph) if d.resource.name.endswith("-task")][0]
    widened = json.loads(doc.text)
    widened["Statement"][0]["Resource"] = "*"
    bad = PolicyDoc(doc.resource, doc.kind, json.dumps(widened), widened)
    assert unexpected_findings(policy_key(graph, bad), bad.text, ALLOWED_FINDINGS), \
        "parliament did not flag s3:GetObject on Resource *"
