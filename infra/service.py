"""The ECS Fargate service: cluster, task definition and service, with their IAM roles.

The task runs the image by digest as uid 10001 on a read-only root filesystem (the only
writable path is an ephemeral volume on /tmp, where the model cache lives), with every Linux
capability dropped, in private subnets without a public IP. It loads the stack's model
versions from S3 and verifies each against the manifest hash given here.

Deployments are guarded twice: the ECS circuit breaker rolls back when new tasks fail to
start or to pass health checks, and the error-rate and latency alarms roll back a deployment
whose tasks are healthy but serve badly. ``wait_for_steady_state`` makes ``pulumi up`` wait
for the outcome. A rolled-back deployment is still reported as a successful update by the
provider (pulumi-aws#4487): compare the service's running task definition with the
``taskDefinitionArn`` output after a deploy (docs/deploy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.iam import ServiceRoles, ServiceRolesArgs
from infra.image import ContainerImage
from infra.load_balancer import LoadBalancer
from infra.model_registry import ModelRegistry
from infra.naming import StackNames
from infra.provider import AwsContext

CONTAINER_NAME = "app"
CONTAINER_PORT = 8080
APP_USER = "10001:10001"          # the image's "app" user
TMP_VOLUME = "tmp"
MODEL_CACHE_DIR = "/tmp/ml-app-models"
STOP_TIMEOUT = 30                 # seconds; the app drains within SERVER_GRACEFUL_TIMEOUT, 25
HEALTH_CHECK_GRACE = 60           # seconds; the model loads in under 2
HEALTH_CHECK_COMMAND = [
    "CMD", "python", "-c",
    "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("
    "'http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)",
]


@dataclass(frozen=True)
class Capacity:
    """The task's size, and how many tasks run on which Fargate capacity."""

    cpu: int
    memory: int
    desired_count: int
    on_demand_base: int          # tasks that always run on on-demand FARGATE
    on_demand_weight: int        # above the base, FARGATE : FARGATE_SPOT
    spot_weight: int

    @property
    def strategy(self) -> list[dict[str, Any]]:
        return [
            # "base" tasks always run on on-demand FARGATE; weights share the rest.
            {"capacity_provider": "FARGATE", "base": self.on_demand_base,
             "weight": self.on_demand_weight},
            # Only one provider of a strategy may declare a base.
            {"capacity_provider": "FARGATE_SPOT", "weight": self.spot_weight},
        ]


@dataclass
class ServiceArgs:
    context: AwsContext
    names: StackNames                            # cluster, service, metrics namespace
    capacity: Capacity
    image: ContainerImage                        # runs its digest, pulls from its repository
    registry: ModelRegistry                      # the model versions to load, and their bucket
    kms_key_arn: pulumi.Input[str]
    log_group: aws.cloudwatch.LogGroup
    private_subnet_ids: Sequence[pulumi.Input[str]]
    # Its target group and the tasks' security group. The service waits for it: a target
    # group can only be attached to a service once a listener uses it.
    load_balancer: LoadBalancer
    deployment_alarm_names: Sequence[pulumi.Input[str]]
    api_key_secret_arn: pulumi.Input[str] | None = None


