"""The delivery pipeline (infra/pipeline.py) over each stack's recorded resource graph.

Stages and their order, approval, rollback, CodeBuild projects and their buildspecs, the
CodePipeline declaration against botocore's CreatePipeline input shape, IAM (parliament with
a commented allow-list, the permissions boundary on every role, read-only test and preview
roles, the GitHub OIDC trust), the artifact bucket, log groups, notifications and the
pipeline's configuration errors. Offline, under Pulumi mocks (tests/infra/harness.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import parliament
import pytest
from botocore.validate import ParamValidator

from infra import config as stack_config
from infra import boundary, pipeline_iam
from tests.infra.harness import (ROOT, STACKS, Graph, Resource, as_list, json_input,
                                 policy_documents, resources_of_type, run, run_program)
from tests.infra.test_aws_shapes import check_enums

PIPELINE = "ml-app:cicd:Pipeline"
BOUNDARY = "ml-app:cicd:PermissionsBoundary"
EXPECTED_STAGES = ["Source", "Test", "Preview", "Approval", "Deploy"]


# ------------------------------------------------------------------------------ helpers --
def inside(graph: Graph, component: str, *types: str) -> list[Resource]:
    return [r for r in resources_of_type(graph, *types)
            if any(a.type == component for a in graph.ancestors(r))]


def the(graph: Graph, type_: str, component: str = PIPELINE) -> Resource:
    found = inside(graph, component, type_)
    assert len(found) == 1, f"expected one {type_} in {component}: {[r.name for r in found]}"
    return found[0]


def cfg(graph: Graph, key: str) -> str:
    return graph.config[f"ml-app:{key}"]


def prefix(graph: Graph) -> str:
    return f"ml-app-{graph.stack}"


def pipeline_of(graph: Graph) -> Resource:
    return the(graph, "aws:codepipeline/pipeline:Pipeline")


def projects(graph: Graph) -> dict[str, Resource]:
    found = {r.inputs["name"].removeprefix(prefix(graph) + "-"): r
             for r in inside(graph, PIPELINE, "aws:codebuild/project:Project")}
    assert set(found) == {"test", "preview", "deploy"}, sorted(found)
    return found


def role(graph: Graph, key: str) -> Resource:
    [found] = [r for r in inside(graph, PIPELINE, "aws:iam/role:Role")
               if r.inputs["name"] == f"{prefix(graph)}-{key}"]
    return found


def role_statements(graph: Graph, role_res: Resource) -> list[dict[str, Any]]:
    """Statements of the role's inline policy and of every managed policy attached to it."""
    statements = []
    for p in inside(graph, PIPELINE, "aws:iam/rolePolicy:RolePolicy"):
        if p.inputs["role"] == role_res.outputs["id"]:
            statements += as_list(json_input(p, "policy")["Statement"])
    attached = {a.inputs["policyArn"] for a in
                inside(graph, PIPELINE, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] == role_res.outputs["name"]}
    for p in inside(graph, PIPELINE, "aws:iam/policy:Policy"):
        if p.outputs["arn"] in attached:
            statements += as_list(json_input(p, "policy")["Statement"])
            attached.discard(p.outputs["arn"])
    assert not attached, f"attached policies not found in the graph: {attached}"
    return statements


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def stack_key_arn(graph: Graph) -> str:
    [key] = resources_of_type(graph, "aws:kms/key:Key")
    return key.outputs["arn"]


def alarm_topic_arn(graph: Graph) -> str:
    return graph.exports["alarmTopicArn"]


def boundary_arn(graph: Graph) -> str:
    return the(graph, "aws:iam/policy:Policy", BOUNDARY).outputs["arn"]


# The other side of every configuration choice, in one extra program run (dev): approval
# on, the S3 backend, an existing CodeStar connection and an existing GitHub OIDC provider.
ALT_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0b6e1c3a-5d2f-4e8b-9a7c-1f2e3d4c5b6a"
ALT_CONNECTION = ("arn:aws:codestar-connections:eu-west-1:123456789012:connection/"
                  "11111111-2222-4333-8444-555555555555")
ALT_OIDC = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def alternative() -> Graph:
    return run_program("dev", {
        "requireApproval": True, "pulumiBackend": "s3", "pulumiStateBucket": "acme-pulumi-state",
        "pulumiSecretsKeyArn": ALT_KEY, "codestarConnectionArn": ALT_CONNECTION,
        "githubOidcProviderArn": ALT_OIDC})


# --------------------------------------------------------------------------- the stages --
def test_each_stack_has_one_v2_pipeline_with_the_stages_in_order(graph):
    p = pipeline_of(graph)
    assert p.inputs["pipelineType"] == "V2"
    assert p.inputs["name"] == prefix(graph)
    names = [s["name"] for s in p.inputs["stages"]]
    approval = cfg(graph, "requireApproval") == "true"
    assert names == [s for s in EXPECTED_STAGES if approval or s != "Approval"]
    assert graph.exports["pipelineName"] == prefix(graph)


def test_only_prod_requires_an_approval_and_it_notifies_the_alarm_topic(graphs):
    assert cfg(graphs["prod"], "requireApproval") == "true"
    for stack, graph in graphs.items():
        stages = {s["name"]: s for s in pipeline_of(graph).inputs["stages"]}
        assert ("Approval" in stages) == (stack == "prod"), stack
    [approve] = {s["name"]: s for s in pipeline_of(graphs["prod"]).inputs["stages"]}[
        "Approval"]["actions"]
    assert (approve["category"], approve["owner"], approve["provider"]) == \
        ("Approval", "AWS", "Manual")
    assert approve["configuration"]["NotificationArn"] == alarm_topic_arn(graphs["prod"])
    assert 60 <= approve["timeoutInMinutes"] <= 7 * 24 * 60


