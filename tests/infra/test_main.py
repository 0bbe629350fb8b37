"""The program (__main__.py): every component wired, every resource in one, the outputs."""

from __future__ import annotations

import json

from tests.infra.harness import ROOT, config_value, json_input, one


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


EXPORTS = {"serviceUrl", "ecrRepositoryUrl", "imageRef", "modelUri", "models", "modelBucket",
           "clusterName", "serviceName", "logGroupName", "alarmTopicArn", "dashboardUrl",
           "taskDefinitionArn", "kmsKeyArn", "consoleLinks"}


def test_stack_outputs(graph):
    assert EXPORTS <= set(graph.exports), EXPORTS - set(graph.exports)
    # docs/deploy.md's "Outputs" table names every output of the stack.
    section = (ROOT / "docs" / "deploy.md").read_text().split("## 5. Outputs", 1)[1]
    table = section.split("\n## ", 1)[0]
    undocumented = [k for k in graph.exports if f"`{k}`" not in table]
    assert not undocumented, f"add to the outputs table of docs/deploy.md: {undocumented}"
    [task] = json_input(one(graph, "aws:ecs/taskDefinition:TaskDefinition"),
                        "containerDefinitions")
    assert graph.exports["imageRef"] == task["image"]
    assert {"name": "MODEL_URI", "value": graph.exports["modelUri"]} in task["environment"]
    assert graph.exports["modelManifestSha256"] == \
        {e["name"]: e["value"] for e in task["environment"]}["MODEL_SHA256"]
    # the entries of ml-app:models, in order: what `make smoke` checks the service serves
    assert graph.exports["models"].split(",") == json.loads(config_value(graph, "models"))
    assert graph.exports["permissionsBoundaryArn"].endswith(
        f":policy/ml-app-{graph.stack}-permissions-boundary")
    assert ("apiKeySecretName" in graph.exports) == \
        (config_value(graph, "apiKeyEnabled") == "true")
    assert graph.exports["clusterName"] == graph.exports["serviceName"] == f"ml-app-{graph.stack}"
    assert all(link.startswith("https://") for link in graph.exports["consoleLinks"].values())
    assert not graph.secret_exports
