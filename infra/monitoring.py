"""Observability: the service's log group, the alarm topic, alarms, and a dashboard.

Built before the service, because the service's deployments watch two of these alarms
(error rate and p99 latency) and roll back when one fires; the names of the cluster and the
service are fixed strings for the same reason. Every alarm notifies the KMS-encrypted SNS
topic (and the on-call address, if configured) on ALARM and on OK.

The alarms are a table (``ALARMS``): a new alarm is one row, naming its metrics by the
dimensions they are published with (the load balancer, its target group, the ECS service,
or none for the application's own namespace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pulumi
import pulumi_aws as aws

from infra.releases import ModelVersion
from infra.iam import deny_insecure_transport, on_behalf_of_this_account, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext

cloudwatch = aws.cloudwatch
PERIOD = 60                   # seconds per datapoint for every alarm
CPU_MEMORY_ALARM_PERCENT = 85  # autoscaling targets 60/70 %: sustained 85 % means it cannot keep up
ERROR_LINES_PER_5_MIN = 5
ERROR_LINES_METRIC = "ErrorLogLines"
ALB, ECS, INSIGHTS, APP = "AWS/ApplicationELB", "AWS/ECS", "ECS/ContainerInsights", "{app}"
UNKNOWN_MODEL = "(none)"       # the app's Model/ModelVersion for a request naming no served model


@dataclass
class MonitoringArgs:
    context: AwsContext
    names: StackNames                    # alarms, dashboard, log group, namespace, ECS names
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    models: Sequence[ModelVersion]       # the dashboard's model dimensions, one set per version
    error_rate_percent: int
    latency_p99_ms: int
    alarm_email: str | None = None
    # Service principals (besides CloudWatch) allowed to publish to the topic, e.g. for
    # the delivery pipeline's notifications: service -> the ARN pattern of its sources.
    extra_topic_publishers: dict[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    namespace: str                       # APP: the application's own (the stack's namespace)
    name: str
    dimensions: str = ""                 # "alb", "target", "service", or "" for none
    stat: str = "Sum"                    # pNN: a percentile


@dataclass(frozen=True)
class Alarm:
    """One CloudWatch alarm ``<prefix>-<key>`` on one metric, or on an expression over
    several (``queries``: id -> metric)."""

    key: str
    description: str                     # str.format()ted with MonitoringArgs' fields
    threshold: float | Callable[[MonitoringArgs], float]
    evaluation_periods: int
    treat_missing_data: str
    metric: Metric | None = None
    queries: tuple[tuple[str, Metric], ...] = ()
    expression: tuple[str, str, str] = ("", "", "")   # (id, label, expression) of the result
    datapoints_to_alarm: int | None = None
    period: int = PERIOD
    comparison: str = "GreaterThanThreshold"
    rolls_back_deployments: bool = False  # ECS watches it during a deployment


# Two of three minutes: fast enough to stop a bad deployment, deaf to a single blip.
FAST = {"evaluation_periods": 3, "datapoints_to_alarm": 2}
ALARMS = (
    Alarm("error-rate", "5xx responses above {error_rate_percent}% of requests (load balancer "
          "and targets); rolls a deployment back",
          lambda a: a.error_rate_percent, treat_missing_data="notBreaching",
          queries=(("target5xx", Metric(ALB, "HTTPCode_Target_5XX_Count", "target")),
                   ("elb5xx", Metric(ALB, "HTTPCode_ELB_5XX_Count", "alb")),
                   ("requests", Metric(ALB, "RequestCount", "alb"))),
          expression=("rate", "5xx %", "IF(requests > 0, 100 * (FILL(target5xx, 0) + "
                      "FILL(elb5xx, 0)) / requests, 0)"), rolls_back_deployments=True, **FAST),
    Alarm("latency-p99", "target response time p99 above {latency_p99_ms} ms; rolls a "
          "deployment back", lambda a: a.latency_p99_ms / 1000,
          metric=Metric(ALB, "TargetResponseTime", "target", "p99"),
          treat_missing_data="notBreaching", rolls_back_deployments=True, **FAST),
    Alarm("unhealthy-targets", "a target failed the load balancer's readiness check for 3 "
          "minutes", 0, metric=Metric(ALB, "UnHealthyHostCount", "target", "Maximum"),
          evaluation_periods=3, treat_missing_data="notBreaching"),
    *[Alarm(f"{what}-high", f"service {what} above {CPU_MEMORY_ALARM_PERCENT}% for 5 minutes "
            "(scaling is not keeping up, or is at maxCount)", CPU_MEMORY_ALARM_PERCENT,
            metric=Metric(ECS, metric_name, "service", "Average"), evaluation_periods=5,
            treat_missing_data="missing")
      for what, metric_name in (("cpu", "CPUUtilization"), ("memory", "MemoryUtilization"))],
    Alarm("tasks-below-desired", "fewer running tasks than desired for 5 minutes (tasks "
          "crash, cannot start, or Spot capacity was reclaimed)", 0,
          queries=(("desired", Metric(INSIGHTS, "DesiredTaskCount", "service", "Average")),
                   ("running", Metric(INSIGHTS, "RunningTaskCount", "service", "Average"))),
          expression=("missing", "desired - running", "desired - running"), evaluation_periods=5,
          treat_missing_data="missing"),
    Alarm("error-log-lines", f"{ERROR_LINES_PER_5_MIN} or more ERROR log lines in 5 minutes",
          ERROR_LINES_PER_5_MIN, metric=Metric(APP, ERROR_LINES_METRIC), period=300,
          comparison="GreaterThanOrEqualToThreshold", evaluation_periods=1,
          treat_missing_data="notBreaching"),
)


def _dimensions(args: MonitoringArgs) -> dict[str, dict[str, Any] | None]:
    alb = {"LoadBalancer": args.alb_arn_suffix}
    return {"alb": alb, "target": {**alb, "TargetGroup": args.target_group_arn_suffix},
            "service": {"ClusterName": args.names.cluster, "ServiceName": args.names.service},
            "": None}


def alarm_inputs(alarm: Alarm, args: MonitoringArgs) -> dict[str, Any]:
    """The MetricAlarm arguments of one row of ALARMS."""
    dims, namespace = _dimensions(args), args.names.metrics_namespace
    threshold = alarm.threshold(args) if callable(alarm.threshold) else alarm.threshold
    inputs: dict[str, Any] = {
        "comparison_operator": alarm.comparison, "threshold": threshold,
        "evaluation_periods": alarm.evaluation_periods,
        "treat_missing_data": alarm.treat_missing_data}
    if alarm.datapoints_to_alarm:
        inputs["datapoints_to_alarm"] = alarm.datapoints_to_alarm
    if alarm.metric:
        m = alarm.metric
        stat = "extended_statistic" if m.stat.startswith("p") else "statistic"
        inputs.update({"namespace": m.namespace.format(app=namespace), "metric_name": m.name,
                       "dimensions": dims[m.dimensions], stat: m.stat, "period": alarm.period})
        return inputs
    inputs["metric_queries"] = [
        *[cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id, return_data=False, metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=m.namespace.format(app=namespace), metric_name=m.name,
                dimensions=dims[m.dimensions], period=alarm.period, stat=m.stat))
          for query_id, m in alarm.queries],
        cloudwatch.MetricAlarmMetricQueryArgs(id=alarm.expression[0], label=alarm.expression[1],
                                              return_data=True, expression=alarm.expression[2])]
    return inputs


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
        region, names = args.context.region, args.names

        self.log_group = cloudwatch.LogGroup(
            f"{name}-service-logs", name=names.log_group("service"),
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)
        cloudwatch.LogMetricFilter(
            f"{name}-error-lines", log_group_name=self.log_group.name,
            pattern='{ $.level = "ERROR" }',
            metric_transformation=cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=ERROR_LINES_METRIC, namespace=names.metrics_namespace, value="1",
                default_value="0", unit="Count"),
            opts=child)
        self.topic = self._topic(name, args)
        self.topic_arn = self.topic.arn

        created = {alarm.key: cloudwatch.MetricAlarm(
            f"{name}-{alarm.key}", name=names.name(alarm.key),
            alarm_description=alarm.description.format(**vars(args)),
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], opts=child,
            **alarm_inputs(alarm, args)) for alarm in ALARMS}
        self.alarm_names = [alarm.name for alarm in created.values()]
        # What a bad deployment shows first; ECS rolls the deployment back when one fires.
        self.deployment_alarm_names = [created[a.key].name for a in ALARMS
                                       if a.rolls_back_deployments]

        dashboard = cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=names.prefix,
            dashboard_body=dashboard_body(args, [a.arn for a in created.values()]), opts=child)
        self.dashboard_name = dashboard.dashboard_name
        self.dashboard_url = dashboard.dashboard_name.apply(
            lambda n: f"https://{region}.console.aws.amazon.com/cloudwatch/home"
                      f"?region={region}#dashboards:name={n}")
        self.register_outputs({"topic_arn": self.topic_arn, "dashboard_url": self.dashboard_url,
                               "log_group": self.log_group.name})

    def _topic(self, name: str, args: MonitoringArgs) -> aws.sns.Topic:
        """The KMS-encrypted alarm topic: CloudWatch (and the extra publishers) of this
        account publish over TLS; the on-call address subscribes."""
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=args.kms_key_arn, opts=child)
        publishers = {"cloudwatch.amazonaws.com": args.context.arn(
            "cloudwatch", f"alarm:{args.names.prefix}-*"), **args.extra_topic_publishers}
        aws.sns.TopicPolicy(f"{name}-alarms", arn=topic.arn, policy=policy_document([
            *[{
                # Each service only for this account's sources of this stack.
                "Sid": "Publish" + "".join(p.title() for p in
                                           service.split(".")[0].split("-")),
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sns:Publish",
                "Resource": topic.arn,
                "Condition": on_behalf_of_this_account(args.context, source),
            } for service, source in publishers.items()],
            deny_insecure_transport([topic.arn], actions="sns:Publish"),
        ]), opts=child)
        if args.alarm_email:
            aws.sns.TopicSubscription(f"{name}-alarm-email", topic=topic.arn,
                                      protocol="email", endpoint=args.alarm_email, opts=child)
        return topic


def dashboard_body(args: MonitoringArgs,
                   alarm_arns: list[pulumi.Output[str]]) -> pulumi.Output[str]:
    """Alarms on top; requests and errors, latency, tasks, CPU and memory, then each deployed
    model version's own metrics (the app's Model and ModelVersion dimensions)."""
    region, ns = args.context.region, args.names.metrics_namespace
    lb, tg = args.alb_arn_suffix, args.target_group_arn_suffix
    svc = ["ClusterName", args.names.cluster, "ServiceName", args.names.service]

    def by_model(metric: str, stat: str, what: str) -> list[list]:
        """One line per deployed model version: the app's EMF dimensions (app/observability.py)."""
        return [[ns, metric, "Model", m.name, "ModelVersion", m.version,
                 {"stat": stat, "label": f"{m.name} v{m.version} {what}"}] for m in args.models]

    def widget(title: str, metrics: list, x: int, y: int) -> dict:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "view": "timeSeries",
                               "period": PERIOD, "metrics": metrics}}

    return pulumi.Output.json_dumps({"widgets": [
        {"type": "alarm", "x": 0, "y": 0, "width": 24, "height": 3,
         "properties": {"title": "Alarms", "alarms": alarm_arns}},
        widget("Requests and 5xx", [
            [ALB, "RequestCount", "LoadBalancer", lb, {"stat": "Sum"}],
            [ALB, "HTTPCode_Target_5XX_Count", "LoadBalancer", lb, "TargetGroup", tg,
             {"stat": "Sum"}],
            [ALB, "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb, {"stat": "Sum"}]], 0, 3),
        widget("Target response time (s)", [
            [ALB, "TargetResponseTime", "LoadBalancer", lb, "TargetGroup", tg, {"stat": "p50"}],
            [".", ".", ".", ".", ".", ".", {"stat": "p99"}]], 12, 3),
        widget("Tasks", [
            [INSIGHTS, "RunningTaskCount", *svc, {"stat": "Average"}],
            [INSIGHTS, "DesiredTaskCount", *svc, {"stat": "Average"}],
            [ALB, "HealthyHostCount", "LoadBalancer", lb, "TargetGroup", tg,
             {"stat": "Minimum"}]], 0, 9),
        widget("CPU and memory (%)", [
            [ECS, "CPUUtilization", *svc, {"stat": "Average"}],
            [ECS, "MemoryUtilization", *svc, {"stat": "Average"}]], 12, 9),
        widget("Predictions by model version", [
            *by_model("PredictionRequests", "Sum", "requests"),
            *by_model("PredictionErrors", "Sum", "errors"),
            # requests naming no deployed model (404s) are counted apart by the app
            [ns, "PredictionErrors", "Model", UNKNOWN_MODEL, "ModelVersion", UNKNOWN_MODEL,
             {"stat": "Sum", "label": "naming no deployed model"}],
            [ns, ERROR_LINES_METRIC, {"stat": "Sum"}]], 0, 15),
        widget("Model latency by version (ms)", [
            *by_model("PredictionLatency", "p50", "p50"),
            *by_model("PredictionLatency", "p99", "p99")], 12, 15),
    ]})