def test_approval_is_configurable_outside_prod(alternative):
    graph = alternative
    assert [s["name"] for s in pipeline_of(graph).inputs["stages"]] == EXPECTED_STAGES


def test_source_is_the_configured_branch_through_the_connection(graph):
    p = pipeline_of(graph)
    [source] = p.inputs["stages"][0]["actions"]
    assert source["provider"] == "CodeStarSourceConnection" and source["owner"] == "AWS"
    conf = source["configuration"]
    assert conf["FullRepositoryId"] == cfg(graph, "githubRepository")
    assert conf["BranchName"] == cfg(graph, "pipelineBranch")
    connection = the(graph, "aws:codestarconnections/connection:Connection")
    assert connection.inputs["providerType"] == "GitHub"
    assert conf["ConnectionArn"] == connection.outputs["arn"] == \
        graph.exports["codestarConnectionArn"]
    # V2 trigger: pushes on that branch only (a trigger disables default change detection).
    [trigger] = p.inputs["triggers"]
    assert trigger["providerType"] == "CodeStarSourceConnection"
    git = trigger["gitConfiguration"]
    assert git["sourceActionName"] == source["name"]
    assert [push["branches"]["includes"] for push in git["pushes"]] == \
        [[cfg(graph, "pipelineBranch")]]


def test_an_existing_connection_arn_is_used_instead_of_creating_one(alternative):
    graph, arn = alternative, ALT_CONNECTION
    assert not inside(graph, PIPELINE, "aws:codestarconnections/connection:Connection")
    [source] = pipeline_of(graph).inputs["stages"][0]["actions"]
    assert source["configuration"]["ConnectionArn"] == arn
    pipeline_role = role_statements(graph, role(graph, "pipeline"))
    [use] = [s for s in pipeline_role if s.get("Sid") == "GithubSource"]
    assert use["Resource"] == arn and use["Action"] == "codestar-connections:UseConnection"


def test_deploy_is_last_and_rolls_back_on_failure(graph):
    stages = pipeline_of(graph).inputs["stages"]
    deploy = stages[-1]
    assert deploy["name"] == "Deploy"
    assert deploy["onFailure"]["result"] == "ROLLBACK"
    # No other stage rolls back or is skipped on failure: a failed test stops the release.
    assert all(not s.get("onFailure") for s in stages[:-1])
    [action] = deploy["actions"]
    assert action["provider"] == "CodeBuild"
    assert action["configuration"]["ProjectName"] == f"{prefix(graph)}-deploy"


def test_stage_actions_run_the_right_builds_in_order(graph):
    stages = {s["name"]: s for s in pipeline_of(graph).inputs["stages"]}
    for stage, kind in (("Test", "test"), ("Preview", "preview"), ("Deploy", "deploy")):
        [action] = stages[stage]["actions"]
        assert action["configuration"]["ProjectName"] == f"{prefix(graph)}-{kind}"
        assert action["inputArtifacts"] == ["source"]
    assert stages["Preview"]["actions"][0]["outputArtifacts"] == ["preview"]


def test_only_approvals_have_an_action_timeout_and_builds_time_out_fast(graph):
    """CodePipeline accepts timeoutInMinutes on manual approvals only; a build's timeout is
    its CodeBuild project's, kept short so a failed ECS deployment cannot hang the stage."""
    for stage in pipeline_of(graph).inputs["stages"]:
        for action in stage["actions"]:
            if action["category"] != "Approval":
                assert action.get("timeoutInMinutes") is None, action["name"]
    limits = {"test": 60, "preview": 30, "deploy": 45}
    for kind, project in projects(graph).items():
        assert 5 <= project.inputs["buildTimeout"] <= limits[kind], kind
        assert project.inputs["queuedTimeout"] <= 60


