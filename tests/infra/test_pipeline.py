"""The delivery pipeline (infra/pipeline.py) over each stack's recorded resource graph:
stages and their order, approval, rollback, the CodeBuild projects of the BUILDS table
and their buildspecs, the CodePipeline declaration against botocore's CreatePipeline
input shape, notifications. Its IAM is tested in test_pipeline_iam.py, the boundary in
test_boundary.py, the artifact bucket in test_storage.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import pipeline
from tests.infra.harness import (PIPELINE, ROOT, VARIANT, Graph, Resource, api_problems,
                                 as_list, config_value, one, policy_documents, prefix,
                                 resources_of_type, role_named, role_statements,
                                 stack_key_arn, within)


EXPECTED_STAGES = ["Source", "Test", "Preview", "Approval", "Deploy"]


def pipeline_of(graph: Graph) -> Resource:
    return one(graph, "aws:codepipeline/pipeline:Pipeline", PIPELINE)


def projects(graph: Graph) -> dict[str, Resource]:
    found = {r.inputs["name"].removeprefix(prefix(graph) + "-"): r
             for r in within(graph, PIPELINE, "aws:codebuild/project:Project")}
    assert set(found) == {build.kind for build in pipeline.BUILDS}, sorted(found)
    return found


# --------------------------------------------------------------------------- the stages --
def test_each_stack_has_one_v2_pipeline_with_the_stages_in_order(any_graph):
    p = pipeline_of(any_graph)
    assert p.inputs["pipelineType"] == "V2"
    assert p.inputs["name"] == prefix(any_graph)
    names = [s["name"] for s in p.inputs["stages"]]
    approval = config_value(any_graph, "requireApproval") == "true"
    assert names == [s for s in EXPECTED_STAGES if approval or s != "Approval"]
    assert any_graph.exports["pipelineName"] == prefix(any_graph)


def test_only_prod_requires_an_approval_and_it_notifies_the_alarm_topic(graphs):
    assert config_value(graphs["prod"], "requireApproval") == "true"
    for stack, graph in graphs.items():
        stages = {s["name"]: s for s in pipeline_of(graph).inputs["stages"]}
        assert ("Approval" in stages) == (stack == "prod"), stack
    [approve] = {s["name"]: s for s in pipeline_of(graphs["prod"]).inputs["stages"]}[
        "Approval"]["actions"]
    assert (approve["category"], approve["owner"], approve["provider"]) == \
        ("Approval", "AWS", "Manual")
    assert approve["configuration"]["NotificationArn"] == graphs["prod"].exports["alarmTopicArn"]
    assert 60 <= approve["timeoutInMinutes"] <= 7 * 24 * 60


def test_approval_is_configurable_outside_prod(variant):
    graph = variant
    assert [s["name"] for s in pipeline_of(graph).inputs["stages"]] == EXPECTED_STAGES


@pytest.mark.parametrize("stack", ["dev", "staging"])   # prod's source: test_prods_source_...
def test_source_is_the_configured_branch_through_the_connection(graphs, stack):
    graph = graphs[stack]
    assert not config_value(graph, "promotedFrom")
    p = pipeline_of(graph)
    [source] = p.inputs["stages"][0]["actions"]
    assert source["provider"] == "CodeStarSourceConnection" and source["owner"] == "AWS"
    conf = source["configuration"]
    assert conf["FullRepositoryId"] == config_value(graph, "githubRepository")
    assert conf["BranchName"] == config_value(graph, "pipelineBranch")
    connection = one(graph, "aws:codestarconnections/connection:Connection", PIPELINE)
    assert connection.inputs["providerType"] == "GitHub"
    assert conf["ConnectionArn"] == connection.outputs["arn"] == \
        graph.exports["codestarConnectionArn"]
    # V2 trigger: pushes on that branch only (a trigger disables default change detection).
    [trigger] = p.inputs["triggers"]
    assert trigger["providerType"] == "CodeStarSourceConnection"
    git = trigger["gitConfiguration"]
    assert git["sourceActionName"] == source["name"]
    assert [push["branches"]["includes"] for push in git["pushes"]] == \
        [[config_value(graph, "pipelineBranch")]]


def test_an_existing_connection_arn_is_used_instead_of_creating_one(variant):
    graph, arn = variant, VARIANT["codestarConnectionArn"]
    assert not within(graph, PIPELINE, "aws:codestarconnections/connection:Connection")
    [source] = pipeline_of(graph).inputs["stages"][0]["actions"]
    assert source["configuration"]["ConnectionArn"] == arn
    pipeline_role = role_statements(graph, role_named(graph, "pipeline"))
    [use] = [s for s in pipeline_role if s.get("Sid") == "GithubSource"]
    assert use["Resource"] == arn and use["Action"] == "codestar-connections:UseConnection"


def test_deploy_is_last_and_rolls_back_on_failure(any_graph):
    stages = pipeline_of(any_graph).inputs["stages"]
    deploy = stages[-1]
    assert deploy["name"] == "Deploy"
    assert deploy["onFailure"]["result"] == "ROLLBACK"
    # No other stage rolls back or is skipped on failure: a failed test stops the release.
    assert all(not s.get("onFailure") for s in stages[:-1])
    [action] = deploy["actions"]
    assert action["provider"] == "CodeBuild"
    assert action["configuration"]["ProjectName"] == f"{prefix(any_graph)}-deploy"


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


def _optional(**keys: Any) -> dict[str, Any]:
    return {k: v for k, v in keys.items() if v}


def _create_pipeline_params(p: Resource) -> dict[str, Any]:
    i = p.inputs
    stores = [{"type": s["type"], "location": s["location"],
               "encryptionKey": s["encryptionKey"]} for s in i["artifactStores"]]
    return {"pipeline": {
        "name": i["name"], "roleArn": i["roleArn"], "artifactStore": stores[0],
        "stages": _stage_declarations(i["stages"]), "pipelineType": i["pipelineType"],
        "executionMode": i["executionMode"],
        **_optional(triggers=_triggers(i.get("triggers") or []))}}


def _validate(params: dict[str, Any]) -> list[str]:
    return api_problems("codepipeline", "CreatePipeline", params)


def test_pipeline_validates_against_botocore_create_pipeline(any_graph):
    params = _create_pipeline_params(pipeline_of(any_graph))
    assert _validate(params) == []


def test_the_create_pipeline_validation_can_fail(graphs):
    params = _create_pipeline_params(pipeline_of(graphs["prod"]))
    assert "triggers" not in params["pipeline"]     # prod starts from the promotion rule
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
        assert group.inputs["retentionInDays"] == int(config_value(graph, "logRetentionDays"))
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
            assert token["value"] == config_value(graph, "pulumiAccessTokenSecret")
    assert projects(graph)["deploy"].inputs["concurrentBuildLimit"] == 1


def test_the_s3_backend_reaches_the_builds_as_its_url(variant):
    graph = variant
    for kind in ("preview", "deploy"):
        variables = {v["name"]: v for v in
                     projects(graph)[kind].inputs["environment"]["environmentVariables"]}
        assert "PULUMI_ACCESS_TOKEN" not in variables
        assert variables["PULUMI_BACKEND_URL"]["value"] == \
            "s3://acme-pulumi-state?region=eu-west-1"


def test_failures_successes_and_approvals_are_announced_on_the_alarm_topic(graph):
    rule = one(graph, "aws:codestarnotifications/notificationRule:NotificationRule", PIPELINE)
    assert rule.inputs["resource"] == pipeline_of(graph).outputs["arn"]
    assert set(rule.inputs["eventTypeIds"]) == {
        "codepipeline-pipeline-pipeline-execution-failed",
        "codepipeline-pipeline-pipeline-execution-succeeded",
        "codepipeline-pipeline-manual-approval-needed"}
    assert rule.inputs["targets"] == [{"address": graph.exports["alarmTopicArn"], "type": "SNS"}]
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
    statements = role_statements(graph, role_named(graph, "pipeline"))
    [publish] = [s for s in statements if s.get("Sid") == "ApprovalNotifications"]
    assert publish["Resource"] == graph.exports["alarmTopicArn"]


def test_projects_and_pipeline_wait_for_their_roles_policies(any_graph):
    """CodeBuild and CodePipeline validate their role when created; the first run must not
    race the role's policies, and a destroy must remove the user before the policies."""
    users = [(r, r.inputs["serviceRole"]) for r in
             within(any_graph, PIPELINE, "aws:codebuild/project:Project")]
    users += [(r, r.inputs["roleArn"]) for r in
              within(any_graph, PIPELINE, "aws:codepipeline/pipeline:Pipeline")]
    assert len(users) == 4
    for resource, role_arn in users:
        [role_res] = [r for r in within(any_graph, PIPELINE, "aws:iam/role:Role")
                      if r.outputs["arn"] == role_arn]
        attached = [p for p in within(any_graph, PIPELINE, "aws:iam/rolePolicy:RolePolicy",
                                      "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                    if p.inputs["role"] in (role_res.outputs["id"], role_res.inputs["name"])]
        assert attached, f"{role_res.name} has no policies"
        missing = [p.name for p in attached if p.urn not in resource.depends_on]
        assert not missing, f"{resource.name} does not wait for {missing}"


# ---------------------------------------------------------------- staged promotion --
def test_prods_source_is_what_staging_verified_not_a_branch(graphs):
    """Prod's pipeline takes the object staging's Deploy stage publishes after its smoke
    test, from a versioned bucket only staging's deploy role may write (test_escalation.py
    evaluates who can); an EventBridge rule, not a branch, starts it."""
    prod, staging = graphs["prod"], graphs["staging"]
    assert config_value(prod, "promotedFrom") == "staging"
    assert config_value(staging, "promotesTo") == "prod"
    [source] = pipeline_of(prod).inputs["stages"][0]["actions"]
    assert (source["category"], source["owner"], source["provider"]) == ("Source", "AWS", "S3")
    bucket = next(b for b in within(prod, PIPELINE, "aws:s3/bucket:Bucket")
                  if "-promotion" in b.name)
    account = prod.exports["kmsKeyArn"].split(":")[4]
    assert bucket.outputs["bucket"] == f"ml-app-prod-promotion-{account}"
    assert source["configuration"] == {"S3Bucket": bucket.outputs["bucket"],
                                       "S3ObjectKey": "source.zip",
                                       "PollForSourceChanges": "false"}
    assert not pipeline_of(prod).inputs.get("triggers")
    assert not within(prod, PIPELINE, "aws:codestarconnections/connection:Connection")
    assert "codestarConnectionArn" not in prod.exports
    assert prod.exports["promotionBucket"] == bucket.outputs["bucket"]
    versioning = [r for r in resources_of_type(prod, "aws:s3/bucketVersioning:BucketVersioning")
                  if r.inputs["bucket"] == bucket.outputs["id"]]
    assert versioning[0].inputs["versioningConfiguration"]["status"] == "Enabled"
    # S3 -> EventBridge -> this pipeline, through a role that may start it and nothing else.
    [notification] = [n for n in resources_of_type(prod, "aws:s3/bucketNotification:"
                                                         "BucketNotification")
                      if n.inputs["bucket"] == bucket.outputs["id"]]
    assert notification.inputs["eventbridge"] is True
    rule = one(prod, "aws:cloudwatch/eventRule:EventRule", PIPELINE)
    assert json.loads(rule.inputs["eventPattern"]) == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket.outputs["bucket"]]},
                   "object": {"key": ["source.zip"]}}}
    target = one(prod, "aws:cloudwatch/eventTarget:EventTarget", PIPELINE)
    assert target.inputs["arn"] == pipeline_of(prod).outputs["arn"]
    trigger = role_named(prod, "promotion-trigger")
    assert target.inputs["roleArn"] == trigger.outputs["arn"]
    [start] = role_statements(prod, trigger)
    assert start["Action"] == "codepipeline:StartPipelineExecution"
    assert start["Resource"] == pipeline_of(prod).outputs["arn"]
    # Staging publishes there after its smoke test (ci/buildspecs/deploy.yml, make promote).
    deploy = {v["name"]: v for v in projects(staging)["deploy"].inputs["environment"][
        "environmentVariables"]}
    assert deploy["PROMOTE_TO"]["value"] == f"s3://{bucket.outputs['bucket']}/source.zip"
    assert "PROMOTE_TO" not in {v["name"] for v in projects(prod)["deploy"].inputs[
        "environment"]["environmentVariables"]}


