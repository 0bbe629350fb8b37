"""The Lambda target: the same image digest as a Lambda function behind a Function URL.

Lambda starts the image with the function's ``image_config`` instead of its CMD: the entry
point is AWS's runtime interface client (``awslambdaric``, installed in the image's venv)
and the command names the handler, ``app.lambda_handler.handler``, which serves Function URL
events through the same WSGI app as ECS and SageMaker (app/lambda_handler.py). ECS and
SageMaker never load it. The model comes from ``MODEL_URI``/``MODEL_SHA256`` exactly as on
ECS (``ModelDeployment``) and is cached in ``/tmp``, Lambda's only writable path.

What is created, each child of this component:

* the execution role (``/<project>/<stack>/service/lambda/``, passable to Lambda only),
  scoped like the ECS task role: read the deployed model version through S3 and the stack's
  key, and write the stack's log group;
* the function ``<prefix>-function``: package type Image on the digest, x86_64 (the image is
  built for linux/amd64), memory, timeout, ephemeral storage and reserved concurrency from
  the configuration, JSON logs into the stack's KMS-encrypted log group (its retention);
  every change publishes a new version;
* the ``live`` alias on the published version, optionally with provisioned concurrency, and
  the Function URL on that alias: ``AWS_IAM`` (callers sign with SigV4, service ``lambda``)
  unless the configuration says ``NONE`` (never in production, infra/config.py).

The image is pulled by Lambda through the repository policy (``image.lambda_pull_statement``),
which the function waits for.

Network: none of the stack's. The function runs outside any VPC (Lambda's network reaches S3
and CloudWatch Logs); in a VPC it would need NAT gateways or interface endpoints for the
same, and gain nothing to reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_document, read_model_statements
from infra.image import ContainerImage, PLATFORM
from infra.model_registry import ModelRegistry
from infra.naming import StackNames
from infra.provider import AwsContext

lambda_ = aws.lambda_
# The Lambda entry of the image (app/lambda_handler.py, Dockerfile): the runtime interface
# client from the image's venv, then the handler it imports.
ENTRY_POINT = ["/opt/venv/bin/python3", "-m", "awslambdaric"]
COMMAND = ["app.lambda_handler.handler"]
# Lambda's name for the image's platform (image.PLATFORM = linux/amd64).
ARCHITECTURES = {"linux/amd64": "x86_64", "linux/arm64": "arm64"}


@dataclass(frozen=True)
class FunctionSize:
    """How big the function is and how many copies of it may run."""

    memory_mb: int
    timeout_seconds: int
    ephemeral_storage_mb: int
    reserved_concurrency: int
    provisioned_concurrency: int = 0


@dataclass
class LambdaFunctionArgs:
    """What the function runs (the image, the registry's model deployment) and with what."""

    context: AwsContext
    names: StackNames                       # the function, its alias, its role's path
    size: FunctionSize
    image: ContainerImage                   # its digest; its policy lets Lambda pull
    registry: ModelRegistry                 # the model deployment (environment, objects)
    kms_key_arn: pulumi.Input[str]
    log_group: aws.cloudwatch.LogGroup      # the stack's service log group
    url_auth: str = "AWS_IAM"               # AWS_IAM | NONE


def trust_policy(ctx: AwsContext) -> pulumi.Output[str]:
    """Lambda assumes the role for functions of this account only (``aws:SourceAccount``,
    the confused-deputy protection; the function is the role's only user by its path)."""
    return policy_document([{
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
    }])


def execution_statements(args: LambdaFunctionArgs) -> list[Statement]:
    """The function's code: read the deployed model version, write its log group."""
    return [
        *read_model_statements(args.context, args.registry.deployment.object_arns,
                               args.kms_key_arn),
        {
            "Sid": "WriteTheServiceLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": pulumi.Output.concat(args.log_group.arn, ":log-stream:*"),
        },
    ]


class LambdaFunction(pulumi.ComponentResource):
    """Execution role, function (image on the digest), ``live`` alias, provisioned
    concurrency (optional) and the Function URL on the alias."""

    function_name: pulumi.Output[str]
    function_version: pulumi.Output[str]
    alias_name: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: LambdaFunctionArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:LambdaFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, size = args.names, args.size
        role, role_policy = self._execution_role(name, args)
        function = self._function(name, args, role, role_policy)
        alias = lambda_.Alias(
            f"{name}-alias", name=names.function_alias, function_name=function.name,
            function_version=function.version,
            description="The version the last deploy published", opts=child)
        if size.provisioned_concurrency:
            lambda_.ProvisionedConcurrencyConfig(
                f"{name}-provisioned", function_name=function.name, qualifier=alias.name,
                provisioned_concurrent_executions=size.provisioned_concurrency, opts=child)
        url = lambda_.FunctionUrl(
            f"{name}-url", function_name=function.name, qualifier=alias.name,
            authorization_type=args.url_auth, invoke_mode="BUFFERED", opts=child)

        self.function_name = function.name
        self.function_version = function.version
        self.alias_name = alias.name
        # The URL ends with "/"; the API's paths start with one.
        self.url = url.function_url.apply(lambda u: u.rstrip("/"))
        self.register_outputs({"function_name": self.function_name, "url": self.url,
                               "function_version": self.function_version})

    def _execution_role(self, name: str, args: LambdaFunctionArgs
                        ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        child = pulumi.ResourceOptions(parent=self)
        # Under the service-role path for Lambda: passable to Lambda only, and the only roles
        # of this kind the deploy role may change (infra/boundary.py).
        role = aws.iam.Role(
            f"{name}-execution", description="The function: read its model version, log",
            path=args.names.service_role_path("lambda"),
            assume_role_policy=trust_policy(args.context), opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-execution", role=role.id,
            policy=policy_document(execution_statements(args)), opts=child)
        return role, role_policy

    def _function(self, name: str, args: LambdaFunctionArgs, role: aws.iam.Role,
                  role_policy: aws.iam.RolePolicy) -> lambda_.Function:
        """The image on its digest, its JSON logs in the stack's group, a version per
        change."""
        names, size = args.names, args.size
        return lambda_.Function(
            f"{name}-function", name=names.function,
            description=f"{names.prefix}: the serving image (design.md 10)",
            package_type="Image", image_uri=args.image.image_ref,
            architectures=[ARCHITECTURES[PLATFORM]],
            image_config=lambda_.FunctionImageConfigArgs(entry_points=ENTRY_POINT,
                                                         commands=COMMAND),
            role=role.arn, memory_size=size.memory_mb, timeout=size.timeout_seconds,
            ephemeral_storage=lambda_.FunctionEphemeralStorageArgs(
                size=size.ephemeral_storage_mb),
            reserved_concurrent_executions=size.reserved_concurrency,
            environment=lambda_.FunctionEnvironmentArgs(
                variables=args.registry.deployment.app_environment(names.metrics_namespace)),
            # The app writes JSON lines; Lambda's own lines (START, REPORT...) become JSON too,
            # in the stack's log group (its key, its retention, its ERROR-line metric).
            logging_config=lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=args.log_group.name,
                application_log_level="INFO", system_log_level="WARN"),
            # Every change publishes a version; the alias below moves to it.
            publish=True,
            # The role's policy before the function (its first init reads the model), and the
            # repository policy Lambda pulls through.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[role_policy, *args.image.policy_ready]))
