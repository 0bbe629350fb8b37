"""The SageMaker target: the same image digest as a SageMaker real-time endpoint.

SageMaker starts the container as ``docker run IMAGE serve`` (the image's ``serve`` program,
app/bin/serve: port 8080, ``/ping`` and ``/invocations``), with the model's environment:
``MODEL_URI`` and ``MODEL_SHA256`` exactly as ECS gets them (``ModelDeployment``), so the
container reads the registry's version from S3 with the execution role and refuses a model
that does not match its pin. Callers authenticate with IAM (SigV4 on ``InvokeEndpoint``):
there is no API key on this path (design.md 10).

What is created, each child of this component:

* the execution role (``/<project>/<stack>/service/sagemaker/``, passable to SageMaker only):
  pull this repository, read the deployed model version through S3 and the stack's key,
  write the endpoint's log group, publish the endpoint's instance metrics, and with data
  capture write the capture bucket;
* the ``Model`` and the ``EndpointConfiguration``: SageMaker never changes either, so a new
  image, model version or size is a new one of each, named after a hash of its content
  (a replacement gets a new name; an unchanged one keeps its name and causes no update);
* the ``Endpoint`` (fixed name ``<prefix>``, one variant ``live``): an update is a blue/green
  deployment that shifts all traffic at once, watches the error-rate and latency alarms
  during a baking period, and rolls back to the old fleet when one fires;
* on instances: autoscaling of the variant on invocations per instance, between the
  configured counts; optionally data capture to its own encrypted bucket.

A serverless endpoint (``sagemakerServerlessMemoryMb``) scales by itself up to its maximum
concurrency and costs nothing while idle; SageMaker gives serverless endpoints no data
capture (refused by infra/config.py).

Network: none of the stack's. The endpoint runs in SageMaker's network; the container
reaches S3 for its model there, and clients reach the endpoint through SageMaker's runtime
API. A VPC would add nothing to reach (no private resource) and would need NAT gateways or
interface endpoints just to read the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.autoscaling import tracking_policy
from infra.boundary import INSTANCE_METRICS_NAMESPACE
from infra.iam import (Statement, ecr_pull_statements, policy_document, read_model_statements,
                       service_trust_policy)
from infra.image import ContainerImage
from infra.model_registry import ModelRegistry
from infra.naming import StackNames
from infra.provider import AwsContext
from infra.storage import SecureBucket, SecureBucketArgs

sagemaker = aws.sagemaker
# Blue/green: the new fleet takes all traffic, then the alarms are watched for BAKE_SECONDS
# (an alarm rolls the traffic back to the old fleet, which stays TERMINATION_WAIT longer).
BAKE_SECONDS = 300
TERMINATION_WAIT_SECONDS = 120
UPDATE_TIMEOUT_SECONDS = 1800       # SageMaker's range: 600 to 28800
CAPTURE_PREFIX = "captures"


@dataclass(frozen=True)
class EndpointCapacity:
    """Instances (type, count, autoscaling bound) or serverless (memory, concurrency)."""

    instance_type: str
    instance_count: int
    max_instance_count: int
    invocations_per_instance: int          # per minute: the autoscaling target
    serverless_memory_mb: int = 0          # > 0: a serverless endpoint
    serverless_max_concurrency: int = 1

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb > 0

    @property
    def workers(self) -> int:
        """App workers per container: one per vCPU (design.md 6). EC2 sizes: medium and large
        have 2 vCPUs, xlarge 4, Nxlarge 4N. SageMaker recommends one worker for serverless."""
        if self.serverless:
            return 1
        size = self.instance_type.rsplit(".", 1)[-1]
        if size.endswith("xlarge"):
            return min(64, 4 * int(size.removesuffix("xlarge") or 1))
        return 2


@dataclass
class SageMakerEndpointArgs:
    """What the endpoint runs (the image, the registry's model deployment) and with what."""

    context: AwsContext
    names: StackNames                       # the endpoint, its variant, its log group
    capacity: EndpointCapacity
    image: ContainerImage                   # its digest, and its repository to pull from
    registry: ModelRegistry                 # the model deployment (environment, objects)
    kms_key_arn: pulumi.Input[str]
    log_group: aws.cloudwatch.LogGroup      # /aws/sagemaker/Endpoints/<endpoint>
    rollback_alarm_names: Sequence[pulumi.Input[str]]
    data_capture_percent: int = 0           # 0: no capture
    log_retention_days: int = 30            # captured requests are kept as long as logs
    protect: bool = True
    access_log_bucket: pulumi.Input[str] | None = None


def content_name(prefix: str, kind: str, content: Any) -> pulumi.Output[str]:
    """``<prefix>-<kind>-<8 hex>``: a name that changes exactly when ``content`` does (every
    input of a resource SageMaker cannot update, so a replacement never reuses the name)."""
    return pulumi.Output.json_dumps(content).apply(
        lambda text: f"{prefix}-{kind}-{hashlib.sha256(text.encode()).hexdigest()[:8]}")


def execution_statements(args: SageMakerEndpointArgs,
                         capture_bucket_arn: pulumi.Input[str] | None) -> list[Statement]:
    """SageMaker hosting the container: the image, the model, the logs, instance metrics,
    and (with data capture) the capture bucket. Exact ARNs; "*" only where AWS has no
    resource-level permission, each time narrowed by a condition."""
    group = args.log_group.arn
    statements: list[Statement] = [
        *ecr_pull_statements(args.image.repository_arn),
        *read_model_statements(args.context, args.registry.deployment.object_arns,
                               args.kms_key_arn),
        {
            # SageMaker creates the group if missing (it exists: the stack made it first,
            # with its key and retention) and one stream per instance.
            "Sid": "WriteTheEndpointsLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                       "logs:PutLogEvents"],
            "Resource": [group, pulumi.Output.concat(group, ":log-stream:*")],
        },
        {
            # PutMetricData has no resource-level permission: "*", for the endpoint's
            # instance metrics namespace only.
            "Sid": "PublishInstanceMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": INSTANCE_METRICS_NAMESPACE}},
        },
    ]
    if capture_bucket_arn is not None:
        statements += [
            {
                "Sid": "WriteCapturedData",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(capture_bucket_arn, f"/{CAPTURE_PREFIX}/*"),
            },
            {
                "Sid": "EncryptCapturedData",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": args.kms_key_arn,
                "Condition": {"StringEquals": {
                    "kms:ViaService": args.context.service_principal("s3")}},
            },
        ]
    return statements