def _stage_declarations(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Terraform-shaped stages (the provider's inputs) -> the API's StageDeclaration list."""
    out = []
    for stage in stages:
        actions = []
        for a in stage["actions"]:
            api: dict[str, Any] = {"name": a["name"], "actionTypeId": {
                k: a[k] for k in ("category", "owner", "provider", "version")}}
            for key in ("runOrder", "configuration", "roleArn", "region", "namespace",
                        "timeoutInMinutes"):
                if a.get(key) is not None:
                    api[key] = a[key]
            for key in ("inputArtifacts", "outputArtifacts"):
                if a.get(key):
                    api[key] = [{"name": n} for n in a[key]]
            unmapped = set(a) - {"name", "category", "owner", "provider", "version",
                                 "runOrder", "configuration", "roleArn", "region",
                                 "namespace", "timeoutInMinutes", "inputArtifacts",
                                 "outputArtifacts"}
            assert not unmapped, f"extend the mapping for {unmapped}"
            actions.append(api)
        decl: dict[str, Any] = {"name": stage["name"], "actions": actions}
        if stage.get("onFailure"):
            decl["onFailure"] = stage["onFailure"]
        out.append(decl)
    return out


def _triggers(triggers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Terraform's plural block names (pushes, pullRequests) -> the API's (push, pullRequest)."""
    out = []
    for t in triggers:
        git = dict(t["gitConfiguration"])
        for tf, api in (("pushes", "push"), ("pullRequests", "pullRequest")):
            if tf in git:
                git[api] = git.pop(tf)
        out.append({"providerType": t["providerType"], "gitConfiguration": git})
    return out


def _create_pipeline_params(p: Resource) -> dict[str, Any]:
    i = p.inputs
    stores = [{"type": s["type"], "location": s["location"],
               "encryptionKey": s["encryptionKey"]} for s in i["artifactStores"]]
    return {"pipeline": {
        "name": i["name"], "roleArn": i["roleArn"], "artifactStore": stores[0],
        "stages": _stage_declarations(i["stages"]), "pipelineType": i["pipelineType"],
        "executionMode": i["executionMode"], "triggers": _triggers(i["triggers"])}}


CODEPIPELINE = botocore.session.get_session().get_service_model("codepipeline")
CREATE_PIPELINE = CODEPIPELINE.operation_model("CreatePipeline").input_shape


def _validate(params: dict[str, Any]) -> list[str]:
    report = ParamValidator().validate(params, CREATE_PIPELINE)
    errors = [report.generate_report()] if report.has_errors() else []
    return errors + check_enums(params, CREATE_PIPELINE)


def test_pipeline_validates_against_botocore_create_pipeline(graph):
    params = _create_pipeline_params(pipeline_of(graph))
    assert _validate(params) == []


def test_the_create_pipeline_validation_can_fail(graphs):
    params = _create_pipeline_params(pipeline_of(graphs["prod"]))
    params["pipeline"]["stages"][-1]["onFailure"] = {"result": "ROLLBACKK"}
    params["pipeline"]["stages"][1]["actions"][0]["timeoutMinutes"] = 5
    errors = "\n".join(_validate(params))
    assert "ROLLBACKK" in errors and "timeoutMinutes" in errors


# ------------------------------------------------------------------------------- builds --
def test_each_codebuild_project_runs_an_existing_buildspec_with_encrypted_logs(graph):
    groups = {g.outputs["name"]: g for g in resources_of_type(
        graph, "aws:cloudwatch/logGroup:LogGroup")}
    for kind, project in projects(graph).items():
        source = project.inputs["source"]
        assert source["type"] == "CODEPIPELINE"
        assert project.inputs["artifacts"]["type"] == "CODEPIPELINE"
        assert source["buildspec"] == f"ci/buildspecs/{kind}.yml"
        assert (ROOT / source["buildspec"]).is_file(), source["buildspec"]
        assert project.inputs["encryptionKey"] == stack_key_arn(graph)
        logs = project.inputs["logsConfig"]["cloudwatchLogs"]
        assert logs["status"] == "ENABLED"
        group = groups[logs["groupName"]]
        assert logs["groupName"].startswith(f"/ml-app/{graph.stack}/"), \
            "outside the log-group path the stack key policy serves"
        assert group.inputs["retentionInDays"] == int(cfg(graph, "logRetentionDays"))
        assert group.inputs["kmsKeyId"] == stack_key_arn(graph)


def test_docker_only_where_needed_and_the_stack_in_every_build(graph):
    for kind, project in projects(graph).items():
        env = project.inputs["environment"]
        assert env["privilegedMode"] is (kind in ("test", "deploy")), kind
        variables = {v["name"]: v for v in env["environmentVariables"]}
        assert variables["STACK"]["value"] == graph.stack
        if kind == "test":
            assert set(variables) == {"STACK"}, "the test build needs no cloud access"
        else:
            token = variables["PULUMI_ACCESS_TOKEN"]
            assert token["type"] == "SECRETS_MANAGER", "the token must never be plain text"
            assert token["value"] == cfg(graph, "pulumiAccessTokenSecret")
    assert projects(graph)["deploy"].inputs["concurrentBuildLimit"] == 1


def test_the_s3_backend_variant(alternative):
    graph, key = alternative, ALT_KEY
    for kind in ("preview", "deploy"):
        variables = {v["name"]: v for v in
                     projects(graph)[kind].inputs["environment"]["environmentVariables"]}
        assert "PULUMI_ACCESS_TOKEN" not in variables
        assert variables["PULUMI_BACKEND_URL"]["value"] == \
            "s3://acme-pulumi-state?region=eu-west-1"
    preview = role_statements(graph, role(graph, "preview-build"))
    deploy = role_statements(graph, role(graph, "deploy-build"))
    state = "arn:aws:s3:::acme-pulumi-state/.pulumi/*"
    [p_obj] = [s for s in preview if s.get("Sid") == "PulumiStateObjects"]
    [d_obj] = [s for s in deploy if s.get("Sid") == "PulumiStateObjects"]
    assert p_obj["Resource"] == d_obj["Resource"] == state
    assert as_list(p_obj["Action"]) == ["s3:GetObject"]
    assert {"s3:PutObject", "s3:DeleteObject"} <= set(as_list(d_obj["Action"]))
    [p_kms] = [s for s in preview if s.get("Sid") == "PulumiSecretsProvider"]
    assert as_list(p_kms["Action"]) == ["kms:Decrypt"] and p_kms["Resource"] == key
    github = role_statements(graph, role(graph, "github-preview"))
    assert any(s.get("Sid") == "PulumiStateObjects" for s in github)
    assert "s3:PutObject" not in {a for s in github if s.get("Sid", "").startswith("Pulumi")
                                  for a in as_list(s["Action"])}


# ---------------------------------------------------------------------------------- IAM --
def test_every_role_of_the_stack_carries_the_permissions_boundary(graph):
    roles = resources_of_type(graph, "aws:iam/role:Role")
    names = {r.inputs.get("name") for r in roles}
    assert {f"{prefix(graph)}-{k}" for k in ("pipeline", "test-build", "preview-build",
                                             "deploy-build", "github-preview")} <= names
    assert len(roles) >= 7, [r.name for r in roles]   # + the task's two roles (+ flow logs)
    arn = boundary_arn(graph)
    assert arn == f"arn:aws:iam::{graph.exports['kmsKeyArn'].split(':')[4]}:policy/" \
                  f"{prefix(graph)}-permissions-boundary"
    missing = [r.name for r in roles if r.inputs.get("permissionsBoundary") != arn]
    assert not missing, f"roles without the boundary: {missing}"
    # The boundary policy exists before any role that refers to it.
    policy_urn = the(graph, "aws:iam/policy:Policy", BOUNDARY).urn
    assert all(policy_urn in r.depends_on for r in roles), \
        [r.name for r in roles if policy_urn not in r.depends_on]


def _boundary(graph: Graph) -> dict[str, dict[str, Any]]:
    doc = json_input(the(graph, "aws:iam/policy:Policy", BOUNDARY), "policy")
    return {s["Sid"]: s for s in doc["Statement"]}


def test_the_boundary_caps_services_and_closes_the_ways_out(graph):
    arn = boundary_arn(graph)
    s = _boundary(graph)
    ceiling = s["CeilingServicesOfThisStack"]
    assert "*" not in as_list(ceiling["Action"])
    assert {a.split(":")[0] for a in as_list(ceiling["Action"])} == \
        set(boundary.BOUNDARY_SERVICES)
    no_role = s["NoRoleWithoutThisBoundary"]
    assert no_role["Effect"] == "Deny" and "iam:CreateRole" in no_role["Action"]
    assert no_role["Condition"] == {"ArnNotEquals": {"iam:PermissionsBoundary": arn}}
    edit = s["NoEditingThisBoundary"]
    assert edit["Effect"] == "Deny" and edit["Resource"] == arn
    assert "iam:CreatePolicyVersion" in edit["Action"]
    assert s["NoRemovingBoundaries"]["Effect"] == "Deny"
    assert "iam:CreateUser" in s["NoUsersGroupsOrKeys"]["Action"]
    # Every action any pipeline role is granted stays inside the ceiling.
    services = set(boundary.BOUNDARY_SERVICES)
    for key in ("pipeline", "test-build", "preview-build", "deploy-build", "github-preview"):
        outside = {a for a in allowed_actions(role_statements(graph, role(graph, key)))
                   if a.split(":")[0] not in services}
        assert not outside, f"{key}: {outside} exceed the boundary"


def test_the_deploy_role_creates_roles_only_with_the_boundary(graph):
    statements = role_statements(graph, role(graph, "deploy-build"))
    arn = boundary_arn(graph)
    granting = [s for s in statements if {"iam:CreateRole", "iam:PutRolePolicy",
                                          "iam:AttachRolePolicy"} & set(as_list(s["Action"]))]
    assert granting, "the deploy role must be able to manage the stack's roles"
    for s in granting:
        assert s["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary": arn}}, s["Sid"]
        assert s["Resource"] == \
            f"arn:aws:iam::{arn.split(':')[4]}:role/{prefix(graph)}-*"
    # No IAM action anywhere on Resource "*", and PassRole only to the stack's services.
    for s in statements:
        if any(a.startswith("iam:") for a in as_list(s["Action"])):
            assert "*" not in as_list(s["Resource"]), s.get("Sid")
    [passrole] = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"]


# Resources the deploy role manages by name: each one's ARN must fall under a pattern of the
# deploy policies (the names come from Pulumi's auto-naming of "<prefix>-..." resources).
NAMED_TYPES = ("aws:s3/bucket:Bucket", "aws:ecr/repository:Repository",
               "aws:cloudwatch/logGroup:LogGroup", "aws:sns/topic:Topic",
               "aws:secretsmanager/secret:Secret", "aws:lb/loadBalancer:LoadBalancer",
               "aws:lb/targetGroup:TargetGroup", "aws:ecs/cluster:Cluster",
               "aws:ecs/taskDefinition:TaskDefinition", "aws:iam/role:Role",
               "aws:iam/policy:Policy", "aws:codebuild/project:Project",
               "aws:codepipeline/pipeline:Pipeline", "aws:cloudwatch/metricAlarm:MetricAlarm")


def test_the_deploy_role_reaches_every_named_resource_of_the_stack(graph):
    import fnmatch
    patterns = [r for s in role_statements(graph, role(graph, "deploy-build"))
                if s["Effect"] == "Allow" and s.get("Sid") not in TAG_SCOPED
                for r in as_list(s["Resource"]) if r != "*"]
    checked = 0
    for r in resources_of_type(graph, *NAMED_TYPES):
        arn = r.outputs["arn"]
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), \
            f"{r.label}: {arn} is outside every name pattern of the deploy role"
        checked += 1
    assert checked >= 20, checked


