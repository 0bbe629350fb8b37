"""Fixtures for the infrastructure tests (offline: Pulumi mocks, no CLI, no AWS).

One test module per module of the program (test_<module>.py for infra/<module>.py,
test_main.py for __main__.py), plus whole-graph properties (test_security.py, and
test_escalation.py: IAM evaluated over every role), the snapshots, the policy pack and the
pipeline's files. Test modules share helpers through
the harness only, never by importing each other.

Harness API (tests.infra.harness):

  fixtures
    graphs                  session: {"dev": Graph, "staging": Graph, "prod": Graph}, each
                            stack's program run once under mocks with its Pulumi.<stack>.yaml
    graph                   parametrised over the three stacks (test ids dev/staging/prod)
    variant                 session: dev with the other side of every pipeline choice (VARIANT)
    target_graphs           session: {"dev-sagemaker": Graph, ...}: every stack run on each other
                            target (TARGET_VARIANTS: the overrides a stack file would add)
    target_graph            parametrised over those six (test ids dev-sagemaker ... prod-lambda)
    any_graph               parametrised over all nine: the committed stacks (on ECS) and the six

  running the program
    run_program(stack, overrides=None)   run again with config overrides ({"cpu": 256},
                            "aws:region": ..., None removes a key); raises the program's error
    run(stack, overrides)   same, but keeps the error in graph.error (partial graph kept)
    stack_config(stack, overrides) -> (config strings as the CLI passes them, secret keys)
    AwsMocks, MOCK_OUTPUTS  the mocks: AWS's output formats by resource type (ARN first)

  the graph
    Graph                   .resources [Resource], .invokes [Invoke], .exports {name: value},
                            .component_outputs {urn: outputs}, .warnings [str], .config,
                            .by_urn(urn), .children(resource), .ancestors(resource)
    Resource                .type .name .urn .parent .custom .provider .protect
                            .retain_on_delete .ignore_changes .depends_on
                            .explicit_depends_on .inputs (secrets unwrapped)
                            .raw_inputs (Secret-wrapped) .outputs (mocked, with "id")
    resources_of_type(graph, *types), json_input(resource, key), as_list(value)
    one(graph, type, component_type=None)  the single resource of a type (inside a component)
    within(graph, component_type, *types)  resources built inside a component, any depth
    config_value(graph, key), prefix(graph), stack_key_arn(graph), boundary_arn(graph)
    deployed_models(graph)  ml-app:models as releases (ModelVersion), the default first
    policy_documents(graph, *kinds) -> [PolicyDoc(resource, kind, text, document,
                            .statements)]; kinds: identity, trust, key, resource
    role_named(graph, key), role_statements(graph, role), allowed_actions(statements)
    principals(graph) -> {role ARN: iam_eval.Principal}: every role with its policies and
                            boundary, for the IAM evaluator
    resource_policies(graph) -> [(ARN pattern, statements)]: buckets, repository, key

  IAM evaluation (tests.infra.iam_eval, unit-tested in test_iam_eval.py)
    Request(action, resource, context), Principal(arn, identity, boundary),
    evaluate(principal, request, resource_policy=None, resource_account=None) -> Decision,
    effects(statements, request), trust_allows(trust, ..., context=...)

  checks
    lint(text), unexpected_findings(key, text, allow_list), used_entries(...),
    policy_key(graph, doc): parliament, with one allow-list format (AllowList)
    validate(service, operation, params), api_problems(...), check_enums(value, shape):
                            botocore's API models (shapes, enums, lengths, patterns, ranges)
    STACKS, PROJECT, ROOT, MOCK_ACCOUNT, PIPELINE, BOUNDARY, VARIANT,
    TARGET_VARIANTS, VARIANT_IDS, target_variant(id) -> (stack, overrides), target_of(graph)

  tests.infra.snapshot      render(graph) -> the readable snapshot text; `make snapshot`

Numbers are normalised (2.0 -> 2); invokes are strict (an unmocked token fails the run:
add it to AwsMocks.call).
"""

from __future__ import annotations

import pytest

from tests.infra.harness import (STACKS, VARIANT, VARIANT_IDS, Graph, all_graphs, run_program,
                                 target_variant)


@pytest.fixture(scope="session")
def graphs() -> dict[str, Graph]:
    return all_graphs()


@pytest.fixture(params=STACKS)
def graph(request, graphs) -> Graph:
    return graphs[request.param]


@pytest.fixture(scope="session")
def variant() -> Graph:
    return run_program("dev", VARIANT)


@pytest.fixture(scope="session")
def target_graphs() -> dict[str, Graph]:
    return {variant_id: run_program(*target_variant(variant_id)) for variant_id in VARIANT_IDS}


@pytest.fixture(params=VARIANT_IDS)
def target_graph(request, target_graphs) -> Graph:
    return target_graphs[request.param]


@pytest.fixture(params=(*STACKS, *VARIANT_IDS))
def any_graph(request, graphs, target_graphs) -> Graph:
    return graphs.get(request.param) or target_graphs[request.param]


def pytest_configure(config):
    # pulumi_aws warns about its own deprecated classes when its modules are imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
