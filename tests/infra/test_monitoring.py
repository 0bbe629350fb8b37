"""Monitoring (infra/monitoring.py): the alarms table, the topic, the error-line metric and
the dashboard; every alarm a valid PutMetricAlarm request."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.harness import (config_value, deployed_models, one, resources_of_type,
                                 target_of, validate, within)


# Each target's alarms (the ECS path's, an endpoint's, a function's), and those that roll a
# deployment back: ECS's service and SageMaker's blue/green update watch them.
TARGET_ALARMS = {
    "ecs": {"error-rate", "latency-p99", "unhealthy-targets", "cpu-high", "memory-high",
            "tasks-below-desired", "error-log-lines"},
    "sagemaker": {"error-rate", "latency-p99", "invocation-4xx", "error-log-lines"},
    "lambda": {"error-rate", "errors", "throttles", "duration-p99", "error-log-lines"},
}
ROLLBACK_ALARMS = {"ecs": {"error-rate", "latency-p99"}, "sagemaker": {"error-rate", "latency-p99"},
                   "lambda": set()}
# The dimensions each target's metrics are published with.
DIMENSIONS = {"sagemaker": {"EndpointName": "ml-app-{stack}", "VariantName": "live"},
              "lambda": {"FunctionName": "ml-app-{stack}-function",
                         "Resource": "ml-app-{stack}-function:live"}}


def _alarms(graph) -> dict[str, dict]:
    return {a.inputs["name"].removeprefix(f"ml-app-{graph.stack}-"): a.inputs
            for a in resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")}


def test_alarms_cover_the_failure_modes_and_notify_the_topic(any_graph):
    target = target_of(any_graph)
    topic = one(any_graph, "aws:sns/topic:Topic").outputs["arn"]
    alarms = _alarms(any_graph)
    assert len(alarms) == len(resources_of_type(any_graph, "aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert set(alarms) == TARGET_ALARMS[target]
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic], name
    rate = [q for q in alarms["error-rate"]["metricQueries"] if q.get("expression")]
    assert rate[0]["returnData"] is True and "100 *" in rate[0]["expression"]
    assert alarms["error-rate"]["threshold"] == int(config_value(any_graph, "alarmErrorRatePercent"))
    latency = alarms["duration-p99" if target == "lambda" else "latency-p99"]
    assert latency["extendedStatistic"] == "p99"
    # The same milliseconds, in each metric's unit: ALB seconds, SageMaker microseconds,
    # Lambda milliseconds.
    scale = {"ecs": 1 / 1000, "sagemaker": 1000, "lambda": 1}[target]
    assert latency["threshold"] == int(config_value(any_graph, "alarmLatencyP99Ms")) * scale
    if target == "ecs":
        expression = [q for q in alarms["tasks-below-desired"]["metricQueries"]
                      if q.get("expression")]
        assert expression[0]["expression"] == "desired - running"
    else:
        wanted = {k: v.format(stack=any_graph.stack) for k, v in DIMENSIONS[target].items()}
        for name, alarm in alarms.items():
            for dims in [alarm.get("dimensions")] + [q["metric"]["dimensions"] for q in
                                                     alarm.get("metricQueries", [])
                                                     if "metric" in q]:
                assert dims in (wanted, None), (name, dims)   # None: the app's namespace
    subscriptions = within(any_graph, "ml-app:infra:Monitoring",
                           "aws:sns/topicSubscription:TopicSubscription")
    email = config_value(any_graph, "alarmEmail")
    assert [s.inputs["endpoint"] for s in subscriptions] == ([email] if email else [])


def test_the_rollback_alarms_are_the_ones_the_deployment_watches(any_graph):
    target = target_of(any_graph)
    names = {f"ml-app-{any_graph.stack}-{key}" for key in ROLLBACK_ALARMS[target]}
    if target == "ecs":
        watched = one(any_graph, "aws:ecs/service:Service").inputs["alarms"]["alarmNames"]
    elif target == "sagemaker":
        config = one(any_graph, "aws:sagemaker/endpoint:Endpoint").inputs["deploymentConfig"]
        watched = [a["alarmName"] for a in config["autoRollbackConfiguration"]["alarms"]]
    else:
        watched = []     # Lambda: the pipeline's Deploy stage rolls back (ci/smoke.py)
    assert set(watched) == names


def test_error_log_lines_are_counted_and_charted(any_graph):
    """Every target logs to the log group here: ECS (awslogs) and Lambda (its logging
    configuration) to the stack's, SageMaker to the one it names after the endpoint."""
    target = target_of(any_graph)
    metric_filter = one(any_graph, "aws:cloudwatch/logMetricFilter:LogMetricFilter",
                        "ml-app:infra:Monitoring")
    assert metric_filter.inputs["pattern"] == '{ $.level = "ERROR" }'
    group = {"sagemaker": f"/aws/sagemaker/Endpoints/ml-app-{any_graph.stack}"}.get(
        target, f"/ml-app/{any_graph.stack}/service")
    assert metric_filter.inputs["logGroupName"] == group == any_graph.exports["logGroupName"]
    dashboard = one(any_graph, "aws:cloudwatch/dashboard:Dashboard", "ml-app:infra:Monitoring")
    body = json.loads(dashboard.inputs["dashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Alarms" in titles and len(titles) == 7
    alarm_arns = {a.outputs["arn"] for a in within(any_graph, "ml-app:infra:Monitoring",
                                                   "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(alarm_arns) == len(TARGET_ALARMS[target])
    assert set(body["widgets"][0]["properties"]["alarms"]) == alarm_arns
    namespaces = {m[0] for w in body["widgets"][1:] for m in w["properties"]["metrics"]}
    assert {"ecs": "AWS/ApplicationELB", "sagemaker": "AWS/SageMaker",
            "lambda": "AWS/Lambda"}[target] in namespaces
    # No widget overlaps another (a 24-column grid).
    cells = {(w["x"] + dx, w["y"] + dy) for w in body["widgets"]
             for dx in range(w["width"]) for dy in range(w["height"])}
    assert len(cells) == sum(w["width"] * w["height"] for w in body["widgets"])
    assert any_graph.exports["dashboardUrl"].endswith(f"#dashboards:name=ml-app-{any_graph.stack}")


def test_the_dashboard_charts_each_deployed_model_version(graph):
    """The app's EMF dimensions (Model, ModelVersion), one line per deployed version."""
    body = json.loads(one(graph, "aws:cloudwatch/dashboard:Dashboard",
                          "ml-app:infra:Monitoring").inputs["dashboardBody"])
    namespace = f"ml-app/{graph.stack}"
    lines = [m for w in body["widgets"] if w["type"] == "metric"
             for m in w["properties"]["metrics"] if m[0] == namespace]
    charted = {(m[1], m[3], m[5]) for m in lines if m[2:3] == ["Model"]}
    for model in deployed_models(graph):
        for metric in ("PredictionRequests", "PredictionErrors", "PredictionLatency"):
            assert (metric, model.name, model.version) in charted, (metric, model.entry)
    served = {(m.name, m.version) for m in deployed_models(graph)} | {("(none)", "(none)")}
    assert {(name, version) for _, name, version in charted} == served
    for line in lines:      # every line is a valid dashboard metric: dimensions in pairs
        dims = [x for x in line[2:] if not isinstance(x, dict)]
        assert len(dims) % 2 == 0, line


def _alarm_request(i: dict) -> dict:
    def dims(d: dict) -> list[dict]:
        return [{"Name": k, "Value": v} for k, v in sorted(d.items())]

    request: dict[str, Any] = {
        "AlarmName": i["name"], "AlarmDescription": i.get("alarmDescription", ""),
        "AlarmActions": i["alarmActions"], "OKActions": i["okActions"],
        "ComparisonOperator": i["comparisonOperator"],
        "EvaluationPeriods": i["evaluationPeriods"], "Threshold": float(i["threshold"]),
        "TreatMissingData": i["treatMissingData"],
    }
    if "datapointsToAlarm" in i:
        request["DatapointsToAlarm"] = i["datapointsToAlarm"]
    if "metricQueries" in i:
        request["Metrics"] = []
        for q in i["metricQueries"]:
            query: dict[str, Any] = {"Id": q["id"], "ReturnData": q.get("returnData", False)}
            if "expression" in q:
                query.update(Expression=q["expression"], Label=q.get("label", ""))
            else:
                m = q["metric"]
                query["MetricStat"] = {"Metric": {"Namespace": m["namespace"],
                                                  "MetricName": m["metricName"],
                                                  "Dimensions": dims(m["dimensions"])},
                                       "Period": m["period"], "Stat": m["stat"]}
            request["Metrics"].append(query)
    else:
        request.update(Namespace=i["namespace"], MetricName=i["metricName"],
                       Period=i["period"], Dimensions=dims(i.get("dimensions", {})))
        if "extendedStatistic" in i:
            request["ExtendedStatistic"] = i["extendedStatistic"]
        else:
            request["Statistic"] = i["statistic"]
    return request


def test_alarms_are_valid_put_metric_alarm_requests(any_graph):
    alarms = resources_of_type(any_graph, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        validate("cloudwatch", "PutMetricAlarm", _alarm_request(alarm.inputs))