def test_prod_keeps_its_approval_and_the_deploy_checks_who_gave_it(graphs, variant):
    for graph in (graphs["prod"], variant):
        stages = {s["name"]: s for s in pipeline_of(graph).inputs["stages"]}
        assert "Approval" in stages
        [deploy] = stages["Deploy"]["actions"]
        assert json.loads(deploy["configuration"]["EnvironmentVariables"]) == [{
            "name": "PIPELINE_EXECUTION_ID", "type": "PLAINTEXT",
            "value": "#{codepipeline.PipelineExecutionId}"}]
        variables = {v["name"]: v["value"] for v in projects(graph)["deploy"].inputs[
            "environment"]["environmentVariables"]}
        assert json.loads(variables["APPROVERS"]) == json.loads(
            config_value(graph, "approvers"))
        # The approvers' own policy: this pipeline's approval action, its reads, nothing else.
        [approve] = [p for p in within(graph, PIPELINE, "aws:iam/policy:Policy")
                     if p.inputs["name"] == f"{prefix(graph)}-approve"]
        statements = {s["Sid"]: s for s in json.loads(approve.inputs["policy"])["Statement"]}
        assert statements["ApproveThisPipeline"]["Resource"] == \
            f"{pipeline_of(graph).outputs['arn']}/Approval/Approve"
    # Without an approval stage there is no one to check and no approvers' policy.
    for stack in ("dev", "staging"):
        variables = {v["name"] for v in projects(graphs[stack])["deploy"].inputs[
            "environment"]["environmentVariables"]}
        assert "APPROVERS" not in variables
        assert not [p for p in within(graphs[stack], PIPELINE, "aws:iam/policy:Policy")
                    if p.inputs["name"].endswith("-approve")]
