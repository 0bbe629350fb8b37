"""Target-tracking autoscaling of the service's task count on CPU, memory and requests.

Three policies, each keeping one signal near its target; ECS scales out when any of them
asks and in only when all agree. Scale-out reacts within a minute (a task is ready in about
30 s: image pull plus a model load under 2 s); scale-in waits five minutes so a burst does
not make the count oscillate.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

CPU_TARGET_PERCENT = 60        # inference is CPU-bound: leave headroom for bursts
MEMORY_TARGET_PERCENT = 70
SCALE_OUT_COOLDOWN = 60
SCALE_IN_COOLDOWN = 300


@dataclass
class AutoscalingArgs:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    min_count: int
    max_count: int
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    requests_per_target: int          # per task per minute


class Autoscaling(pulumi.ComponentResource):
    """Scalable target with min/max from config, and three target-tracking policies."""

    def __init__(self, name: str, args: AutoscalingArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Autoscaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-target", service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", args.service_name),
            min_capacity=args.min_count, max_capacity=args.max_count, opts=child)

        tracking_policy(f"{name}-cpu", target, CPU_TARGET_PERCENT,
                        "ECSServiceAverageCPUUtilization", opts=child)
        tracking_policy(f"{name}-memory", target, MEMORY_TARGET_PERCENT,
                        "ECSServiceAverageMemoryUtilization", opts=child)
        tracking_policy(f"{name}-requests", target, args.requests_per_target,
                        "ALBRequestCountPerTarget", pulumi.Output.concat(
                            args.alb_arn_suffix, "/", args.target_group_arn_suffix), opts=child)
        self.register_outputs({"min": args.min_count, "max": args.max_count})


def tracking_policy(name: str, target: aws.appautoscaling.Target, target_value: float,
                    metric_type: str, resource_label: pulumi.Input[str] | None = None, *,
                    opts: pulumi.ResourceOptions) -> aws.appautoscaling.Policy:
    """A target-tracking policy on one predefined metric of a scalable target, with this
    module's cooldowns (the ECS service's policies, SageMaker's variant's)."""
    return aws.appautoscaling.Policy(
        name, policy_type="TargetTrackingScaling",
        resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
        service_namespace=target.service_namespace,
        target_tracking_scaling_policy_configuration=aws.appautoscaling.
        PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=target_value,
            predefined_metric_specification=aws.appautoscaling.
            PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type=metric_type, resource_label=resource_label),
            scale_out_cooldown=SCALE_OUT_COOLDOWN, scale_in_cooldown=SCALE_IN_COOLDOWN),
        opts=opts)