def container_definitions(args: ServiceArgs) -> pulumi.Output[str]:
    """The task's one container. Every value ECS would otherwise default is spelled out and
    lists are sorted, so that the definition read back from AWS equals this one and a
    ``pulumi preview`` shows no phantom diff (pulumi-aws#1985)."""
    environment = {
        "AWS_REGION": args.context.region,
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        **args.registry.deployment.app_environment(args.names.metrics_namespace),
        # One sync worker per vCPU (design.md 6).
        "WEB_CONCURRENCY": str(max(1, args.capacity.cpu // 1024)),
    }
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": args.image.image_ref,
        "essential": True,
        "cpu": 0,
        "portMappings": [{"containerPort": CONTAINER_PORT, "hostPort": CONTAINER_PORT,
                          "protocol": "tcp", "name": "http", "appProtocol": "http"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "mountPoints": [{"sourceVolume": TMP_VOLUME, "containerPath": "/tmp",
                         "readOnly": False}],
        "volumesFrom": [],
        "systemControls": [],
        "user": APP_USER,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {"capabilities": {"add": [], "drop": ["ALL"]},
                            "initProcessEnabled": True},
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        "healthCheck": {"command": HEALTH_CHECK_COMMAND, "interval": 15, "timeout": 5,
                        "retries": 3, "startPeriod": HEALTH_CHECK_GRACE},
        "stopTimeout": STOP_TIMEOUT,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": args.log_group.name,
            "awslogs-region": args.context.region,
            "awslogs-stream-prefix": CONTAINER_NAME,
            # Never block the app on a slow log pipe; buffer up to 25 MB instead.
            "mode": "non-blocking",
            "max-buffer-size": "25m",
        }},
    }
    if args.api_key_secret_arn is not None:
        container["secrets"] = [{"name": "API_KEY", "valueFrom": args.api_key_secret_arn}]
    return pulumi.Output.json_dumps([container])


class Service(pulumi.ComponentResource):
    """ECS cluster with Container Insights, Fargate task definition and service."""

    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Service", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = aws.ecs.Cluster(
            f"{name}-cluster", name=args.names.cluster,
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=child)
        capacity = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity", cluster_name=cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(**s)
                for s in args.capacity.strategy],
            opts=child)
        roles = ServiceRoles(f"{name}-roles", ServiceRolesArgs(
            context=args.context, names=args.names, repository_arn=args.image.repository_arn,
            log_group_arn=args.log_group.arn,
            model_object_arns=args.registry.deployment.object_arns, kms_key_arn=args.kms_key_arn,
            api_key_secret_arn=args.api_key_secret_arn), opts=child)
        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task", family=args.names.service,
            cpu=str(args.capacity.cpu), memory=str(args.capacity.memory), network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"),
            execution_role_arn=roles.execution_role.arn, task_role_arn=roles.task_role.arn,
            # Fargate has no tmpfs: an ephemeral task-storage volume is the writable /tmp.
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=TMP_VOLUME)],
            container_definitions=container_definitions(args),
            # Keep old revisions registered so an operator can roll back to one by hand.
            skip_destroy=True,
            opts=child)
        service = self._service(name, args, cluster, task_definition, [capacity, roles])

        self.cluster_name = cluster.name
        self.service_name = service.name
        self.task_definition_arn = task_definition.arn
        self.register_outputs({"cluster_name": self.cluster_name,
                               "service_name": self.service_name,
                               "task_definition_arn": self.task_definition_arn})

    def _service(self, name: str, args: ServiceArgs, cluster: aws.ecs.Cluster,
                 task_definition: aws.ecs.TaskDefinition,
                 prerequisites: list[pulumi.Resource]) -> aws.ecs.Service:
        lb = args.load_balancer
        return aws.ecs.Service(
            f"{name}-service", name=args.names.service, cluster=cluster.arn,
            task_definition=task_definition.arn, desired_count=args.capacity.desired_count,
            capacity_provider_strategies=[aws.ecs.ServiceCapacityProviderStrategyArgs(**s)
                                          for s in args.capacity.strategy],
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.private_subnet_ids),
                security_groups=[lb.service_security_group_id], assign_public_ip=False),
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=lb.target_group.arn, container_name=CONTAINER_NAME,
                container_port=CONTAINER_PORT)],
            health_check_grace_period_seconds=HEALTH_CHECK_GRACE,
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True),
            alarms=aws.ecs.ServiceAlarmsArgs(alarm_names=list(args.deployment_alarm_names),
                                             enable=True, rollback=True),
            # Spread tasks back over the zones after a zone recovers or Spot is reclaimed.
            availability_zone_rebalancing="ENABLED",
            enable_execute_command=False, propagate_tags="SERVICE",
            enable_ecs_managed_tags=True, wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                # A strategy may only name providers already associated with the cluster
                # (CreateService fails otherwise), so the association comes first; the
                # roles' policies too: tasks need them to start, and a destroy that removed
                # them first would leave the service stuck DRAINING (the provider's docs).
                parent=self, depends_on=[lb, *prerequisites],
                # Autoscaling owns the running count after creation.
                ignore_changes=["desiredCount"],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m")))
