"""Fixtures for the infrastructure tests (offline: Pulumi mocks, no CLI, no AWS).

Harness API, for these tests and any other infra test file (e.g. the pipeline's):

  fixtures
    graphs                  session: {"dev": Graph, "staging": Graph, "prod": Graph}, each
                            stack's program run once under mocks with its Pulumi.<stack>.yaml
    graph                   parametrised over the three stacks (test ids dev/staging/prod)

  tests.infra.harness
    run_program(stack, overrides=None)   run again with config overrides ({"cpu": 256},
                            "aws:region": ..., None removes a key); raises the program's error
    run(stack, overrides)   same, but keeps the error in graph.error (partial graph kept)
    Graph                   .resources [Resource], .invokes [Invoke], .exports {name: value},
                            .component_outputs {urn: outputs}, .warnings [str], .config,
                            .by_urn(urn), .children(resource), .ancestors(resource)
    Resource                .type .name .urn .parent .custom .provider .protect
                            .retain_on_delete .ignore_changes .depends_on
                            .explicit_depends_on .inputs (secrets unwrapped)
                            .raw_inputs (Secret-wrapped) .outputs (mocked, with "id")
    resources_of_type(graph, *types), json_input(resource, key)
    one(graph, type, component_type=None)  the single resource of a type (inside a component)
    within(graph, component_type, *types)  resources built inside a component, any depth
    policy_documents(graph, *kinds) -> [PolicyDoc(resource, kind, text, document,
                            .statements)]; kinds: identity, trust, key, resource
    stack_config(stack, overrides) -> (config strings as the CLI passes them, secret keys)
    STACKS, PROJECT, ROOT, MOCK_ACCOUNT

  tests.infra.snapshot      render(graph) -> the readable snapshot text; `make snapshot`
  tests.infra.test_aws_shapes   validate(service, operation, params): botocore shape + enums
  tests.infra.test_iam      lint(doc) (parliament findings), ALLOWED_FINDINGS pattern

Numbers are normalised (2.0 -> 2); invokes are strict (an unmocked token fails the run:
add it to AwsMocks.call).
"""

from __future__ import annotations

import pytest

from tests.infra.harness import STACKS, Graph, all_graphs


@pytest.fixture(scope="session")
def graphs() -> dict[str, Graph]:
    return all_graphs()


@pytest.fixture(params=STACKS)
def graph(request, graphs) -> Graph:
    return graphs[request.param]


def pytest_configure(config):
    # pulumi_aws warns about its own deprecated classes when its modules are imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
