"""ml-app: one stack per environment (dev, staging, prod), see docs/architecture.md.

Load and validate the stack's configuration (nothing is created if it is invalid), build
the components in dependency order, export what operators and the pipeline need. Where the
image runs is the stack's ``target`` (docs/targets.md): ECS Fargate behind a load balancer,
a SageMaker endpoint, or a Lambda function; one component per target, and only the pieces
that target needs (the VPC, NAT, load balancer, WAF and API key are ECS's).
"""

from dataclasses import dataclass
from typing import Any

import pulumi

from infra import config
from infra.audit_logs import AuditLogs, AuditLogsArgs
from infra.autoscaling import Autoscaling, AutoscalingArgs
from infra.boundary import (Outside, PermissionsBoundary, PermissionsBoundaryArgs, Promotion,
                            Target, every_role_carries)
from infra.encryption import Encryption, EncryptionArgs
from infra.function import FunctionSize, LambdaFunction, LambdaFunctionArgs
from infra.image import ContainerImage, ContainerImageArgs, lambda_pull_statement
from infra.load_balancer import LoadBalancer, LoadBalancerArgs
from infra.model_registry import ModelRegistry, ModelRegistryArgs
from infra.monitoring import Monitoring, MonitoringArgs
from infra.network import Network, NetworkArgs
from infra.pipeline import (Pipeline, PipelineArgs, StateBackend, Upstream, key_statements,
                            topic_publishers)
from infra.provider import aws_context, tagged_provider
from infra.sagemaker import EndpointCapacity, SageMakerEndpoint, SageMakerEndpointArgs
from infra.secrets import ApiKey, ApiKeyArgs
from infra.service import CONTAINER_PORT, Capacity, Service, ServiceArgs
from infra.waf import Firewall, FirewallArgs, WafLogging

cfg = config.load()
names = cfg.names                      # every physical name, log group and tag of the stack
provider = tagged_provider(cfg)
ctx = aws_context(cfg, provider)
# Every component, and so every resource in it, uses the stack's tagged provider.
use_provider = pulumi.ResourceOptions(providers=[provider])
name = names.prefix
region = cfg.region
console = f"https://{region}.console.aws.amazon.com"       # links in the stack outputs
target = Target(cfg.target, cfg.lambda_url_auth)
on_ecs = cfg.target == "ecs"
# The Route 53 records of domainName are the load balancer's: ECS only.
hosted_zone_id = cfg.hosted_zone_id if on_ecs else None

backend = StateBackend(cfg.pulumi_backend, token_secret=cfg.pulumi_access_token_secret,
                       state_bucket=cfg.pulumi_state_bucket,
                       secrets_key_arn=cfg.pulumi_secrets_key_arn)
# Promotion (docs/pipeline.md): this stack's source is what the upstream stack verified,
# and/or it publishes what it verified to the downstream stack's bucket.
upstream = Upstream(cfg.promoted_from, cfg.upstream_account_id) \
    if cfg.promoted_from and cfg.upstream_account_id else None
promotes_to = Promotion(names.of(cfg.promotes_to).promotion_bucket(cfg.downstream_account_id),
                        cfg.downstream_account_id) \
    if cfg.promotes_to and cfg.downstream_account_id else None

# First: the permissions boundary that every IAM role of the stack carries (the pipeline's
# deploy role may create no role without it). Applies to every role created after this line.
boundary = PermissionsBoundary(name, PermissionsBoundaryArgs(ctx, names, Outside(
    s3=tuple(ctx.arn("s3", f"{cfg.pulumi_state_bucket}{suffix}", region=False, account=False)
             for suffix in ("", "/*")) if backend.kind == "s3" else (),
    secrets=(backend.token_secret_arn(ctx),) if backend.kind == "cloud" else (),
    keys=(cfg.pulumi_secrets_key_arn,) if backend.kind == "s3" else (),
    connection=cfg.codestar_connection_arn, hosted_zone_id=hosted_zone_id,
    groups=tuple(a for a in cfg.approvers if ":group/" in a),
    promotes_to=promotes_to,
    promoted=upstream is not None), target=target),
    opts=use_provider)
