"""The offline preview: a readable, per-stack summary of the whole resource graph.

``make snapshot`` (``python -m tests.infra.snapshot``) writes tests/infra/snapshots/<stack>.txt,
and for each other target dev's graph on it (``dev-sagemaker.txt``, ``dev-lambda.txt``: the
committed stacks run on ECS); test_snapshot.py fails with a diff when the program's graph no
longer matches, so a pull request that changes the infrastructure shows the change, reviewed
like code, without an AWS account. Resources appear as a tree by parent component, siblings sorted by type and name,
with their options and inputs (JSON strings such as policies and container definitions are
expanded). Masked: secrets as ``[secret]``; the image tag (a hash of app/ and the Dockerfile,
which changes with every application commit) as ``<image-tag>``; this checkout's path as
``<repo>``. IDs and ARNs of other resources are the mocks' placeholders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.infra.harness import (ROOT, STACKS, Graph, Resource, Secret, run_program,
                                 target_variant)

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
# Each other target's graph, once (dev's): the component a change to that target touches.
TARGET_SNAPSHOTS = ("dev-sagemaker", "dev-lambda")


def _parsed_json(value: Any) -> Any:
    """The parsed document if ``value`` is a JSON object or array in a string, else None."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def _readable(value: Any) -> Any:
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, dict):
        out = {}
        for k, v in sorted(value.items()):
            doc = _parsed_json(v)
            if doc is not None:
                out[f"{k} (json)"] = _readable(doc)
            else:
                out[k] = _readable(v)
        return out
    if isinstance(value, list):
        return [_readable(v) for v in value]
    path = getattr(value, "path", None)
    if path is not None and type(value).__name__ in ("FileAsset", "FileArchive"):
        return f"{type(value).__name__}({path})"
    return value


def _options(r: Resource, names: dict[str, str]) -> str:
    flags = []
    if r.protect:
        flags.append("protect")
    if r.retain_on_delete:
        flags.append("retainOnDelete")
    if r.delete_before_replace:
        flags.append("deleteBeforeReplace")
    if r.ignore_changes:
        flags.append(f"ignoreChanges={','.join(r.ignore_changes)}")
    depends = sorted({names[urn] for urn in r.explicit_depends_on if urn in names})
    if depends:
        flags.append(f"dependsOn={','.join(depends)}")
    return f"  [{'; '.join(flags)}]" if flags else ""


def render(graph: Graph) -> str:
    names = {r.urn: r.name for r in graph.resources}
    children: dict[str, list[Resource]] = {}
    for r in graph.resources:
        children.setdefault(r.parent if r.parent in names else "", []).append(r)
    lines = [
        f"# Offline preview of stack {graph.stack!r}: {len(graph.resources)} resources "
        "(the Pulumi program under mocks).",
        "# Regenerate with `make snapshot`. [secret] = secret value; <image-tag> = hash of the",
        "# image's build inputs; ids and ARNs of other resources are mock placeholders.",
        "",
    ]

    def emit(parent: str, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda x: (x.type, x.name)):
            indent = "  " * depth
            lines.append(f"{indent}{r.type}  {r.name}{_options(r, names)}")
            inputs = {k: v for k, v in r.raw_inputs.items() if not k.startswith("__")}
            if inputs:
                body = yaml.safe_dump(_readable(inputs), sort_keys=True, width=100,
                                      default_flow_style=False, allow_unicode=True)
                lines.extend(f"{indent}    {line}" for line in body.rstrip().splitlines())
            emit(r.urn, depth + 1)

    emit("", 0)
    lines += ["", "# Stack outputs"]
    exports = {k: ("[secret]" if k in graph.secret_exports else v)
               for k, v in sorted(graph.exports.items())}
    lines += yaml.safe_dump(exports, sort_keys=True, width=100).rstrip().splitlines()
    text = "\n".join(lines) + "\n"
    tag = graph.exports.get("imageTag")
    if tag:
        text = text.replace(tag, "<image-tag>")
    return text.replace(str(ROOT), "<repo>")


def snapshot_path(stack: str) -> Path:
    """``dev`` or a target variant such as ``dev-lambda``."""
    return SNAPSHOT_DIR / f"{stack}.txt"


def main(argv: list[str]) -> int:
    stacks = argv or [*STACKS, *TARGET_SNAPSHOTS]
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for stack in stacks:
        graph = run_program(*target_variant(stack)) if "-" in stack else run_program(stack)
        text = render(graph)
        path = snapshot_path(stack)
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{path.relative_to(ROOT)}: {'updated' if changed else 'unchanged'} "
              f"({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
