"""IAM: the task's two roles, and what every module uses to write policy documents.

The execution role is what ECS itself uses to start the task (pull the image, write logs,
read the API key secret); the task role is what the application's code uses (read its model
versions from S3). Each policy names the exact ARNs: this repository, this log group, this
secret, this bucket prefix, this key. ``Resource: "*"`` appears only where AWS has no
resource-level permission, and each such statement says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.naming import StackNames
from infra.provider import AwsContext

POLICY_VERSION = "2012-10-17"
Statement = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    """How the stack's resources are recognised in ARNs and conditions: where the stack runs
    (account, region, partition) and what it names and tags."""

    context: AwsContext
    names: StackNames

    @property
    def prefix(self) -> str:
        return self.names.prefix

    @property
    def log_group_prefix(self) -> str:
        return self.names.log_group_prefix

    def arn(self, service: str, resource: str, *, region: bool = True) -> pulumi.Output[str]:
        return self.context.arn(service, resource, region=region)

    def service_roles_arn(self, kind: str | None = None) -> pulumi.Output[str]:
        """ARN pattern of the stack's service roles, or of one kind of them (its IAM path,
        ``StackNames.service_role_path``)."""
        path = self.names.service_role_path(kind) if kind else self.names.service_path
        return self.arn("iam", f"role{path}*", region=False)

    @property
    def service_policies_arn(self) -> pulumi.Output[str]:
        """ARN pattern of the stack's service policies."""
        return self.arn("iam", f"policy{self.names.service_path}*", region=False)

    @property
    def service_linked_roles_arn(self) -> pulumi.Output[str]:
        """ARN pattern of AWS's service-linked roles (AWS names and owns them)."""
        return self.arn("iam", "role/aws-service-role/*", region=False)

    def s3(self, resource: str) -> pulumi.Output[str]:
        return self.context.partition.apply(lambda p: f"arn:{p}:s3:::{resource}")

    def arn_of(self, pattern: str) -> pulumi.Input[str]:
        """An ARN pattern as AWS writes it, with ``{partition}``, ``{region}``,
        ``{account}``, ``{prefix}``, ``{logs}`` (the log-group path), ``{project}``,
        ``{stack}`` and the targets' fixed names (``{cluster}``, ``{service}``,
        ``{endpoint}``, ``{variant}``: StackNames) filled in; "*" stays."""
        if pattern == "*":
            return pattern
        ctx, names = self.context, self.names
        return pulumi.Output.all(ctx.partition, ctx.account_id).apply(
            lambda pa: pattern.format(partition=pa[0], account=pa[1], region=ctx.region,
                                      prefix=self.prefix, logs=self.log_group_prefix,
                                      project=names.project, stack=names.stack,
                                      cluster=names.cluster, service=names.service,
                                      endpoint=names.endpoint, variant=names.endpoint_variant))

    @property
    def request_tag(self) -> dict[str, Any]:
        """Condition: the request tags the new resource with the project and the stack."""
        return {"StringEquals": {f"aws:RequestTag/{k}": v
                                 for k, v in self.names.scope_tags.items()}}

    @property
    def resource_tag(self) -> dict[str, Any]:
        """Condition: the resource carries the project's and the stack's tags (both: keys in
        one operator must all match)."""
        return {"StringEquals": {f"aws:ResourceTag/{k}": v
                                 for k, v in self.names.scope_tags.items()}}

    def via(self, *services: str) -> dict[str, Any]:
        """Condition: the key is used by these AWS services on the caller's behalf
        (``kms:ViaService``), never directly."""
        return {"StringEquals": {"kms:ViaService": [self.context.service_principal(s)
                                                    for s in services]}}


def policy_document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """A policy document as JSON; statements may hold Outputs (ARNs of other resources)."""
    return pulumi.Output.json_dumps({"Version": POLICY_VERSION, "Statement": list(statements)})


def on_behalf_of_this_account(ctx: AwsContext, source_arn: pulumi.Input[str]) -> dict[str, Any]:
    """Condition for a service principal in a resource or key policy: it acts only for this
    account and for the given source (the confused-deputy protection AWS recommends)."""
    return {"StringEquals": {"aws:SourceAccount": ctx.account_id},
            "ArnLike": {"aws:SourceArn": source_arn}}