every_role_carries(boundary.arn)

key_arn = Encryption(name, EncryptionArgs(
    context=ctx, names=names, protect=cfg.protect_data,
    additional_statements=key_statements(ctx, names, upstream),
    more_log_groups=(names.sagemaker_log_group,) if cfg.target == "sagemaker" else ()),
    opts=use_provider).key_arn

# Audit logs (staging and prod): ALB access logs (ECS) and the buckets' S3 server access
# logs; WAF's go to CloudWatch Logs (below).
audit = AuditLogs(name, AuditLogsArgs(
    context=ctx, names=names, retention_days=cfg.log_retention_days,
    object_lock=cfg.production, alb_bucket_name=cfg.audit_log_bucket,
    protect=cfg.protect_data, alb=on_ecs), opts=use_provider) if cfg.audit_logs else None
access_log_bucket = audit.access_log_bucket.bucket if audit else None

registry = ModelRegistry(name, ModelRegistryArgs(
    kms_key_arn=key_arn, models=cfg.models, protect=cfg.protect_data,
    access_log_bucket=access_log_bucket), opts=use_provider)

image = ContainerImage(name, ContainerImageArgs(
    kms_key_arn=key_arn, context=config.ROOT, protect=cfg.protect_data,
    pusher_arn=ctx.arn("iam", f"role/{names.pipeline_role('deploy-build')}", region=False),
    # Lambda pulls the image through the repository's policy (ECS and SageMaker with their
    # execution roles).
    pull_statements=[lambda_pull_statement(ctx.arn("lambda", f"function:{names.function}"))]
    if cfg.target == "lambda" else []),
    opts=use_provider)


def monitoring_for(**watched: Any) -> Monitoring:
    """The log group, alarms and dashboard of the target (``watched``: what ECS's alarms
    need from its load balancer)."""
    return Monitoring(name, MonitoringArgs(
        context=ctx, names=names, log_retention_days=cfg.log_retention_days, kms_key_arn=key_arn,
        models=cfg.models, error_rate_percent=cfg.alarm_error_rate_percent,
        latency_p99_ms=cfg.alarm_latency_p99_ms, alarm_email=cfg.alarm_email,
        extra_topic_publishers=topic_publishers(ctx), target=cfg.target, **watched),
        opts=use_provider)


@dataclass
class Served:
    """What the target's components give the rest of the program: its monitoring (the
    pipeline notifies its topic), its stack outputs, its console page."""

    monitoring: Monitoring
    outputs: dict[str, Any]
    console_page: pulumi.Input[str]


