"""Observability: the service's log group, the alarm topic, alarms, and a dashboard.

Built before the service, because the service's deployments watch two of these alarms
(error rate and p99 latency) and roll back when one fires; the names of the cluster and the
service (the endpoint and its variant, the function and its alias) are fixed strings for the
same reason. Every alarm notifies the KMS-encrypted SNS topic (and the on-call address, if
configured) on ALARM and on OK.

The alarms are a table per target (``ALARMS`` for ECS, ``SAGEMAKER_ALARMS``,
``LAMBDA_ALARMS``): a new alarm is one row, naming its metrics by the dimensions they are
published with (the load balancer, its target group, the ECS service, the endpoint's variant,
the function's alias, or none for the application's own namespace). The application's
ERROR-line count is the same on every target: each writes its logs to the log group here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pulumi
import pulumi_aws as aws

from infra.boundary import INSTANCE_METRICS_NAMESPACE
from infra.iam import deny_insecure_transport, on_behalf_of_this_account, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext
from infra.releases import ModelVersion

cloudwatch = aws.cloudwatch
PERIOD = 60                   # seconds per datapoint for every alarm
CPU_MEMORY_ALARM_PERCENT = 85  # autoscaling targets 60/70 %: sustained 85 % means it cannot keep up
ERROR_LINES_PER_5_MIN = 5
ERROR_LINES_METRIC = "ErrorLogLines"
ALB, ECS, INSIGHTS, APP = "AWS/ApplicationELB", "AWS/ECS", "ECS/ContainerInsights", "{app}"
SAGEMAKER, LAMBDA = "AWS/SageMaker", "AWS/Lambda"
UNKNOWN_MODEL = "(none)"       # the app's Model/ModelVersion for a request naming no served model


@dataclass
class MonitoringArgs:
    context: AwsContext
    names: StackNames                    # alarms, dashboard, log group, namespace, ECS names
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    models: Sequence[ModelVersion]       # the dashboard's model dimensions, one set per version
    error_rate_percent: int
    latency_p99_ms: int
    target: str = "ecs"                  # ecs | sagemaker | lambda: which table of alarms
    # ECS: the load balancer and target group the alarms watch.
    alb_arn_suffix: pulumi.Input[str] | None = None
    target_group_arn_suffix: pulumi.Input[str] | None = None
    alarm_email: str | None = None
    # Service principals (besides CloudWatch) allowed to publish to the topic, e.g. for
    # the delivery pipeline's notifications: service -> the ARN pattern of its sources.
    extra_topic_publishers: dict[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    namespace: str                       # APP: the application's own (the stack's namespace)
    name: str
    # "alb", "target", "service", "endpoint", "function", or "" for none
    dimensions: str = ""
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
    rolls_back_deployments: bool = False  # ECS (SageMaker) watches it during a deployment


# Two of three minutes: fast enough to stop a bad deployment, deaf to a single blip.
FAST = {"evaluation_periods": 3, "datapoints_to_alarm": 2}
# Every target's application logs to the stack's log group: the same count, the same alarm.
ERROR_LOG_LINES = Alarm(
    "error-log-lines", f"{ERROR_LINES_PER_5_MIN} or more ERROR log lines in 5 minutes",
    ERROR_LINES_PER_5_MIN, metric=Metric(APP, ERROR_LINES_METRIC), period=300,
    comparison="GreaterThanOrEqualToThreshold", evaluation_periods=1,
    treat_missing_data="notBreaching")
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
    ERROR_LOG_LINES,
)
# A SageMaker endpoint's variant (AWS/SageMaker, EndpointName and VariantName). The first
# two roll a blue/green update back (the endpoint's auto-rollback alarms). ModelLatency is in
# microseconds; instance CPU and memory are not alarmed: SageMaker reports CPU summed over the
# cores (up to 100 % per vCPU), and the endpoint's autoscaling follows invocations.
SAGEMAKER_ALARMS = (
    Alarm("error-rate", "5xx invocation errors above {error_rate_percent}% of invocations; "
          "rolls an endpoint update back", lambda a: a.error_rate_percent,
          treat_missing_data="notBreaching",
          queries=(("errors5xx", Metric(SAGEMAKER, "Invocation5XXErrors", "endpoint")),
                   ("invocations", Metric(SAGEMAKER, "Invocations", "endpoint"))),
          expression=("rate", "5xx %", "IF(invocations > 0, 100 * FILL(errors5xx, 0) / "
                      "invocations, 0)"), rolls_back_deployments=True, **FAST),
    Alarm("latency-p99", "model latency p99 above {latency_p99_ms} ms; rolls an endpoint "
          "update back", lambda a: a.latency_p99_ms * 1000,
          metric=Metric(SAGEMAKER, "ModelLatency", "endpoint", "p99"),
          treat_missing_data="notBreaching", rolls_back_deployments=True, **FAST),
    Alarm("invocation-4xx", "more than 10% of invocations answered 4xx for 5 minutes (callers "
          "send what the model refuses, or a serverless endpoint throttles)", 10,
          treat_missing_data="notBreaching",
          queries=(("errors4xx", Metric(SAGEMAKER, "Invocation4XXErrors", "endpoint")),
                   ("invocations", Metric(SAGEMAKER, "Invocations", "endpoint"))),
          expression=("rate", "4xx %", "IF(invocations > 0, 100 * FILL(errors4xx, 0) / "
                      "invocations, 0)"), evaluation_periods=5),
    ERROR_LOG_LINES,
)
# A Lambda function's live alias (AWS/Lambda, FunctionName and Resource "<function>:live").
# Lambda has no deployment rollback of its own: the pipeline's Deploy stage rolls back, and
# the smoke test checks the alias (ci/smoke.py).
LAMBDA_ALARMS = (
    Alarm("error-rate", "5xx responses above {error_rate_percent}% of Function URL requests",
          lambda a: a.error_rate_percent, treat_missing_data="notBreaching",
          queries=(("url5xx", Metric(LAMBDA, "Url5xxCount", "function")),
                   ("requests", Metric(LAMBDA, "UrlRequestCount", "function"))),
          expression=("rate", "5xx %", "IF(requests > 0, 100 * FILL(url5xx, 0) / requests, 0)"),
          **FAST),
    Alarm("errors", "the function failed (an exception, a timeout or an init error, not an "
          "HTTP answer) in 2 of 3 minutes", 0, metric=Metric(LAMBDA, "Errors", "function"),
          treat_missing_data="notBreaching", **FAST),
    Alarm("throttles", "requests throttled in 2 of 3 minutes (lambdaReservedConcurrency "
          "reached, or the account's concurrency)", 0,
          metric=Metric(LAMBDA, "Throttles", "function"), treat_missing_data="notBreaching",
          **FAST),
    Alarm("duration-p99", "function duration p99 above {latency_p99_ms} ms",
          lambda a: a.latency_p99_ms, metric=Metric(LAMBDA, "Duration", "function", "p99"),
          treat_missing_data="notBreaching", **FAST),
    ERROR_LOG_LINES,
)
ALARMS_BY_TARGET = {"ecs": ALARMS, "sagemaker": SAGEMAKER_ALARMS, "lambda": LAMBDA_ALARMS}


def _dimensions(args: MonitoringArgs) -> dict[str, dict[str, Any] | None]:
    alb = {"LoadBalancer": args.alb_arn_suffix}
    names = args.names
    return {"alb": alb, "target": {**alb, "TargetGroup": args.target_group_arn_suffix},
            "service": {"ClusterName": names.cluster, "ServiceName": names.service},
            "endpoint": {"EndpointName": names.endpoint, "VariantName": names.endpoint_variant},
            "function": {"FunctionName": names.function,
                         "Resource": f"{names.function}:{names.function_alias}"},
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

        # ECS and Lambda write where the stack says; SageMaker writes to a group it names.
        self.log_group = cloudwatch.LogGroup(
            f"{name}-service-logs", name=names.sagemaker_log_group
            if args.target == "sagemaker" else names.log_group("service"),
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

        alarms = ALARMS_BY_TARGET[args.target]
        created = {alarm.key: cloudwatch.MetricAlarm(
            f"{name}-{alarm.key}", name=names.name(alarm.key),
            alarm_description=alarm.description.format(**vars(args)),
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], opts=child,
            **alarm_inputs(alarm, args)) for alarm in alarms}
        self.alarm_names = [alarm.name for alarm in created.values()]
        # What a bad deployment shows first; ECS rolls the deployment back when one fires,
        # SageMaker a blue/green endpoint update.
        self.deployment_alarm_names = [created[a.key].name for a in alarms
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
    """Alarms on top; the target's requests and errors, latency and capacity; then each
    deployed model version's own metrics (the app's Model and ModelVersion dimensions)."""
    region, ns = args.context.region, args.names.metrics_namespace

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
        *[widget(title, metrics, 12 * (i % 2), 3 + 6 * (i // 2))
          for i, (title, metrics) in enumerate(TARGET_WIDGETS[args.target](args))],
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


Widgets = list[tuple[str, list]]


def _widget_dimensions(args: MonitoringArgs, kind: str) -> list:
    """The alarms' dimensions of ``kind`` as a dashboard metric spells them (name, value...)."""
    return [part for item in (_dimensions(args)[kind] or {}).items() for part in item]


