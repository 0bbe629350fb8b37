"""The container image: an ECR repository and the image built from the repo's Dockerfile.

The repository has immutable tags (a tag names one image forever), scans on push, is
encrypted with the stack's key and expires old images. The image is built for linux/amd64
explicitly (an ARM laptop otherwise produces an image Fargate cannot run: ``exec format
error``), tagged with a hash of its build inputs, pushed with short-lived ECR credentials
(or, when the tag is already there, reused without a push), and the service references the
digest, never the tag.

The repository's policy lets only the pipeline's deploy role push (and delete) images: a
content-hash tag that anyone else planted would otherwise be reused by a deploy without a
build. The policy is set after the image is pushed, so a stack's first ``pulumi up`` (an
administrator's, docs/pipeline.md) can push the first image; every later image comes from
the pipeline. ``pull_statements`` add who else may pull (another AWS service: Lambda pulls
through this policy, ``lambda_pull_statement``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from infra.build_context import build_inputs_hash
from infra.iam import policy_document

PLATFORM = "linux/amd64"
# Writing or removing an image or a tag (ECR authorises a push layer by layer).
PUSH_ACTIONS = ["ecr:BatchDeleteImage", "ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload",
                "ecr:PutImage", "ecr:UploadLayerPart"]
KEEP_IMAGES = 30            # images kept in the repository (rollback targets)
UNTAGGED_DAYS = 7           # untagged layers (failed or superseded pushes) expire after
LIFECYCLE_POLICY = json.dumps({"rules": [
    {
        "rulePriority": 1,
        "description": f"expire untagged images after {UNTAGGED_DAYS} days",
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                      "countUnit": "days", "countNumber": UNTAGGED_DAYS},
        "action": {"type": "expire"},
    },
    {
        "rulePriority": 2,
        "description": f"keep the {KEEP_IMAGES} most recent images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                      "countNumber": KEEP_IMAGES},
        "action": {"type": "expire"},
    },
]})


@dataclass
class ContainerImageArgs:
    kms_key_arn: pulumi.Input[str]
    context: Path                     # the build context (the repository root)
    context_label: str = "."          # how the context is given to docker (relative to cwd)
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    protect: bool = True
    pusher_arn: pulumi.Input[str] | None = None   # the only principal that may push
    pull_statements: list[dict] = field(default_factory=list)  # more repository statements


class ContainerImage(pulumi.ComponentResource):
    """ECR repository, its lifecycle policy, and the pushed image."""

    repository: aws.ecr.Repository
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]     # <repository>@sha256:<digest>
    tag: str
    # The repository policy, once set: whatever pulls through it (Lambda) waits for it.
    policy_ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ContainerImageArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ContainerImage", name, None, opts)
        self.repository = self._repository(name, args)
        self.tag = build_inputs_hash(args.context.resolve(), args.dockerfile, PLATFORM,
                                     tuple(sorted(args.build_args.items())))[:16]
        # A tag already in the repository is reused, never pushed again. That happens on a
        # rollback or revert to earlier build inputs: the tags are immutable and a rebuild is
        # not byte-identical, so ECR would refuse the push and the rollback would fail.
        # Reusing it also deploys exactly the bytes that ran before. Cost: after a deploy
        # that pushed a new tag, the next run flips skipPush to true (one "~ image" line in
        # the preview, a cached local build, no push and no change to the service).
        existing_digest = _digest_of(self.repository, self.tag, parent=self)
        image = self._image(name, args, existing_digest)
        self.policy_ready = self._repository_policy(name, args, image)
        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.image_ref = pulumi.Output.all(existing_digest, self.repository.repository_url,
                                           image.repo_digest).apply(
            lambda a: f"{a[1]}@{a[0]}" if a[0] else a[2])
        self.register_outputs({"repository_url": self.repository_url, "image_ref": self.image_ref,
                               "tag": self.tag})

    def _repository(self, name: str, args: ContainerImageArgs) -> aws.ecr.Repository:
        """Immutable tags, scanned on push, encrypted with the stack's key, old images
        expired."""
        repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
                encryption_type="KMS", kms_key=args.kms_key_arn)],
            force_delete=not args.protect,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle", repository=repository.name,
            policy=LIFECYCLE_POLICY,
            opts=pulumi.ResourceOptions(parent=self))
        return repository

    def _image(self, name: str, args: ContainerImageArgs,
               existing_digest: pulumi.Output[str | None]) -> docker.Image:
        # Short-lived (12 h) credentials, fetched at each run; kept secret in the state.
        creds = aws.ecr.get_authorization_token_output(
            registry_id=self.repository.registry_id, opts=pulumi.InvokeOptions(parent=self))
        return docker.Image(
            f"{name}-image",
            image_name=pulumi.Output.concat(self.repository.repository_url, ":", self.tag),
            build=docker.DockerBuildArgs(context=args.context_label,
                                         dockerfile=args.dockerfile,
                                         platform=PLATFORM, args=args.build_args or None),
            # A preview does not build (pulumi-docker#540); CI builds in its own step.
            build_on_preview=False,
            skip_push=existing_digest.apply(lambda digest: digest is not None),
            registry=docker.RegistryArgs(server=self.repository.repository_url,
                                         username=creds.user_name,
                                         password=pulumi.Output.secret(creds.password)),
            opts=pulumi.ResourceOptions(parent=self))

    def _repository_policy(self, name: str, args: ContainerImageArgs,
                           image: docker.Image) -> list[aws.ecr.RepositoryPolicy]:
        """Only the deploy role pushes (when the pipeline names it), after the first image."""
        ready: list[aws.ecr.RepositoryPolicy] = []
        if args.pusher_arn is not None:
            ready.append(aws.ecr.RepositoryPolicy(
                f"{name}-repo-policy", repository=self.repository.name,
                policy=policy_document([
                    {
                        "Sid": "OnlyTheDeployRolePushes",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": PUSH_ACTIONS,
                        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": args.pusher_arn}},
                    },
                    *args.pull_statements,
                ]),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[image])))
        return ready


def lambda_pull_statement(function_arn: pulumi.Input[str]) -> dict:
    """The repository statement that lets Lambda pull the image of this function, as AWS
    documents it for a function in the repository's account (the Lambda service principal,
    ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer``, ``aws:SourceArn`` naming the
    function), narrowed from AWS's ``function:*`` to the stack's function and its versions.
    Without it Lambda would try to add a statement itself on the first deploy, and the next
    ``pulumi up`` would remove it."""
    return {
        "Sid": "LambdaPullsTheFunctionsImage",
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"StringLike": {"aws:SourceArn": [
            function_arn, pulumi.Output.concat(function_arn, ":*")]}},
    }


def _digest_of(repository: aws.ecr.Repository, tag: str,
               parent: pulumi.Resource) -> pulumi.Output[str | None]:
    """The digest of the image tagged ``tag`` in the repository, None when there is none."""
    listed = aws.ecr.get_images_output(repository_name=repository.name,
                                       registry_id=repository.registry_id,
                                       opts=pulumi.InvokeOptions(parent=parent))
    return listed.image_ids.apply(
        lambda ids: next((i.image_digest for i in ids or [] if i.image_tag == tag), None))