# --- Serving: one component per target (docs/targets.md) ----------------------------------
def serve_on_ecs() -> Served:
    """Fargate tasks in private subnets behind the ALB (and WAF), with the API key: the VPC,
    its NAT gateways and endpoints exist for these tasks."""
    network = Network(name, NetworkArgs(
        context=ctx, names=names, cidr=cfg.vpc_cidr, zone_count=cfg.availability_zones,
        nat_gateways=cfg.nat_gateways, interface_endpoints=cfg.vpc_endpoints,
        flow_logs=cfg.flow_logs, log_retention_days=cfg.log_retention_days,
        kms_key_arn=key_arn), opts=use_provider)
    api_key = ApiKey(name, ApiKeyArgs(kms_key_arn=key_arn), opts=use_provider) \
        if cfg.api_key_enabled else None
    lb = LoadBalancer(name, LoadBalancerArgs(
        vpc_id=network.vpc_id, public_subnet_ids=network.public_subnet_ids,
        allowed_cidrs=cfg.allowed_cidrs, container_port=CONTAINER_PORT,
        certificate_arn=cfg.certificate_arn, domain_name=cfg.domain_name,
        hosted_zone_id=cfg.hosted_zone_id, deletion_protection=cfg.protect_data,
        task_egress=network.task_egress,
        access_log_bucket=audit.alb_bucket.bucket if audit else None,
        access_log_ready=audit.ready if audit else ()), opts=use_provider)
    if cfg.waf_enabled:
        Firewall(name, FirewallArgs(
            load_balancer_arn=lb.alb.arn, rate_limit=cfg.waf_rate_limit,
            metric_prefix=names.prefix,
            logging=WafLogging(ctx, names, key_arn, cfg.log_retention_days)
            if cfg.audit_logs else None), opts=use_provider)
    monitoring = monitoring_for(alb_arn_suffix=lb.alb.arn_suffix,
                                target_group_arn_suffix=lb.target_group.arn_suffix)
    service = Service(name, ServiceArgs(
        context=ctx, names=names, capacity=Capacity(
            cpu=cfg.cpu, memory=cfg.memory, desired_count=cfg.desired_count,
            on_demand_base=cfg.fargate_base, on_demand_weight=cfg.fargate_weight,
            spot_weight=cfg.fargate_spot_weight),
        image=image, registry=registry, kms_key_arn=key_arn, log_group=monitoring.log_group,
        private_subnet_ids=network.private_subnet_ids, load_balancer=lb,
        deployment_alarm_names=monitoring.deployment_alarm_names,
        api_key_secret_arn=api_key.secret_arn if api_key else None), opts=use_provider)
    Autoscaling(name, AutoscalingArgs(
        cluster_name=service.cluster_name, service_name=service.service_name,
        min_count=cfg.min_count, max_count=cfg.max_count, alb_arn_suffix=lb.alb.arn_suffix,
        target_group_arn_suffix=lb.target_group.arn_suffix,
        requests_per_target=cfg.scale_requests_per_target), opts=use_provider)
    outputs: dict[str, Any] = {
        "serviceUrl": lb.url, "albDnsName": lb.alb.dns_name,
        "clusterName": service.cluster_name, "serviceName": service.service_name,
        "taskDefinitionArn": service.task_definition_arn}
    if api_key:
        outputs["apiKeySecretName"] = api_key.secret_name
    return Served(monitoring, outputs, pulumi.Output.concat(
        f"{console}/ecs/v2/clusters/", service.cluster_name, "/services/",
        service.service_name, f"/health?region={region}"))


def serve_on_sagemaker() -> Served:
    """A SageMaker endpoint (instances with autoscaling, or serverless): no network of the
    stack's, callers sign InvokeEndpoint with IAM."""
    monitoring = monitoring_for()
    endpoint = SageMakerEndpoint(name, SageMakerEndpointArgs(
        context=ctx, names=names, capacity=EndpointCapacity(
            instance_type=cfg.sagemaker_instance_type,
            instance_count=cfg.sagemaker_instance_count,
            max_instance_count=cfg.sagemaker_max_instance_count,
            invocations_per_instance=cfg.scale_requests_per_target,
            serverless_memory_mb=cfg.sagemaker_serverless_memory_mb,
            serverless_max_concurrency=cfg.sagemaker_serverless_max_concurrency),
        image=image, registry=registry, kms_key_arn=key_arn, log_group=monitoring.log_group,
        rollback_alarm_names=monitoring.deployment_alarm_names,
        data_capture_percent=cfg.sagemaker_data_capture_percent,
        log_retention_days=cfg.log_retention_days, protect=cfg.protect_data,
        access_log_bucket=access_log_bucket), opts=use_provider)
    outputs: dict[str, Any] = {
        "endpointName": endpoint.endpoint_name,
        "endpointConfigName": endpoint.endpoint_config_name,
        "invocationUrl": endpoint.invocation_url}
    if endpoint.capture_bucket is not None:
        outputs["dataCaptureBucket"] = endpoint.capture_bucket.bucket
    return Served(monitoring, outputs, endpoint.endpoint_name.apply(
        lambda e: f"{console}/sagemaker/home?region={region}#/endpoints/{e}"))