def _ecs_widgets(args: MonitoringArgs) -> Widgets:
    alb, target = _widget_dimensions(args, "alb"), _widget_dimensions(args, "target")
    svc = _widget_dimensions(args, "service")
    return [
        ("Requests and 5xx", [
            [ALB, "RequestCount", *alb, {"stat": "Sum"}],
            [ALB, "HTTPCode_Target_5XX_Count", *target, {"stat": "Sum"}],
            [ALB, "HTTPCode_ELB_5XX_Count", *alb, {"stat": "Sum"}]]),
        ("Target response time (s)", [
            [ALB, "TargetResponseTime", *target, {"stat": "p50"}],
            [".", ".", ".", ".", ".", ".", {"stat": "p99"}]]),
        ("Tasks", [
            [INSIGHTS, "RunningTaskCount", *svc, {"stat": "Average"}],
            [INSIGHTS, "DesiredTaskCount", *svc, {"stat": "Average"}],
            [ALB, "HealthyHostCount", *target, {"stat": "Minimum"}]]),
        ("CPU and memory (%)", [
            [ECS, "CPUUtilization", *svc, {"stat": "Average"}],
            [ECS, "MemoryUtilization", *svc, {"stat": "Average"}]]),
    ]


def _sagemaker_widgets(args: MonitoringArgs) -> Widgets:
    variant = _widget_dimensions(args, "endpoint")
    return [
        ("Invocations and errors", [
            [SAGEMAKER, "Invocations", *variant, {"stat": "Sum"}],
            [SAGEMAKER, "Invocation5XXErrors", *variant, {"stat": "Sum"}],
            [SAGEMAKER, "Invocation4XXErrors", *variant, {"stat": "Sum"}]]),
        ("Model and overhead latency (us)", [
            [SAGEMAKER, "ModelLatency", *variant, {"stat": "p50"}],
            [SAGEMAKER, "ModelLatency", *variant, {"stat": "p99"}],
            [SAGEMAKER, "OverheadLatency", *variant, {"stat": "p99"}]]),
        ("Invocations per instance", [
            [SAGEMAKER, "InvocationsPerInstance", *variant, {"stat": "Sum"}]]),
        ("Instances: CPU (% of one vCPU) and memory (%)", [
            [INSTANCE_METRICS_NAMESPACE, "CPUUtilization", *variant, {"stat": "Average"}],
            [INSTANCE_METRICS_NAMESPACE, "MemoryUtilization", *variant, {"stat": "Average"}]]),
    ]


