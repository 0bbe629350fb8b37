"""The permissions boundary (infra/boundary.py): on every role of the stack, built before
them, capping the services and closing the ways out of itself."""

from __future__ import annotations

from typing import Any

from infra import boundary
from tests.infra.harness import (BOUNDARY, Graph, allowed_actions, as_list, boundary_arn,
                                 json_input, one, prefix, resources_of_type, role_named,
                                 role_statements)


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
    policy_urn = one(graph, "aws:iam/policy:Policy", BOUNDARY).urn
    assert all(policy_urn in r.depends_on for r in roles), \
        [r.name for r in roles if policy_urn not in r.depends_on]


def _boundary(graph: Graph) -> dict[str, dict[str, Any]]:
    doc = json_input(one(graph, "aws:iam/policy:Policy", BOUNDARY), "policy")
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
        outside = {a for a in allowed_actions(role_statements(graph, role_named(graph, key)))
                   if a.split(":")[0] not in services}
        assert not outside, f"{key}: {outside} exceed the boundary"