def container_environment(args: SageMakerEndpointArgs) -> dict[str, pulumi.Input[str]]:
    """The model container's environment: the model deployment, as on ECS, and the settings
    ECS passes too (region for S3, log level, metrics namespace, workers)."""
    return {
        "AWS_REGION": args.context.region,
        **args.registry.deployment.app_environment(args.names.metrics_namespace),
        "WEB_CONCURRENCY": str(args.capacity.workers),
    }


def production_variant(args: SageMakerEndpointArgs,
                       model_name: pulumi.Input[str]) -> dict[str, Any]:
    """The endpoint's one variant (``EndpointConfigurationProductionVariantArgs`` fields)."""
    capacity = args.capacity
    variant: dict[str, Any] = {"variant_name": args.names.endpoint_variant,
                               "model_name": model_name, "initial_variant_weight": 1}
    if capacity.serverless:
        variant["serverless_config"] = {"memory_size_in_mb": capacity.serverless_memory_mb,
                                        "max_concurrency": capacity.serverless_max_concurrency}
    else:
        variant.update(instance_type=capacity.instance_type,
                       initial_instance_count=capacity.instance_count,
                       # The model loads in under 2 s; SageMaker's default waits much longer.
                       container_startup_health_check_timeout_in_seconds=120)
    return variant


