"""Monitoring (infra/monitoring.py): the alarms table, the topic, the error-line metric and
the dashboard; every alarm a valid PutMetricAlarm request."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.harness import (config_value, deployed_models, one, resources_of_type, validate,
                                 within)


def test_alarms_cover_the_failure_modes_and_notify_the_topic(graph):
    topic = one(graph, "aws:sns/topic:Topic").outputs["arn"]
    alarms = {a.inputs["name"].removeprefix(f"ml-app-{graph.stack}-"): a.inputs
              for a in resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(alarms) == len(resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert set(alarms) >= {"error-rate", "latency-p99", "unhealthy-targets", "cpu-high",
                           "memory-high", "tasks-below-desired", "error-log-lines"}
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic], name
    assert alarms["error-rate"]["threshold"] == int(config_value(graph, "alarmErrorRatePercent"))
    assert alarms["latency-p99"]["threshold"] == int(config_value(graph, "alarmLatencyP99Ms")) / 1000
    assert alarms["latency-p99"]["extendedStatistic"] == "p99"
    expression = [q for q in alarms["tasks-below-desired"]["metricQueries"] if q.get("expression")]
    assert expression[0]["expression"] == "desired - running"
    subscriptions = within(graph, "ml-app:infra:Monitoring",
                           "aws:sns/topicSubscription:TopicSubscription")
    email = config_value(graph, "alarmEmail")
    assert [s.inputs["endpoint"] for s in subscriptions] == ([email] if email else [])


def test_error_log_lines_are_counted_and_charted(graph):
    metric_filter = one(graph, "aws:cloudwatch/logMetricFilter:LogMetricFilter", "ml-app:infra:Monitoring")
    assert metric_filter.inputs["pattern"] == '{ $.level = "ERROR" }'
    assert metric_filter.inputs["logGroupName"] == f"/ml-app/{graph.stack}/service"
    dashboard = one(graph, "aws:cloudwatch/dashboard:Dashboard", "ml-app:infra:Monitoring")
    body = json.loads(dashboard.inputs["dashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Alarms" in titles and len(titles) >= 6
    alarm_arns = {a.outputs["arn"] for a in within(graph, "ml-app:infra:Monitoring",
                                                   "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(alarm_arns) >= 7
    assert set(body["widgets"][0]["properties"]["alarms"]) == alarm_arns
    assert graph.exports["dashboardUrl"].endswith(f"#dashboards:name=ml-app-{graph.stack}")


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


def test_alarms_are_valid_put_metric_alarm_requests(graph):
    alarms = resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        validate("cloudwatch", "PutMetricAlarm", _alarm_request(alarm.inputs))
