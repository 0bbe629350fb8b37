"""Observability: the service's log group, the alarm topic, alarms, and a dashboard.

Built before the service, because the service's deployments watch two of these alarms
(error rate and p99 latency) and roll back when one fires; the names of the cluster and the
service are fixed strings for the same reason. Every alarm notifies the KMS-encrypted SNS
topic (and the on-call address, if configured) on ALARM and on OK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import deny_insecure_transport, policy_document
from infra.provider import AwsContext

cloudwatch = aws.cloudwatch
PERIOD = 60                   # seconds per datapoint for every alarm
CPU_MEMORY_ALARM_PERCENT = 85  # autoscaling targets 60/70 %: sustained 85 % means it cannot keep up
ERROR_LINES_PER_5_MIN = 5
ERROR_LINES_METRIC = "ErrorLogLines"


@dataclass
class MonitoringArgs:
    context: AwsContext
    prefix: str                          # <project>-<stack>: alarm and dashboard names
    cluster_name: str
    service_name: str
    log_group_name: str
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    metrics_namespace: str               # the app's EMF namespace (and the error-line metric's)
    model_name: str
    model_version: str
    error_rate_percent: int
    latency_p99_ms: int
    alarm_email: str | None = None
    # Service principals (besides CloudWatch) allowed to publish to the topic, e.g. for
    # the delivery pipeline's notifications.
    extra_topic_publishers: tuple[str, ...] = ()


@dataclass
class _Alarm:
    key: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class Monitoring(pulumi.ComponentResource):
    """Log group, error-line metric filter, SNS topic, alarms and dashboard."""

    log_group: cloudwatch.LogGroup
    topic: aws.sns.Topic
    topic_arn: pulumi.Output[str]
    deployment_alarm_names: list[pulumi.Output[str]]
    alarm_names: list[pulumi.Output[str]]
    dashboard_name: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.context

        self.log_group = cloudwatch.LogGroup(
            f"{name}-service-logs", name=args.log_group_name,
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)
        cloudwatch.LogMetricFilter(
            f"{name}-error-lines", log_group_name=self.log_group.name,
            pattern='{ $.level = "ERROR" }',
            metric_transformation=cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=ERROR_LINES_METRIC, namespace=args.metrics_namespace, value="1",
                default_value="0", unit="Count"),
            opts=child)

        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=args.kms_key_arn,
                                   opts=child)
        publishers = ("cloudwatch.amazonaws.com", *args.extra_topic_publishers)
        aws.sns.TopicPolicy(f"{name}-alarms", arn=self.topic.arn, policy=policy_document([
            {
                "Sid": "AwsServicesOfThisAccountPublish",
                "Effect": "Allow",
                "Principal": {"Service": list(publishers)},
                "Action": "sns:Publish",
                "Resource": self.topic.arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
            },
            deny_insecure_transport([self.topic.arn], actions="sns:Publish"),
        ]), opts=child)
        if args.alarm_email:
            aws.sns.TopicSubscription(f"{name}-alarm-email", topic=self.topic.arn,
                                      protocol="email", endpoint=args.alarm_email, opts=child)
        self.topic_arn = self.topic.arn

        alarms = self._define_alarms(args)
        created = {a.key: cloudwatch.MetricAlarm(
            f"{name}-{a.key}", name=f"{args.prefix}-{a.key}", alarm_description=a.description,
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            opts=child, **a.kwargs) for a in alarms}
        self.alarm_names = [alarm.name for alarm in created.values()]
        # What a bad deployment shows first; ECS rolls the deployment back when one fires.
        self.deployment_alarm_names = [created["error-rate"].name, created["latency-p99"].name]

        dashboard = cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=args.prefix,
            dashboard_body=self._dashboard(args, created), opts=child)
        self.dashboard_name = dashboard.dashboard_name
        self.dashboard_url = dashboard.dashboard_name.apply(
            lambda n: f"https://{ctx.region}.console.aws.amazon.com/cloudwatch/home"
                      f"?region={ctx.region}#dashboards:name={n}")
        self.register_outputs({"topic_arn": self.topic_arn, "dashboard_url": self.dashboard_url,
                               "log_group": self.log_group.name})

    def _define_alarms(self, args: MonitoringArgs) -> list[_Alarm]:
        alb = {"LoadBalancer": args.alb_arn_suffix}
        target = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.target_group_arn_suffix}
        service = {"ClusterName": args.cluster_name, "ServiceName": args.service_name}

        def metric(query_id: str, namespace: str, metric_name: str, dims: dict, stat: str = "Sum"):
            return cloudwatch.MetricAlarmMetricQueryArgs(
                id=query_id, return_data=False,
                metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=namespace, metric_name=metric_name, dimensions=dims,
                    period=PERIOD, stat=stat))

        # Two of three minutes: fast enough to stop a bad deployment, deaf to a single blip.
        fast = {"evaluation_periods": 3, "datapoints_to_alarm": 2}
        return [
            _Alarm("error-rate", f"5xx responses above {args.error_rate_percent}% of requests "
                   "(load balancer and targets); rolls a deployment back", {
                       "comparison_operator": "GreaterThanThreshold",
                       "threshold": args.error_rate_percent, "treat_missing_data": "notBreaching",
                       "metric_queries": [
                           metric("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", target),
                           metric("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", alb),
                           metric("requests", "AWS/ApplicationELB", "RequestCount", alb),
                           cloudwatch.MetricAlarmMetricQueryArgs(
                               id="rate", label="5xx %", return_data=True,
                               expression="IF(requests > 0, 100 * (FILL(target5xx, 0) + "
                                          "FILL(elb5xx, 0)) / requests, 0)"),
                       ], **fast}),
            _Alarm("latency-p99", f"target response time p99 above {args.latency_p99_ms} ms; "
                   "rolls a deployment back", {
                       "namespace": "AWS/ApplicationELB", "metric_name": "TargetResponseTime",
                       "dimensions": target, "extended_statistic": "p99", "period": PERIOD,
                       "comparison_operator": "GreaterThanThreshold",
                       "threshold": args.latency_p99_ms / 1000,
                       "treat_missing_data": "notBreaching", **fast}),
            _Alarm("unhealthy-targets", "a target failed the load balancer's readiness check "
                   "for 3 minutes", {
                       "namespace": "AWS/ApplicationELB", "metric_name": "UnHealthyHostCount",
                       "dimensions": target, "statistic": "Maximum", "period": PERIOD,
                       "comparison_operator": "GreaterThanThreshold", "threshold": 0,
                       "evaluation_periods": 3, "treat_missing_data": "notBreaching"}),
            *[_Alarm(f"{what}-high", f"service {what} above {CPU_MEMORY_ALARM_PERCENT}% for 5 "
                     "minutes (scaling is not keeping up, or is at maxCount)", {
                         "namespace": "AWS/ECS", "metric_name": metric_name,
                         "dimensions": service, "statistic": "Average", "period": PERIOD,
                         "comparison_operator": "GreaterThanThreshold",
                         "threshold": CPU_MEMORY_ALARM_PERCENT, "evaluation_periods": 5,
                         "treat_missing_data": "missing"})
              for what, metric_name in (("cpu", "CPUUtilization"),
                                        ("memory", "MemoryUtilization"))],
            _Alarm("tasks-below-desired", "fewer running tasks than desired for 5 minutes "
                   "(tasks crash, cannot start, or Spot capacity was reclaimed)", {
                       "comparison_operator": "GreaterThanThreshold", "threshold": 0,
                       "evaluation_periods": 5, "treat_missing_data": "missing",
                       "metric_queries": [
                           metric("desired", "ECS/ContainerInsights", "DesiredTaskCount",
                                  service, "Average"),
                           metric("running", "ECS/ContainerInsights", "RunningTaskCount",
                                  service, "Average"),
                           cloudwatch.MetricAlarmMetricQueryArgs(
                               id="missing", label="desired - running", return_data=True,
                               expression="desired - running"),
                       ]}),
            _Alarm("error-log-lines", f"{ERROR_LINES_PER_5_MIN} or more ERROR log lines in 5 "
                   "minutes", {
                       "namespace": args.metrics_namespace, "metric_name": ERROR_LINES_METRIC,
                       "statistic": "Sum", "period": 300,
                       "comparison_operator": "GreaterThanOrEqualToThreshold",
                       "threshold": ERROR_LINES_PER_5_MIN, "evaluation_periods": 1,
                       "treat_missing_data": "notBreaching"}),
        ]

    def _dashboard(self, args: MonitoringArgs,
                   alarms: dict[str, cloudwatch.MetricAlarm]) -> pulumi.Output[str]:
        region = args.context.region
        lb, tg = args.alb_arn_suffix, args.target_group_arn_suffix
        svc = ["ClusterName", args.cluster_name, "ServiceName", args.service_name]
        model = ["Model", args.model_name, "ModelVersion", args.model_version]

        def widget(title: str, metrics: list, x: int, y: int, **props: Any) -> dict:
            return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                    "properties": {"title": title, "region": region, "view": "timeSeries",
                                   "period": PERIOD, "metrics": metrics, **props}}

        body = {"widgets": [
            {"type": "alarm", "x": 0, "y": 0, "width": 24, "height": 3,
             "properties": {"title": "Alarms", "alarms": [a.arn for a in alarms.values()]}},
            widget("Requests and 5xx", [
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", lb, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", lb,
                 "TargetGroup", tg, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb,
                 {"stat": "Sum"}]], 0, 3),
            widget("Target response time (s)", [
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", lb,
                 "TargetGroup", tg, {"stat": "p50"}],
                [".", ".", ".", ".", ".", ".", {"stat": "p99"}]], 12, 3),
            widget("Tasks", [
                ["ECS/ContainerInsights", "RunningTaskCount", *svc, {"stat": "Average"}],
                ["ECS/ContainerInsights", "DesiredTaskCount", *svc, {"stat": "Average"}],
                ["AWS/ApplicationELB", "HealthyHostCount", "LoadBalancer", lb,
                 "TargetGroup", tg, {"stat": "Minimum"}]], 0, 9),
            widget("CPU and memory (%)", [
                ["AWS/ECS", "CPUUtilization", *svc, {"stat": "Average"}],
                ["AWS/ECS", "MemoryUtilization", *svc, {"stat": "Average"}]], 12, 9),
            widget(f"Model {args.model_name} v{args.model_version}: predictions", [
                [args.metrics_namespace, "PredictionRequests", *model, {"stat": "Sum"}],
                [args.metrics_namespace, "PredictionErrors", *model, {"stat": "Sum"}],
                [args.metrics_namespace, ERROR_LINES_METRIC, {"stat": "Sum"}]], 0, 15),
            widget("Model latency (ms)", [
                [args.metrics_namespace, "PredictionLatency", *model, {"stat": "p50"}],
                [args.metrics_namespace, "PredictionLatency", *model, {"stat": "p99"}]], 12, 15),
        ]}
        return pulumi.Output.json_dumps(body)