def test_the_deploy_role_may_write_the_stacks_dns_records_and_no_others(graphs):
    import fnmatch
    records = resources_of_type(graphs["prod"], "aws:route53/record:Record")
    assert len(records) == 2, [r.name for r in records]   # alias + certificate validation
    zone = cfg(graphs["prod"], "hostedZoneId")
    [dns] = [s for s in role_statements(graphs["prod"], role(graphs["prod"], "deploy-build"))
             if "route53:ChangeResourceRecordSets" in as_list(s["Action"])]
    assert dns["Resource"] == f"arn:aws:route53:::hostedzone/{zone}"
    names = dns["Condition"]["ForAllValues:StringLike"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"]
    assert names == [cfg(graphs["prod"], "domainName"), f"*.{cfg(graphs['prod'], 'domainName')}"]
    for r in records:
        assert r.inputs["zoneId"] == zone
        normalized = r.inputs["name"].lower().rstrip(".")
        assert any(fnmatch.fnmatchcase(normalized, n) for n in names), r.inputs["name"]
    # Stacks without a hosted zone (staging's DNS is managed elsewhere) touch no zone.
    for stack in ("dev", "staging"):
        actions = allowed_actions(role_statements(graphs[stack],
                                                  role(graphs[stack], "deploy-build")))
        assert not {a for a in actions if a.startswith("route53:Change")}, stack


def test_the_deploy_role_may_pass_an_existing_connection_to_codepipeline_only(alternative,
                                                                               graphs):
    statements = role_statements(alternative, role(alternative, "deploy-build"))
    [passing] = [s for s in statements if s.get("Sid") == "PassTheExistingConnection"]
    assert passing["Action"] == "codestar-connections:PassConnection"
    assert passing["Resource"] == ALT_CONNECTION
    assert passing["Condition"] == {"StringEquals": {
        "codestar-connections:PassedToService": "codepipeline.amazonaws.com"}}
    # An AWS CodeConnections ARN (console connections since 2024) takes that service's action.
    arn = ALT_CONNECTION.replace(":codestar-connections:", ":codeconnections:")
    [codeconnections] = pipeline_iam.deploy_outside_the_stack(
        None, connection_arn=arn, hosted_zone_id=None, domain_name=None)
    assert codeconnections["Action"] == "codeconnections:PassConnection"
    assert "codeconnections:PassedToService" in codeconnections["Condition"]["StringEquals"]
    # A connection the stack creates carries the stack tag (tag-scoped statement instead).
    assert not [s for s in role_statements(graphs["dev"], role(graphs["dev"], "deploy-build"))
                if s.get("Sid") == "PassTheExistingConnection"]


TAG_SCOPED = {"CreateOnlyWithStackTag": "aws:RequestTag/stack",
              "ChangeOnlyStackTaggedResources": "aws:ResourceTag/stack",
              "KeyGrantsForAwsServices": "aws:ResourceTag/stack"}
STAR_WITHOUT_CONDITION = {  # Sid -> why "*" (each also commented in infra/pipeline_iam.py)
    "ReadStackConfiguration": "read-only metadata calls",
    "EcrLogin": "ecr:GetAuthorizationToken has no resource-level permissions",
    "GenerateApiKey": "secretsmanager:GetRandomPassword has no resource-level permissions",
    "NoResourceLevelPermissions": "ecs:DeregisterTaskDefinition, sns:Unsubscribe",
}


def test_resource_star_only_where_scoped_by_tag_or_unavoidable(graph):
    seen = set()
    for key in ("pipeline", "test-build", "preview-build", "deploy-build", "github-preview"):
        for s in role_statements(graph, role(graph, key)):
            if s["Effect"] != "Allow" or "*" not in as_list(s["Resource"]):
                continue
            sid = s.get("Sid")
            seen.add(sid)
            if sid in TAG_SCOPED:
                assert s["Condition"]["StringEquals"][TAG_SCOPED[sid]] == graph.stack
            elif sid == "TagOnCreate":
                assert as_list(s["Action"]) == ["ec2:CreateTags"]
                assert s["Condition"]["StringEquals"]["ec2:CreateAction"]
            else:
                assert sid in STAR_WITHOUT_CONDITION, f"{key}: unexplained Resource * ({sid})"
            if sid == "NoResourceLevelPermissions":
                assert set(s["Action"]) == {"ecs:DeregisterTaskDefinition", "sns:Unsubscribe"}
    assert seen == set(TAG_SCOPED) | set(STAR_WITHOUT_CONDITION) | {"TagOnCreate"}


def test_every_resource_star_in_the_policy_source_is_commented():
    source = (ROOT / "infra" / "pipeline_iam.py").read_text().splitlines()
    stars = [n for n, line in enumerate(source) if line.strip().startswith('"Resource": "*"')]
    assert len(stars) >= 6
    for n in stars:
        start = max(i for i in range(n) if source[i].strip().endswith("{"))
        block = source[start:n]
        assert any(line.strip().startswith("#") for line in block), \
            f"infra/pipeline_iam.py:{n + 1}: Resource \"*\" without a comment saying why"


# What each invoke of the program needs in IAM (None: nothing). A preview runs every invoke,
# so the read-only roles must allow them, on "*" where AWS has no resource-level permission.
INVOKE_ACTIONS = {
    "aws:index/getCallerIdentity:getCallerIdentity": None,   # sts: needs no permission
    "aws:index/getPartition:getPartition": None,             # computed by the provider
    "aws:index/getAvailabilityZones:getAvailabilityZones": "ec2:DescribeAvailabilityZones",
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": "ecr:GetAuthorizationToken",
    "aws:ecr/getImages:getImages": "ecr:ListImages",
    "aws:secretsmanager/getRandomPassword:getRandomPassword": "secretsmanager:GetRandomPassword",
}
# Of those, the ones outside READ_ACTIONS (their statements are not metadata reads).
INVOKE_ONLY = {"ecr:GetAuthorizationToken", "secretsmanager:GetRandomPassword"}


def test_every_role_that_runs_the_program_may_make_its_invokes(graph):
    tokens = {i.token for i in graph.invokes}
    assert tokens, "no invokes recorded"
    unmapped = tokens - set(INVOKE_ACTIONS)
    assert not unmapped, f"add the IAM action of {unmapped} to INVOKE_ACTIONS"
    needed = {INVOKE_ACTIONS[t] for t in tokens} - {None}
    assert "secretsmanager:GetRandomPassword" in needed or \
        cfg(graph, "apiKeyEnabled") == "false"
    for key in ("preview-build", "github-preview", "deploy-build"):
        on_star = {a for s in role_statements(graph, role(graph, key))
                   if s["Effect"] == "Allow" and "*" in as_list(s["Resource"])
                   and not s.get("Condition") for a in as_list(s["Action"])}
        assert needed <= on_star, f"{key} may not make the invokes {needed - on_star}"


def test_test_and_preview_roles_are_read_only_plus_logs_and_artifacts(graph):
    read = set(pipeline_iam.READ_ACTIONS) | set(pipeline_iam.READ_IAM_ACTIONS) | INVOKE_ONLY
    basics = {"logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject",
              "s3:GetObjectVersion", "kms:Decrypt", "kms:GenerateDataKey"}
    reports = {"codebuild:CreateReportGroup", "codebuild:CreateReport",
               "codebuild:UpdateReport", "codebuild:BatchPutTestCases"}
    test = allowed_actions(role_statements(graph, role(graph, "test-build")))
    assert test == basics | reports, test ^ (basics | reports)
    preview = role_statements(graph, role(graph, "preview-build"))
    assert allowed_actions(preview) <= read | basics | {"s3:PutObject",
                                                         "secretsmanager:GetSecretValue"}
    artifacts = next(s for s in preview if s.get("Sid") == "PipelineArtifacts")
    [put_target] = {s["Resource"] for s in preview if "s3:PutObject" in as_list(s["Action"])}
    assert put_target == artifacts["Resource"], "preview writes only its artifact"
    bucket = the(graph, "aws:s3/bucket:Bucket").outputs["arn"]
    assert artifacts["Resource"] == f"{bucket}/*"
    [token] = [s for s in preview if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert token["Resource"].startswith("arn:aws:secretsmanager:")
    assert token["Resource"].endswith(f":secret:{cfg(graph, 'pulumiAccessTokenSecret')}-??????")


def test_only_this_repositorys_pull_requests_can_assume_the_preview_role(graph):
    r = role(graph, "github-preview")
    [s] = json_input(r, "assumeRolePolicy")["Statement"]
    provider = the(graph, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert s["Effect"] == "Allow" and s["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert s["Principal"] == {"Federated": provider.outputs["arn"]}
    assert provider.outputs["arn"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    assert s["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub":
            f"repo:{cfg(graph, 'githubRepository')}:pull_request"}}
    assert graph.exports["githubPreviewRoleArn"] == r.outputs["arn"]
    assert r.outputs["arn"].endswith(f":role/{prefix(graph)}-github-preview")
    # Read-only: the shared read policy, nothing that writes.
    actions = allowed_actions(role_statements(graph, r))
    assert actions <= set(pipeline_iam.READ_ACTIONS) | set(pipeline_iam.READ_IAM_ACTIONS) | \
        INVOKE_ONLY


def test_an_existing_oidc_provider_is_trusted_instead_of_creating_one(alternative):
    graph, arn = alternative, ALT_OIDC
    assert not inside(graph, PIPELINE, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    [s] = json_input(role(graph, "github-preview"), "assumeRolePolicy")["Statement"]
    assert s["Principal"] == {"Federated": arn}


def test_service_roles_trust_only_their_service_for_this_pipeline(graph):
    region, account = graph.config["aws:region"], boundary_arn(graph).split(":")[4]
    expected = {"pipeline": ("codepipeline.amazonaws.com",
                             f"arn:aws:codepipeline:{region}:{account}:{prefix(graph)}")}
    for kind in ("test", "preview", "deploy"):
        expected[f"{kind}-build"] = ("codebuild.amazonaws.com", f"arn:aws:codebuild:{region}:"
                                     f"{account}:project/{prefix(graph)}-{kind}")
    for key, (service, source) in expected.items():
        [s] = json_input(role(graph, key), "assumeRolePolicy")["Statement"]
        assert s["Principal"] == {"Service": service}
        assert s["Condition"]["StringEquals"]["aws:SourceAccount"] == account
        assert s["Condition"]["ArnLike"]["aws:SourceArn"] == source


# Parliament findings accepted for the pipeline's policies, each with its reason. Key:
# (policy name without the stack prefix, issue) -> actions (lower case) the finding may name.
ALLOWED_FINDINGS: dict[tuple[str, str], tuple[set[str], str]] = {
    ("read-stack", "RESOURCE_STAR"): (
        {a.lower() for a in pipeline_iam.READ_ACTIONS},
        "read-only metadata calls; many have no resource-level permissions and a preview "
        "reads resources whose ARNs do not exist yet"),
    ("read-stack", "CREDENTIALS_EXPOSURE"): (
        {"ecr:getauthorizationtoken"},
        "the program logs in to ECR (image push) even in a preview; AWS requires Resource *"),
    ("deploy-tagged", "RESOURCE_STAR"): (
        None,  # every action of the tag-conditioned statements (checked by Sid above)
        "created only with the stack tag in the request, changed only while it carries it"),
    ("deploy-tagged", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"kms:createkey", "kms:putkeypolicy", "kms:creategrant", "kms:retiregrant"},
        "the stack's own KMS key and its key policy are part of the stack (tag-scoped); "
        "grants only for AWS services (ECR, Secrets Manager) on that key"),
    ("deploy-tagged", "RESOURCE_MISMATCH"): (
        {"kms:createalias", "kms:deletealias", "kms:updatealias"},
        "alias actions are authorised on the alias (by name, here) and on the key "
        "(tag-scoped statement); parliament expects both in one statement"),
    ("deploy-named", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"s3:putbucketpolicy", "s3:deletebucketpolicy", "s3:putbucketpublicaccessblock",
         "sns:createtopic", "sns:settopicattributes", "secretsmanager:putresourcepolicy",
         "secretsmanager:deleteresourcepolicy", "ecr:setrepositorypolicy",
         "wafv2:createwebacl", "wafv2:updatewebacl", "wafv2:deletewebacl"},
        "resource policies of the stack's own bucket, topic, secret, repository and web ACL, "
        "all by the stack's name prefix"),
    ("deploy-named", "RESOURCE_MISMATCH"): (
        {"elasticloadbalancing:addlistenercertificates", "elasticloadbalancing:createrule",
         "elasticloadbalancing:deletelistener", "elasticloadbalancing:deleterule",
         "elasticloadbalancing:modifylistener", "elasticloadbalancing:modifylistenerattributes",
         "elasticloadbalancing:modifyrule", "elasticloadbalancing:removelistenercertificates",
         "elasticloadbalancing:setwebacl"},
        "parliament's ELBv2 data lists only the network-LB listener form (listener/net/...); "
        "this stack's ALB listener and rule ARNs (listener/app/...) are the ones AWS uses"),
    ("deploy-iam", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        None,  # the statements are checked one by one in the tests above
        "the deploy manages the stack's roles, policies and OIDC provider by name, and may "
        "create or change a role only with the permissions boundary attached"),
    ("deploy-iam", "PRIVILEGE_ESCALATION"): (
        {"iam:createpolicyversion"},
        "on <prefix>-* policies only; the boundary denies editing itself and caps every "
        "role those policies can be attached to"),
}
# The boundary is a ceiling, not a grant: its service wildcards are the point. It is
# checked structurally (test_the_boundary_caps_services_and_closes_the_ways_out).
NOT_LINTED = ("permissions-boundary",)


def _finding_actions(detail: Any) -> set[str]:
    """Parliament puts the actions in the detail (a list) or in the location (a dict)."""
    if isinstance(detail, dict):
        return {a.lower() for a in detail.get("actions", [])}
    if isinstance(detail, list):
        return {(d["action"] if isinstance(d, dict) else d).lower() for d in detail}
    return set()


def _pipeline_policies(graph: Graph):
    docs = [d for d in policy_documents(graph, "identity")
            if any(a.type.startswith("ml-app:cicd:") for a in graph.ancestors(d.resource))]
    assert len(docs) >= 9, [d.resource.name for d in docs]
    return docs


_LINT_CACHE: dict[str, list[tuple[str, Any]]] = {}


def _lint(text: str) -> list[tuple[str, Any]]:
    if text not in _LINT_CACHE:
        _LINT_CACHE[text] = [
            (f.issue, f.detail if f.detail else {"actions": (f.location or {}).get("actions", [])})
            for f in parliament.analyze_policy_string(
                text, include_community_auditors=True).findings]
    return _LINT_CACHE[text]


def _unexpected(name: str, text: str) -> list[tuple[str, Any]]:
    problems = []
    for issue, detail in _lint(text):
        allowed = ALLOWED_FINDINGS.get((name, issue))
        if allowed is None:
            problems.append((issue, detail))
            continue
        actions = _finding_actions(detail)
        if allowed[0] is not None and (not actions or not actions <= allowed[0]):
            problems.append((issue, sorted(actions - allowed[0]) or detail))
    return problems


def test_every_pipeline_policy_passes_parliament(graph):
    problems = {}
    for doc in _pipeline_policies(graph):
        name = doc.resource.name.removeprefix(prefix(graph) + "-")
        if name in NOT_LINTED:
            continue
        found = _unexpected(name, doc.text)
        if found:
            problems[doc.resource.name] = found
    assert not problems, json.dumps(problems, indent=1, default=str)


def test_pipeline_allow_list_has_no_stale_entries(graphs):
    used = set()
    for graph in graphs.values():
        for doc in _pipeline_policies(graph):
            name = doc.resource.name.removeprefix(prefix(graph) + "-")
            if name not in NOT_LINTED:
                used |= {(name, issue) for issue, _ in _lint(doc.text)} & set(ALLOWED_FINDINGS)
    assert used == set(ALLOWED_FINDINGS), set(ALLOWED_FINDINGS) - used


def test_the_pipeline_lint_can_fail(graphs):
    graph = graphs["dev"]
    [doc] = [d for d in _pipeline_policies(graph) if d.resource.name.endswith("-test-build")]
    widened = json.loads(doc.text)
    widened["Statement"].append({"Effect": "Allow", "Action": ["iam:PassRole", "s3:PutObject"],
                                 "Resource": "*"})
    assert _unexpected("test-build", json.dumps(widened))


def test_policies_fit_aws_size_limits(graph):
    """Managed policies: 6,144 characters; inline policies of a role: 10,240 (whitespace
    not counted). Over the limit, `pulumi up` fails on the first deploy."""
    for doc in _pipeline_policies(graph):
        size = len("".join(doc.text.split()))
        limit = 6144 if doc.resource.type == "aws:iam/policy:Policy" else 10240
        assert size <= limit, f"{doc.resource.name}: {size} > {limit}"


# ---------------------------------------------------------------- bucket, logs, alerts --
PROTECTIONS = ("aws:s3/bucketVersioning:BucketVersioning",
               "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
               "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
               "aws:s3/bucketPolicy:BucketPolicy",
               "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
               "aws:s3/bucketOwnershipControls:BucketOwnershipControls")


def _attached(graph: Graph, bucket: Resource) -> dict[str, Resource]:
    found = {}
    for r in resources_of_type(graph, *PROTECTIONS):
        if r.inputs.get("bucket") == bucket.outputs["id"]:
            assert r.type not in found, f"two {r.type} on {bucket.name}"
            found[r.type] = r
    return found


def test_the_artifact_bucket_has_the_model_buckets_protections(graph):
    artifacts = the(graph, "aws:s3/bucket:Bucket")
    [models] = inside(graph, "ml-app:infra:ModelRegistry", "aws:s3/bucket:Bucket")
    ours, theirs = _attached(graph, artifacts), _attached(graph, models)
    assert set(ours) == set(theirs) == set(PROTECTIONS)
    assert ours[PROTECTIONS[0]].inputs["versioningConfiguration"]["status"] == "Enabled"
    [rule] = ours[PROTECTIONS[1]].inputs["rules"]
    sse = rule["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": stack_key_arn(graph)}
    pab = ours[PROTECTIONS[2]].inputs
    assert all(pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                "restrictPublicBuckets"))
    # Same bucket policy as the model bucket's (TLS only, TLS 1.2+), for its own ARN.
    ours_policy = json_input(ours[PROTECTIONS[3]], "policy")
    theirs_policy = json_input(theirs[PROTECTIONS[3]], "policy")
    swap = json.dumps(theirs_policy).replace(models.outputs["arn"], artifacts.outputs["arn"])
    assert ours_policy == json.loads(swap)
    [expiring] = [r for r in ours[PROTECTIONS[4]].inputs["rules"] if r.get("expiration")]
    assert expiring["status"] == "Enabled" and expiring["expiration"]["days"] <= 90
    assert expiring["noncurrentVersionExpiration"]["noncurrentDays"] <= 30
    rules = {r["id"]: r for r in ours[PROTECTIONS[4]].inputs["rules"]}
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"]
    assert artifacts.protect is (cfg(graph, "protectData") == "true")
    store = pipeline_of(graph).inputs["artifactStores"][0]
    assert store["location"] == artifacts.outputs["bucket"]
    assert store["encryptionKey"] == {"id": stack_key_arn(graph), "type": "KMS"}


def test_failures_successes_and_approvals_are_announced_on_the_alarm_topic(graph):
    rule = the(graph, "aws:codestarnotifications/notificationRule:NotificationRule")
    assert rule.inputs["resource"] == pipeline_of(graph).outputs["arn"]
    assert set(rule.inputs["eventTypeIds"]) == {
        "codepipeline-pipeline-pipeline-execution-failed",
        "codepipeline-pipeline-pipeline-execution-succeeded",
        "codepipeline-pipeline-manual-approval-needed"}
    assert rule.inputs["targets"] == [{"address": alarm_topic_arn(graph), "type": "SNS"}]
    # The topic's policy and the (encrypting) key's policy let the service publish.
    [topic_policy] = [d for d in policy_documents(graph, "resource")
                      if d.resource.type == "aws:sns/topicPolicy:TopicPolicy"]
    assert any(s["Effect"] == "Allow" and "sns:Publish" in as_list(s["Action"])
               and "codestar-notifications.amazonaws.com" in as_list(
                   s["Principal"].get("Service")) for s in topic_policy.statements)
    [key_policy] = policy_documents(graph, "key")
    assert any(s["Effect"] == "Allow" and s["Principal"] == {
        "Service": "codestar-notifications.amazonaws.com"}
        and "kms:GenerateDataKey*" in as_list(s["Action"]) for s in key_policy.statements)
    # ... and the pipeline itself may publish approval requests to it.
    statements = role_statements(graph, role(graph, "pipeline"))
    [publish] = [s for s in statements if s.get("Sid") == "ApprovalNotifications"]
    assert publish["Resource"] == alarm_topic_arn(graph)


# ------------------------------------------------------------------------------ config --
def _raw(stack: str, **overrides) -> dict[str, Any]:
    import yaml
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("ml-app:")}
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


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
    with pytest.raises(stack_config.ConfigError) as err:
        stack_config.parse(_raw("dev", **overrides), stack="dev", region="eu-west-1")
    [line] = [p for p in err.value.problems if p.startswith(f"ml-app:{key} = ")]
    assert value in line and rule in line and line.endswith("edit Pulumi.dev.yaml"), line


def test_prod_cannot_skip_the_approval():
    with pytest.raises(stack_config.ConfigError) as err:
        stack_config.parse(_raw("prod", requireApproval=False), stack="prod",
                           region="eu-west-1")
    assert any(p.startswith("ml-app:requireApproval = False: a manual approval")
               and "edit Pulumi.prod.yaml" in p for p in err.value.problems), err.value.problems


def test_a_missing_repository_stops_the_program_before_any_resource():
    graph = run("staging", {"githubRepository": None})
    assert isinstance(graph.error, stack_config.ConfigError)
    assert "ml-app:githubRepository = '': is required" in str(graph.error)
    assert "edit Pulumi.staging.yaml" in str(graph.error)
    assert not [r for r in graph.resources if r.custom and not r.type.startswith("pulumi:")]


def test_the_stack_files_name_the_repository_and_the_branches():
    parsed = {s: stack_config.parse(_raw(s), stack=s, region="eu-west-1") for s in STACKS}
    assert {c.github_repository for c in parsed.values()} == {"acme-ml/ml-app"}
    assert parsed["dev"].pipeline_branch == "develop"
    assert parsed["staging"].pipeline_branch == parsed["prod"].pipeline_branch == "main"
    assert parsed["prod"].require_approval is True
    assert Path(ROOT / "Pulumi.yaml").read_text().count("githubRepository:") == 1


def test_projects_and_pipeline_wait_for_their_roles_policies(graph):
    """CodeBuild and CodePipeline validate their role when created; the first run must not
    race the role's policies, and a destroy must remove the user before the policies."""
    users = [(r, r.inputs["serviceRole"]) for r in
             inside(graph, PIPELINE, "aws:codebuild/project:Project")]
    users += [(r, r.inputs["roleArn"]) for r in
              inside(graph, PIPELINE, "aws:codepipeline/pipeline:Pipeline")]
    assert len(users) == 4
    for resource, role_arn in users:
        [role_res] = [r for r in inside(graph, PIPELINE, "aws:iam/role:Role")
                      if r.outputs["arn"] == role_arn]
        attached = [p for p in inside(graph, PIPELINE, "aws:iam/rolePolicy:RolePolicy",
                                      "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                    if p.inputs["role"] in (role_res.outputs["id"], role_res.inputs["name"])]
        assert attached, f"{role_res.name} has no policies"
        missing = [p.name for p in attached if p.urn not in resource.depends_on]
        assert not missing, f"{resource.name} does not wait for {missing}"