def service_trust_policy(service: str, ctx: AwsContext,
                         source_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Trust ``service`` to assume a role, only on behalf of this account and matching
    ``source_arn`` (the confused-deputy protection AWS recommends)."""
    return policy_document([{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": on_behalf_of_this_account(ctx, source_arn),
    }])


def deny_insecure_transport(resource: Sequence[pulumi.Input[str]],
                            actions: str = "*") -> dict[str, Any]:
    """Statement for resource policies: refuse any request not made over TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": actions,
        "Resource": list(resource),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


@dataclass
class ServiceRolesArgs:
    """What the two task roles may touch, by exact ARN."""

    context: AwsContext
    names: StackNames                                   # the service roles' IAM path
    repository_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    model_object_arns: Sequence[pulumi.Input[str]]      # ModelDeployment.object_arns
    kms_key_arn: pulumi.Input[str]
    api_key_secret_arn: pulumi.Input[str] | None = None


def execution_statements(args: ServiceRolesArgs) -> list[Statement]:
    """ECS itself, starting a task: pull this image, write this log group, read this secret."""
    statements: list[Statement] = [
        *ecr_pull_statements(args.repository_arn),
        {
            "Sid": "WriteThisLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": pulumi.Output.concat(args.log_group_arn, ":log-stream:*"),
        },
    ]
    if args.api_key_secret_arn is not None:
        statements += [
            {
                "Sid": "ReadTheApiKey",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": args.api_key_secret_arn,
            },
            {
                # The secret is encrypted with the stack's key; only via Secrets Manager.
                "Sid": "DecryptTheApiKey",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": args.kms_key_arn,
                "Condition": {"StringEquals": {
                    "kms:ViaService": args.context.service_principal("secretsmanager")}},
            },
        ]
    return statements


def task_statements(args: ServiceRolesArgs) -> list[Statement]:
    """The application: read the deployed model versions, and decrypt them through S3."""
    return read_model_statements(args.context, args.model_object_arns, args.kms_key_arn)


def read_model_statements(context: AwsContext, object_arns: Sequence[pulumi.Input[str]],
                          kms_key_arn: pulumi.Input[str]) -> list[Statement]:
    """What the application's role needs on every target: the deployed model versions'
    objects (``ModelDeployment.object_arns``), read and decrypted through S3 only, and only
    those (the key grant names them through S3's encryption context)."""
    objects = object_arns[0] if len(object_arns) == 1 else list(object_arns)
    return [
        {
            # Only the deployed versions' objects; the app never lists the bucket.
            "Sid": "ReadTheDeployedModelVersion",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": objects,
        },
        {
            # Through S3, and only objects under those prefixes: S3 names the object in the
            # encryption context (model objects use no Bucket Key; infra/model_registry.py).
            "Sid": "DecryptModelObjects",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn,
            "Condition": {
                "StringEquals": {"kms:ViaService": context.service_principal("s3")},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": objects},
            },
        },
    ]


def ecr_pull_statements(repository_arn: pulumi.Input[str]) -> list[Statement]:
    """Pull this repository's images (ECS's execution role, SageMaker's execution role)."""
    return [
        {
            # GetAuthorizationToken has no resource-level permissions: AWS requires "*".
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullThisRepository",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                       "ecr:GetDownloadUrlForLayer"],
            "Resource": repository_arn,
        },
    ]


class ServiceRoles(pulumi.ComponentResource):
    """ECS task execution role and task role, each with one inline least-privilege policy."""

    execution_role: aws.iam.Role
    task_role: aws.iam.Role

    def __init__(self, name: str, args: ServiceRolesArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ServiceRoles", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        # ECS assumes both roles on behalf of task definitions of this account and region.
        trust = service_trust_policy("ecs-tasks.amazonaws.com", ctx, ctx.arn("ecs", "*"))

        # Under the service-role path for ECS tasks: the only roles the deploy role may
        # change, and only passable to ECS tasks (infra/boundary.py).
        path = args.names.service_role_path("ecs-tasks")
        self.execution_role = aws.iam.Role(
            f"{name}-execution", description="ECS pulls the image, writes logs, reads secrets",
            path=path, assume_role_policy=trust, opts=child)
        aws.iam.RolePolicy(f"{name}-execution", role=self.execution_role.id,
                           policy=policy_document(execution_statements(args)), opts=child)
        self.task_role = aws.iam.Role(
            f"{name}-task", description="The application: read its model version",
            path=path, assume_role_policy=trust, opts=child)
        aws.iam.RolePolicy(f"{name}-task", role=self.task_role.id,
                           policy=policy_document(task_statements(args)), opts=child)

        self.register_outputs({"execution_role_arn": self.execution_role.arn,
                               "task_role_arn": self.task_role.arn})