class SageMakerEndpoint(pulumi.ComponentResource):
    """Execution role, model, endpoint configuration, endpoint (blue/green with automatic
    rollback), variant autoscaling and optional data capture."""

    endpoint_name: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]
    model_name: pulumi.Output[str]
    invocation_url: pulumi.Output[str]
    capture_bucket: aws.s3.Bucket | None

    def __init__(self, name: str, args: SageMakerEndpointArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:SageMakerEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx, names = args.context, args.names

        self.capture_bucket = SecureBucket(f"{name}-captures", SecureBucketArgs(
            kms_key_arn=args.kms_key_arn, noncurrent_days=7,
            # Captured requests are the callers' data: kept as long as the logs, no longer.
            expire_days=args.log_retention_days, protect=args.protect,
            access_log_bucket=args.access_log_bucket), opts=child).bucket \
            if args.data_capture_percent else None

        role, role_policy = self._execution_role(name, args)
        model = self._model(name, args, role, role_policy)
        variant = production_variant(args, model.name)
        capture = self._data_capture(args)
        config = sagemaker.EndpointConfiguration(
            f"{name}-config",
            name=content_name(names.prefix, "config", [variant, capture]),
            production_variants=[sagemaker.EndpointConfigurationProductionVariantArgs(
                **variant)],
            data_capture_config=capture, opts=child)
        endpoint = self._endpoint(name, args, config)
        if not args.capacity.serverless and \
                args.capacity.max_instance_count > args.capacity.instance_count:
            self._autoscaling(name, args, endpoint)

        self.endpoint_name = endpoint.name
        self.endpoint_config_name = config.name
        self.model_name = model.name
        self.invocation_url = pulumi.Output.all(ctx.dns_suffix, endpoint.name).apply(
            lambda a: f"https://runtime.sagemaker.{ctx.region}.{a[0]}/endpoints/{a[1]}"
                      "/invocations")
        self.register_outputs({"endpoint_name": self.endpoint_name,
                               "endpoint_config_name": self.endpoint_config_name,
                               "invocation_url": self.invocation_url})

    def _execution_role(self, name: str, args: SageMakerEndpointArgs
                        ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        # Under the service-role path for SageMaker: passable to SageMaker only, and the only
        # roles of this kind the deploy role may change (infra/boundary.py).
        role = aws.iam.Role(
            f"{name}-execution", description="SageMaker hosts the model: image, model, logs",
            path=args.names.service_role_path("sagemaker"),
            assume_role_policy=service_trust_policy("sagemaker.amazonaws.com", ctx,
                                                    ctx.arn("sagemaker", "*")),
            opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-execution", role=role.id, policy=policy_document(execution_statements(
                args, self.capture_bucket.arn if self.capture_bucket else None)), opts=child)
        return role, role_policy

    def _model(self, name: str, args: SageMakerEndpointArgs, role: aws.iam.Role,
               role_policy: aws.iam.RolePolicy) -> sagemaker.Model:
        container = {"image": args.image.image_ref, "mode": "SingleModel",
                     "environment": container_environment(args)}
        return sagemaker.Model(
            f"{name}-model",
            name=content_name(args.names.prefix, "model", [container, role.arn]),
            execution_role_arn=role.arn,
            primary_container=sagemaker.ModelPrimaryContainerArgs(**container),
            # The container reads its model from S3 itself (as on ECS); network isolation
            # would take that away.
            enable_network_isolation=False,
            # SageMaker checks the role when the model is created: its policy first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]))

    def _endpoint(self, name: str, args: SageMakerEndpointArgs,
                  config: sagemaker.EndpointConfiguration) -> sagemaker.Endpoint:
        """Blue/green: the new fleet takes all traffic after the bake, and the alarms roll
        it back."""
        return sagemaker.Endpoint(
            f"{name}-endpoint", name=args.names.endpoint, endpoint_config_name=config.name,
            deployment_config=sagemaker.EndpointDeploymentConfigArgs(
                blue_green_update_policy=sagemaker.
                EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
                    traffic_routing_configuration=sagemaker.
                    EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                        type="ALL_AT_ONCE", wait_interval_in_seconds=BAKE_SECONDS),
                    termination_wait_in_seconds=TERMINATION_WAIT_SECONDS,
                    maximum_execution_timeout_in_seconds=UPDATE_TIMEOUT_SECONDS),
                auto_rollback_configuration=sagemaker.
                EndpointDeploymentConfigAutoRollbackConfigurationArgs(alarms=[
                    sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(
                        alarm_name=alarm) for alarm in args.rollback_alarm_names])),
            opts=pulumi.ResourceOptions(parent=self))

    def _data_capture(self, args: SageMakerEndpointArgs) -> dict[str, Any] | None:
        """Requests and responses, a sample of them, to the capture bucket under the key."""
        if self.capture_bucket is None:
            return None
        return {
            "enable_capture": True,
            "initial_sampling_percentage": args.data_capture_percent,
            "destination_s3_uri": pulumi.Output.concat(
                "s3://", self.capture_bucket.bucket, f"/{CAPTURE_PREFIX}"),
            "kms_key_id": args.kms_key_arn,
            "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
            # Keep JSON and CSV bodies readable in the captured files (not base64).
            "capture_content_type_header": {"csv_content_types": ["text/csv"],
                                            "json_content_types": ["application/json"]},
        }

    def _autoscaling(self, name: str, args: SageMakerEndpointArgs,
                     endpoint: sagemaker.Endpoint) -> None:
        """Target tracking on invocations per instance (per minute), between the counts."""
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="sagemaker",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=pulumi.Output.concat("endpoint/", endpoint.name, "/variant/",
                                             args.names.endpoint_variant),
            min_capacity=args.capacity.instance_count,
            max_capacity=args.capacity.max_instance_count, opts=child)
        # Invocations per instance per minute, with the ECS service's cooldowns.
        tracking_policy(f"{name}-invocations", target, args.capacity.invocations_per_instance,
                        "SageMakerVariantInvocationsPerInstance", opts=child)
