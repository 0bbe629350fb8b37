"""The stack's names (infra/naming.py): one object built from the configuration, and every
name in the graph is one of its names."""

from __future__ import annotations

import json

import pytest

from infra import config
from infra.naming import StackNames
from tests.infra.harness import PROJECT, STACKS, config_value, one, prefix, stack_config


def test_names_derive_from_the_project_and_the_stack():
    names = StackNames("ml-app", "dev", owner="ml-platform", cost_centre="cc-1")
    assert names.prefix == "ml-app-dev" and names.name("deploy-build") == "ml-app-dev-deploy-build"
    assert names.log_group_prefix == "/ml-app/dev"
    assert names.log_group("codebuild/test") == "/ml-app/dev/codebuild/test"
    assert names.cluster == names.service == "ml-app-dev"
    assert names.metrics_namespace == "ml-app/dev"
    assert names.tags == {"project": "ml-app", "stack": "dev", "owner": "ml-platform",
                          "cost-centre": "cc-1", "managed-by": "pulumi"}
    assert names.tags[names.tag_key] == names.tag_value == "dev"
    assert names.scope_tags == {"project": "ml-app", "stack": "dev"}
    assert names.service_role_path("ecs-tasks") == "/ml-app/dev/service/ecs-tasks/"
    assert names.waf_log_group == "aws-waf-logs-ml-app-dev"
    assert names.promotion_bucket("333333333333") == "ml-app-dev-promotion-333333333333"
    assert names.of("prod").pipeline_role("deploy-build") == "ml-app-prod-deploy-build"
    # The other targets' fixed names (the alarms and the smoke test know them in advance).
    assert names.endpoint == "ml-app-dev" and names.endpoint_variant == "live"
    assert names.sagemaker_log_group == "/aws/sagemaker/Endpoints/ml-app-dev"
    assert names.function == "ml-app-dev-function" and names.function_alias == "live"


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_config_carries_its_names(stack):
    values, _ = stack_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")}
    names = config.parse(raw, stack=stack, region=values["aws:region"]).names
    assert names.prefix == f"ml-app-{stack}"
    assert names.owner == values["ml-app:owner"]
    assert names.cost_centre == values["ml-app:costCentre"]


def test_every_name_in_the_graph_is_one_of_the_stacks(any_graph):
    """Physical names start with the prefix (the deploy role and the boundary grant by it),
    log groups live under the stack's path (its key serves only those) or are named by their
    service after the stack's resource, the aliases are the stack's; DNS records are the
    configured domain's."""
    names, checked = StackNames(PROJECT, any_graph.stack, "", ""), 0
    for r in any_graph.resources:
        for key in ("name", "dashboardName", "family"):
            value = r.inputs.get(key) if r.type.startswith("aws:") else None
            if not isinstance(value, str):
                continue
            checked += 1
            if r.type == "aws:cloudwatch/logGroup:LogGroup":
                assert value.startswith(names.log_group_prefix + "/") or \
                    value in (names.waf_log_group, names.sagemaker_log_group), value
            elif r.type == "aws:kms/alias:Alias":
                assert value == f"alias/{names.prefix}"
            elif r.type == "aws:lambda/alias:Alias":
                assert value == names.function_alias
            elif r.type == "aws:route53/record:Record":
                assert value.rstrip(".").endswith(config_value(any_graph, "domainName")), value
            else:
                assert value.startswith(prefix(any_graph)), f"{r.label}: {key} {value}"
    assert checked >= 20


def test_the_provider_tags_are_the_names_tags(any_graph):
    tags = json.loads(one(any_graph, "pulumi:providers:aws").inputs["defaultTags"])["tags"]
    assert tags == StackNames(PROJECT, any_graph.stack, config_value(any_graph, "owner"),
                              config_value(any_graph, "costCentre")).tags
