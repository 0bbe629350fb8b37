"""The permissions boundary (infra/boundary.py): on every role of the stack, built before
them; its ceiling is the stack, its Deny statements are the invariants, and it does not cut
what the pipeline's roles are granted (the escalation walk is test_escalation.py)."""

from __future__ import annotations

from typing import Any

import pytest

from infra import boundary
from tests.infra.harness import (BOUNDARY, Graph, as_list, boundary_arn, json_input, one,
                                 prefix, principals, resources_of_type, role_named,
                                 role_statements, target_of)
from tests.infra.iam_eval import Request, effects

PIPELINE_ROLES = ("pipeline", "test-build", "preview-build", "deploy-build", "github-preview")


def test_every_role_of_the_stack_carries_the_permissions_boundary(any_graph):
    roles = resources_of_type(any_graph, "aws:iam/role:Role")
    names = {r.inputs.get("name") for r in roles}
    assert {f"{prefix(any_graph)}-{k}" for k in PIPELINE_ROLES} <= names
    # + the service's: ECS's execution and task roles (and the flow logs'), or SageMaker's
    # or Lambda's execution role
    assert len(roles) >= len(PIPELINE_ROLES) + 1, [r.name for r in roles]
    arn = boundary_arn(any_graph)
    assert arn == f"arn:aws:iam::{any_graph.exports['kmsKeyArn'].split(':')[4]}:policy/" \
                  f"{prefix(any_graph)}-permissions-boundary"
    missing = [r.name for r in roles if r.inputs.get("permissionsBoundary") != arn]
    assert not missing, f"roles without the boundary: {missing}"
    # The boundary policy exists before any role that refers to it.
    policy_urn = one(any_graph, "aws:iam/policy:Policy", BOUNDARY).urn
    assert all(policy_urn in r.depends_on for r in roles), \
        [r.name for r in roles if policy_urn not in r.depends_on]


def test_service_roles_live_under_their_services_path_pipeline_roles_do_not(any_graph):
    for role in resources_of_type(any_graph, "aws:iam/role:Role"):
        path = role.inputs.get("path") or "/"
        if role.inputs.get("name", "").startswith(f"{prefix(any_graph)}-"):
            assert path == "/", role.name                     # a pipeline role
        else:
            kinds = [k for k in boundary.SERVICE_ROLES
                     if path == f"/ml-app/{any_graph.stack}/service/{k}/"]
            assert kinds, f"{role.name}: path {path} is not a service role kind's"
            [s] = json_input(role, "assumeRolePolicy")["Statement"]
            assert s["Principal"] == {"Service": boundary.SERVICE_ROLES[kinds[0]]}, role.name


def _boundary(graph: Graph) -> dict[str, dict[str, Any]]:
    doc = json_input(one(graph, "aws:iam/policy:Policy", BOUNDARY), "policy")
    return {s["Sid"]: s for s in doc["Statement"]}


def test_the_invariants_are_deny_statements(any_graph):
    s = _boundary(any_graph)
    arn = boundary_arn(any_graph)
    denies = {sid for sid, st in s.items() if st["Effect"] == "Deny"}
    assert {"NoRoleWithoutThisBoundary", "NoRemovingBoundaries", "NoIamOutsideServiceRoles",
            "AttachOnlyServicePolicies", "NoRoleApproves", "NoStartWithOtherRevisions",
            "NoChangingThePipeline", "NoDeletingAuditLogs", "NoChangingPipelineBuckets"} \
        <= denies
    assert s["NoRoleWithoutThisBoundary"]["Condition"] == {
        "ArnNotEquals": {"iam:PermissionsBoundary": arn}}
    # IAM changes: only the stack's service roles and service policies (and AWS's
    # service-linked roles) are outside the Deny.
    assert sorted(s["NoIamOutsideServiceRoles"]["NotResource"]) == sorted([
        arn.replace(f"policy/{prefix(any_graph)}-permissions-boundary",
                    f"role/ml-app/{any_graph.stack}/service/*"),
        arn.replace(f"policy/{prefix(any_graph)}-permissions-boundary",
                    f"policy/ml-app/{any_graph.stack}/service/*"),
        arn.replace(f"policy/{prefix(any_graph)}-permissions-boundary",
                    "role/aws-service-role/*")])
    assert set(boundary.IAM_WRITES) == set(as_list(s["NoIamOutsideServiceRoles"]["Action"]))