def _lambda_widgets(args: MonitoringArgs) -> Widgets:
    alias = _widget_dimensions(args, "function")
    return [
        ("Function URL requests, 4xx and 5xx", [
            [LAMBDA, "UrlRequestCount", *alias, {"stat": "Sum"}],
            [LAMBDA, "Url4xxCount", *alias, {"stat": "Sum"}],
            [LAMBDA, "Url5xxCount", *alias, {"stat": "Sum"}]]),
        ("Duration (ms)", [
            [LAMBDA, "Duration", *alias, {"stat": "p50"}],
            [LAMBDA, "Duration", *alias, {"stat": "p99"}]]),
        ("Concurrency", [
            [LAMBDA, "ConcurrentExecutions", *alias, {"stat": "Maximum"}],
            [LAMBDA, "ProvisionedConcurrencyUtilization", *alias, {"stat": "Maximum"}]]),
        ("Errors and throttles", [
            [LAMBDA, "Errors", *alias, {"stat": "Sum"}],
            [LAMBDA, "Throttles", *alias, {"stat": "Sum"}]]),
    ]


TARGET_WIDGETS: dict[str, Callable[[MonitoringArgs], Widgets]] = {
    "ecs": _ecs_widgets, "sagemaker": _sagemaker_widgets, "lambda": _lambda_widgets}
