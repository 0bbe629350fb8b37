"""The committed offline preview (tests/infra/snapshots/<stack>.txt) matches the program.

When the infrastructure changes on purpose, run `make snapshot` and commit the new files:
the diff is what reviewers read in the pull request.
"""

from __future__ import annotations

import difflib

import pytest

from tests.infra.harness import STACKS, Graph, Secret
from tests.infra.snapshot import TARGET_SNAPSHOTS, render, snapshot_path

MAX_DIFF_LINES = 120


def _matches(name: str, graph: Graph) -> None:
    path = snapshot_path(name)
    assert path.exists(), f"{path} is missing: run `make snapshot`"
    expected, actual = path.read_text(), render(graph)
    if actual != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                         f"committed {path.name}", "program now", lineterm="", n=2))
        shown = "\n".join(diff[:MAX_DIFF_LINES])
        more = f"\n... {len(diff) - MAX_DIFF_LINES} more diff lines" if len(diff) > MAX_DIFF_LINES else ""
        pytest.fail(f"the resource graph of {name!r} changed; if intended, run "
                    f"`make snapshot` and commit tests/infra/snapshots/:\n{shown}{more}",
                    pytrace=False)


def test_snapshot_matches_the_program(graph):
    _matches(graph.stack, graph)


@pytest.mark.parametrize("name", TARGET_SNAPSHOTS)
def test_each_targets_snapshot_matches_the_program(target_graphs, name):
    _matches(name, target_graphs[name])


def test_snapshot_masks_secrets_and_the_image_tag(graphs):
    for stack in STACKS:
        graph = graphs[stack]
        text = render(graph)
        secrets = [v.value for r in graph.resources for v in _secrets(r.raw_inputs)]
        assert secrets, "expected at least one secret input (the API key, the registry password)"
        for value in secrets:
            if isinstance(value, str) and len(value) >= 8:
                assert value not in text
        assert "[secret]" in text
        assert graph.exports["imageTag"] not in text and "<image-tag>" in text


def _secrets(value):
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _secrets(v)
    elif isinstance(value, list):
        for v in value:
            yield from _secrets(v)