def serve_on_lambda() -> Served:
    """A Lambda function behind a Function URL on its live alias: no network of the
    stack's, callers sign with IAM unless lambdaUrlAuth is NONE."""
    monitoring = monitoring_for()
    function = LambdaFunction(name, LambdaFunctionArgs(
        context=ctx, names=names, size=FunctionSize(
            memory_mb=cfg.lambda_memory_mb, timeout_seconds=cfg.lambda_timeout_seconds,
            ephemeral_storage_mb=cfg.lambda_ephemeral_storage_mb,
            reserved_concurrency=cfg.lambda_reserved_concurrency,
            provisioned_concurrency=cfg.lambda_provisioned_concurrency),
        image=image, registry=registry, kms_key_arn=key_arn, log_group=monitoring.log_group,
        url_auth=cfg.lambda_url_auth), opts=use_provider)
    return Served(monitoring, {
        "serviceUrl": function.url, "functionName": function.function_name,
        "functionAlias": function.alias_name, "functionVersion": function.function_version},
        function.function_name.apply(
            lambda f: f"{console}/lambda/home?region={region}#/functions/{f}/aliases/"
                      f"{names.function_alias}"))


served = {"ecs": serve_on_ecs, "sagemaker": serve_on_sagemaker,
          "lambda": serve_on_lambda}[cfg.target]()
monitoring = served.monitoring

# --- Delivery pipeline (infra/pipeline.py, docs/pipeline.md) ------------------------------
# Source -> Test -> Preview -> Approval -> Deploy (`pulumi up` of this program, then the
# smoke test against serviceUrl). Its notifications go to the alarm topic, encrypted with
# the stack key (both let CodeStar Notifications in, above).
delivery = Pipeline(name, PipelineArgs(
    context=ctx, names=names, kms_key_arn=key_arn, alarm_topic_arn=monitoring.topic_arn,
    boundary_arn=boundary.arn, repository=cfg.github_repository, branch=cfg.pipeline_branch,
    target=target, approval_required=cfg.require_approval, backend=backend,
    approvers=cfg.approvers,
    upstream=upstream, promotes_to=promotes_to, access_log_bucket=access_log_bucket,
    connection_arn=cfg.codestar_connection_arn,
    github_oidc_provider_arn=cfg.github_oidc_provider_arn,
    domain_name=cfg.domain_name if on_ecs else None, hosted_zone_id=hosted_zone_id,
    log_retention_days=cfg.log_retention_days,
    protect=cfg.protect_data), opts=use_provider)

# --- Outputs (docs/deploy.md lists each) ---------------------------------------------------
pulumi.export("target", cfg.target)
for key, value in served.outputs.items():
    pulumi.export(key, value)
pulumi.export("ecrRepositoryUrl", image.repository_url)
pulumi.export("imageRef", image.image_ref)
pulumi.export("imageTag", image.tag)
# The deployed model versions, the default first: MODEL_URI and MODEL_SHA256 as every target
# gets them, and ml-app:models's entries (what `make smoke` checks the service serves).
pulumi.export("modelUri", registry.deployment.environment["MODEL_URI"])
pulumi.export("modelManifestSha256", registry.deployment.environment["MODEL_SHA256"])
pulumi.export("models", ",".join(m.entry for m in cfg.models))
pulumi.export("modelBucket", registry.bucket_name)
pulumi.export("logGroupName", monitoring.log_group.name)
pulumi.export("alarmTopicArn", monitoring.topic_arn)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
pulumi.export("kmsKeyArn", key_arn)
pulumi.export("pipelineName", delivery.pipeline.name)
if delivery.connection_arn is not None:
    pulumi.export("codestarConnectionArn", delivery.connection_arn)
if delivery.promotion_bucket is not None:
    pulumi.export("promotionBucket", delivery.promotion_bucket.bucket)
if audit:
    pulumi.export("auditLogBuckets", {
        **({"alb": audit.alb_bucket.bucket} if audit.alb_bucket else {}),
        "s3AccessLogs": audit.access_log_bucket.bucket})
pulumi.export("githubPreviewRoleArn", delivery.github_preview_role_arn)
pulumi.export("permissionsBoundaryArn", boundary.arn)
pulumi.export("consoleLinks", {
    "service": served.console_page,
    "logs": monitoring.log_group.name.apply(
        lambda g: f"{console}/cloudwatch/home?region={region}"
                  f"#logsV2:log-groups/log-group/{g.replace('/', '$252F')}"),
    "dashboard": monitoring.dashboard_url,
    "modelBucket": registry.bucket_name.apply(
        lambda b: f"https://s3.console.aws.amazon.com/s3/buckets/{b}?region={region}"),
})