def test_the_ceiling_is_the_stack(any_graph):
    """No service-wide grant on "*" for data: S3, Secrets Manager, KMS and the named
    services reach only the stack's names, its tags, or what its configuration names."""
    s = _boundary(any_graph)
    for sid, st in s.items():
        if st["Effect"] != "Allow" or "*" not in as_list(st["Resource"]):
            continue
        actions = as_list(st["Action"])
        if st.get("Condition"):
            assert sid in ("MaxCreateTagged", "MaxTagged", "MaxTagOnCreate",
                           "MaxInstanceMetrics"), sid
            continue
        assert sid == "MaxAnyResource", sid
        for action in actions:
            service, verb = action.split(":")
            assert verb.startswith(("Describe", "List", "Get")) or action in (
                "ecr:GetAuthorizationToken", "ecs:DeregisterTaskDefinition",
                "secretsmanager:GetRandomPassword", "sns:Unsubscribe", "logs:*LogDeliver*"), \
                action
            assert not action.startswith(("s3:", "secretsmanager:GetSecret", "kms:Decrypt")), \
                action
    tagged = s["MaxTagged"]["Condition"]["StringEquals"]
    assert tagged == {"aws:ResourceTag/project": "ml-app",
                      "aws:ResourceTag/stack": any_graph.stack}
    assert s["MaxCreateTagged"]["Condition"]["StringEquals"] == {
        "aws:RequestTag/project": "ml-app", "aws:RequestTag/stack": any_graph.stack}


def test_the_ceiling_holds_the_tracking_alarms_of_its_own_scalable_target_only(any_graph):
    """Target tracking's alarms (TargetTracking-<resource id>-AlarmHigh-<uuid>, -AlarmLow-)
    are named by AWS, outside the stack's name prefix: the ceiling names those of the
    stack's target's scalable target, no other stack's and no other target's."""
    ceiling = principals(any_graph)[role_named(any_graph, "deploy-build").outputs["arn"]].boundary
    account, region = boundary_arn(any_graph).split(":")[4], any_graph.config["aws:region"]
    p, target = prefix(any_graph), target_of(any_graph)
    forms = {"ecs": "service/{p}/{p}", "sagemaker": "endpoint/{p}/variant/live"}
    for kind, form in forms.items():
        for stack_prefix in (p, "ml-app-other"):
            for level in ("High", "Low"):
                alarm = (f"arn:aws:cloudwatch:{region}:{account}:alarm:TargetTracking-"
                         f"{form.format(p=stack_prefix)}-Alarm{level}-1b437334")
                for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
                    found = effects(ceiling, Request(action, alarm))
                    assert found == ({"Allow"} if (kind, stack_prefix) == (target, p)
                                     else set()), (alarm, action, found)


def _context_for(statement: dict[str, Any]) -> dict[str, Any]:
    """A request context that meets the statement's own conditions."""
    context: dict[str, Any] = {}
    for operator, block in (statement.get("Condition") or {}).items():
        for key, value in block.items():
            if operator == "Null":
                context[key] = "x" if str(value).lower() == "false" else None
            elif operator.startswith("ForAllValues") or operator.startswith("ForAnyValue"):
                context[key] = [as_list(value)[0]]
            else:
                context[key] = as_list(value)[0]
    return {k: v for k, v in context.items() if v is not None}


