"""The stack's one AWS provider (infra/provider.py): default tags, and used by everything."""

from __future__ import annotations

import importlib
import inspect
import json
from functools import lru_cache

from tests.infra.harness import Graph, Resource, config_value, one


def aws_resources(graph: Graph) -> list[Resource]:
    return [r for r in graph.resources if r.type.startswith("aws:")]


@lru_cache(maxsize=None)
def accepts_tags(type_token: str) -> bool:
    """Does the pulumi_aws resource class take a ``tags`` argument?"""
    _, module_path, class_name = type_token.split(":")
    module = module_path.split("/")[0]
    module = {"lambda": "lambda_"}.get(module, module)     # Python's keyword
    package = importlib.import_module("pulumi_aws" if module == "index" else f"pulumi_aws.{module}")
    cls = getattr(package, class_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def provider_of(graph: Graph) -> Resource:
    return one(graph, "pulumi:providers:aws")


def test_one_explicit_aws_provider_carries_the_default_tags(any_graph):
    provider = provider_of(any_graph)
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags["project"] == "ml-app" and tags["stack"] == any_graph.stack
    assert tags["owner"] == config_value(any_graph, "owner") and tags["owner"]
    assert tags["cost-centre"] == config_value(any_graph, "costCentre") and tags["cost-centre"]
    assert provider.inputs["region"] == any_graph.config["aws:region"]


def test_every_aws_resource_and_invoke_uses_the_tagged_provider(any_graph):
    provider = provider_of(any_graph)
    resources = aws_resources(any_graph)
    taggable = [r for r in resources if accepts_tags(r.type)]
    assert len(taggable) > 30, "expected most resources to be taggable"
    wrong = [r.label for r in resources if not r.provider.startswith(provider.urn)]
    assert not wrong, f"resources on the default (untagged) provider: {wrong}"
    aws_invokes = [i for i in any_graph.invokes if i.token.startswith("aws:")]
    assert aws_invokes
    assert all(i.provider.startswith(provider.urn) for i in aws_invokes), \
        [i.token for i in aws_invokes if not i.provider.startswith(provider.urn)]
