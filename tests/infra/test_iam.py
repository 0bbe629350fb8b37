"""IAM: every identity policy linted with parliament; exact ARNs; no wildcard actions."""

from __future__ import annotations

import json

import parliament
import pytest

from tests.infra.harness import Graph, PolicyDoc, as_list, one, policy_documents, within

# Parliament findings we accept, each with the reason. Key: (policy resource name suffix,
# finding issue). Anything else fails the test; an entry that no longer matches anything
# fails too (test_allow_list_has_no_stale_entries), so the list cannot rot.
ALLOWED_FINDINGS: dict[tuple[str, str], str] = {
    ("-roles-execution", "CREDENTIALS_EXPOSURE"):
        "ecr:GetAuthorizationToken is how ECS logs in to ECR to pull the image; it has no "
        "resource-level permissions, and the token only reaches repositories the role may "
        "read (the policy's next statement names this repository alone)",
}
# Components whose policies are linted by their own test files with their own allow-list
# (the delivery pipeline's deploy role must manage IAM and create VPCs, which parliament
# rightly flags): tests/infra/test_pipeline*.py.
LINTED_ELSEWHERE = ("ml-app:cicd:",)


def identity_policies(graph: Graph) -> list[PolicyDoc]:
    docs = [d for d in policy_documents(graph, "identity")
            if not any(a.type.startswith(LINTED_ELSEWHERE) for a in graph.ancestors(d.resource))]
    assert len(docs) >= 2, "expected the task and execution role policies at least"
    return docs


def lint(doc: PolicyDoc) -> list[tuple[str, object]]:
    findings = parliament.analyze_policy_string(doc.text, include_community_auditors=True).findings
    return [(f.issue, f.detail) for f in findings]


def unexpected(doc: PolicyDoc) -> list[tuple[str, object]]:
    return [(issue, detail) for issue, detail in lint(doc)
            if not any(doc.resource.name.endswith(suffix) and issue == allowed_issue
                       for suffix, allowed_issue in ALLOWED_FINDINGS)]


def test_parliament_is_live():
    """The linter must be able to fail: a wildcard policy produces findings."""
    bad = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "iam:PassRole"], "Resource": "*"}]})
    issues = {f.issue for f in parliament.analyze_policy_string(
        bad, include_community_auditors=True).findings}
    assert "RESOURCE_STAR" in issues


def test_every_identity_policy_passes_parliament(graph):
    problems = {d.resource.name: unexpected(d) for d in identity_policies(graph)}
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_allow_list_has_no_stale_entries(graphs):
    used = set()
    for graph in graphs.values():
        for doc in identity_policies(graph):
            for issue, _ in lint(doc):
                used |= {key for key in ALLOWED_FINDINGS
                         if doc.resource.name.endswith(key[0]) and issue == key[1]}
    assert used == set(ALLOWED_FINDINGS)


def test_no_policy_anywhere_allows_every_action(graph):
    docs = policy_documents(graph)
    assert {d.kind for d in docs} >= {"identity", "trust", "key", "resource"}
    for doc in docs:
        for s in doc.statements:
            actions = as_list(s.get("Action"))
            assert "*" not in actions, f"{doc.resource.label}: Action \"*\""
            assert not (s["Effect"] == "Allow" and "NotAction" in s), doc.resource.label
            assert actions, f"{doc.resource.label}: statement without Action"


def test_resource_star_only_for_actions_without_resource_level_permissions(graph):
    for doc in identity_policies(graph):
        for s in doc.statements:
            if "*" in as_list(s["Resource"]):
                assert as_list(s["Action"]) == ["ecr:GetAuthorizationToken"], \
                    f"{doc.resource.label} {s.get('Sid')}: Resource \"*\""


def test_every_role_is_assumable_only_by_its_service_for_this_account(graph):
    trusts = policy_documents(graph, "trust")
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


def test_task_role_reads_only_the_deployed_model_version(graph):
    bucket = one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["arn"]
    key = one(graph, "aws:kms/key:Key").outputs["arn"]
    version = f"models/{graph.config['ml-app:modelName']}/{graph.config['ml-app:modelVersion']}"
    statements = _statements(graph, "-task")
    assert set(statements) == {"ReadTheDeployedModelVersion", "DecryptModelObjects"}
    read = statements["ReadTheDeployedModelVersion"]
    assert read["Action"] == "s3:GetObject" and read["Resource"] == f"{bucket}/{version}/*"
    decrypt = statements["DecryptModelObjects"]
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == key
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == \
        f"s3.{graph.config['aws:region']}.amazonaws.com"


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


@pytest.mark.parametrize("stack", ["dev"])
def test_a_wildcard_would_be_caught(graphs, stack):
    """The checks above can fail: widen the task policy in a copy and lint it."""
    doc = [d for d in identity_policies(graphs[stack]) if d.resource.name.endswith("-task")][0]
    widened = json.loads(doc.text)
    widened["Statement"][0]["Resource"] = "*"
    bad = PolicyDoc(doc.resource, doc.kind, json.dumps(widened), widened)
    assert unexpected(bad), "parliament did not flag s3:GetObject on Resource *"