def _stack_resources(graph: Graph) -> list[tuple[str, dict[str, str]]]:
    """(ARN, the tags the provider's default tags give it) of every resource of the graph."""
    tags = {"aws:ResourceTag/project": "ml-app", "aws:ResourceTag/stack": graph.stack}
    found = [(r.outputs["arn"], tags) for r in graph.resources
             if r.custom and isinstance(r.outputs.get("arn"), str)]
    if graph.config.get("ml-app:hostedZoneId"):      # outside the stack, named by its config
        found.append((f"arn:aws:route53:::hostedzone/{graph.config['ml-app:hostedZoneId']}", {}))
    return found


@pytest.mark.parametrize("key", PIPELINE_ROLES)
def test_the_boundary_cuts_nothing_the_pipelines_roles_are_granted(any_graph, key):
    """Every action on every resource a pipeline role's policies grant (with their own
    conditions met) is inside the ceiling and hits no invariant: the boundary changes
    nothing about what `pulumi up` may do to the stack, only about what nobody may. (A grant
    on "*" must still work on "*" or on some resource of the stack: reading another stack's
    resources is what the ceiling cuts.)"""
    cut = _cut(any_graph, role_named(any_graph, key))
    assert not cut, cut


def test_the_boundary_cuts_nothing_the_other_roles_are_granted(any_graph):
    """The same for every other role: those the services run with (ECS's task and execution
    roles, SageMaker's and Lambda's execution roles, the flow logs') and the promotion's
    trigger (EventBridge starts the pipeline with it): whatever the target, what the program
    grants them is inside the ceiling."""
    pipeline_roles = {f"{prefix(any_graph)}-{k}" for k in PIPELINE_ROLES}
    roles = [r for r in resources_of_type(any_graph, "aws:iam/role:Role")
             if r.inputs.get("name") not in pipeline_roles]
    assert any("/service/" in (r.inputs.get("path") or "") for r in roles)
    for role in roles:
        cut = _cut(any_graph, role)
        assert not cut, (role.name, cut)


def _cut(graph: Graph, role) -> list[tuple]:
    """What the role's own policies grant that its boundary cuts: (Sid, action, resource,
    the ceiling's effects)."""
    ceiling = principals(graph)[role.outputs["arn"]].boundary
    stack_resources = _stack_resources(graph)
    # Route 53 reads are granted on "*", but only a configured hostedZoneId puts a zone in
    # reach (and only then does the program read one).
    unused = () if graph.config.get("ml-app:hostedZoneId") else ("route53:",)
    statements = role_statements(graph, role)
    assert statements, f"{role.name}: no policy found to check against the boundary"
    cut = []
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        base = {**_context_for(s), "aws:PrincipalArn": role.outputs["arn"]}
        for action in as_list(s["Action"]):
            if action.startswith(unused) and action != "route53:GetChange":
                continue
            for resource in as_list(s["Resource"]):
                candidates = [(resource, {})] + (stack_resources if resource == "*" else
                                                 [(a, t) for a, t in stack_resources
                                                  if a == resource])
                found = [effects(ceiling, Request(action, arn, {**tags, **base}))
                         for arn, tags in candidates]
                if {"Allow"} not in found:
                    cut.append((s.get("Sid"), action, resource, found[0]))
    return cut


def test_the_boundary_fits_a_managed_policy_with_room_for_more(any_graph):
    """6,144 characters without whitespace; keep room for new service-role kinds."""
    text = one(any_graph, "aws:iam/policy:Policy", BOUNDARY).inputs["policy"]
    assert len("".join(text.split())) <= 6144 - 300


@pytest.mark.parametrize("key", PIPELINE_ROLES)
def test_the_boundary_cuts_nothing_on_the_other_side_of_the_pipeline_choices(variant, key):
    """The S3 state backend, its secrets key and an existing connection are outside the
    stack: the ceiling names them (harness.VARIANT)."""
    test_the_boundary_cuts_nothing_the_pipelines_roles_are_granted(variant, key)
