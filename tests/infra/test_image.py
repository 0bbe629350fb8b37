"""The image and its repository (infra/image.py): built for amd64, tagged by content, pushed once,
referenced by digest; the repository immutable, scanned, expiring."""

from __future__ import annotations

import json

from infra.build_context import build_inputs_hash
from tests.infra.harness import ROOT, json_input, one, run_program, target_of


def container(graph) -> dict:
    [definition] = json_input(one(graph, "aws:ecs/taskDefinition:TaskDefinition"),
                              "containerDefinitions")
    return definition


def test_image_is_built_for_amd64_from_the_dockerfile_and_tagged_by_content(any_graph):
    image = one(any_graph, "docker:index/image:Image")
    build = image.inputs["build"]
    assert build["platform"] == "linux/amd64"
    assert build["context"] == "." and build["dockerfile"] == "Dockerfile"
    # The same call as the program's (so the cached hash: app/ may change while tests run);
    # test_build_context.py checks what the hash covers.
    tag = build_inputs_hash(ROOT, "Dockerfile", "linux/amd64", ())[:16]
    repo = one(any_graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage").outputs["repositoryUrl"]
    assert image.inputs["imageName"] == f"{repo}:{tag}"
    assert any_graph.exports["imageTag"] == tag
    assert image.inputs["buildOnPreview"] is False
    # The registry block carries the ECR password, so the engine keeps it secret.
    assert type(image.raw_inputs["registry"]).__name__ == "Secret"
    assert image.inputs["registry"]["username"] == "AWS"
    assert image.inputs["registry"]["server"] == repo


def test_a_tag_already_in_ecr_is_reused_not_pushed_again():
    """Rollback or revert to earlier build inputs: ECR's tags are immutable and a rebuild is
    not byte-identical, so the program must reference the existing image, not push."""
    first = run_program("dev")
    tag = first.exports["imageTag"]
    digest = "sha256:" + "ab" * 32
    again = run_program("dev", ecr_images={tag: digest, "0123456789abcdef": "sha256:" + "cd" * 32})
    image = one(again, "docker:index/image:Image")
    assert image.inputs["skipPush"] is True
    repo = again.exports["ecrRepositoryUrl"]
    assert container(again)["image"] == again.exports["imageRef"] == f"{repo}@{digest}"
    # another tag in the repository changes nothing
    other = run_program("dev", ecr_images={"0123456789abcdef": "sha256:" + "cd" * 32})
    assert one(other, "docker:index/image:Image").inputs["skipPush"] is False


def test_ecr_repository_is_immutable_scanned_and_expires_images(any_graph):
    repo = one(any_graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    lifecycle = one(any_graph, "aws:ecr/lifecyclePolicy:LifecyclePolicy", "ml-app:infra:ContainerImage")
    rules = json.loads(lifecycle.inputs["policy"])["rules"]
    assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}


def test_only_the_deploy_role_pushes_to_the_repository(any_graph):
    """A content-hash tag planted by anyone else would be deployed without a build: the
    repository policy denies pushes to every other principal (who can push is evaluated in
    test_escalation.py). It is set after the first image, which an administrator's first
    `pulumi up` pushes."""
    policy = one(any_graph, "aws:ecr/repositoryPolicy:RepositoryPolicy")
    repository = one(any_graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert policy.inputs["repository"] == repository.outputs["name"]
    # On Lambda alone, a second statement lets Lambda pull (test_function.py); no other.
    statements = json_input(policy, "policy")["Statement"]
    assert len(statements) == 1 + (target_of(any_graph) == "lambda"), statements
    deny = statements[0]
    account = repository.outputs["arn"].split(":")[4]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:BatchDeleteImage"} <= \
        set(deny["Action"])
    assert deny["Condition"] == {"ArnNotEquals": {
        "aws:PrincipalArn": f"arn:aws:iam::{account}:role/ml-app-{any_graph.stack}-deploy-build"}}
    image = one(any_graph, "docker:index/image:Image")
    assert image.urn in policy.explicit_depends_on
