"""JSON-shaped inputs checked against the real AWS API models that ship with botocore.

Pulumi passes container definitions to ECS as an opaque JSON string: a typo in a key
(``readOnlyRootFilesystem``) or a wrong type is only discovered by ``pulumi up``. Here the
task definition, the service and the alarms are rebuilt as the API requests the provider
makes (RegisterTaskDefinition, CreateService, PutMetricAlarm) and validated offline:
botocore's ParamValidator checks names, types and required members, and ``check_enums``
walks the shape for what the validator does not check: enum values, string lengths and
patterns, numeric ranges (test_pipeline.py uses it for CreatePipeline too).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from tests.infra.harness import Graph, json_input, one, resources_of_type

SESSION = botocore.session.get_session()


def input_shape(service: str, operation: str):
    return SESSION.get_service_model(service).operation_model(operation).input_shape


@lru_cache(maxsize=None)
def _pattern(pattern: str | None) -> re.Pattern[str] | None:
    """A model's pattern as a Python regex; None when absent or not Python syntax (some
    models use Java classes such as \\p{Print}, which cannot be checked here)."""
    try:
        return re.compile(pattern) if pattern else None
    except re.error:
        return None


def check_enums(value: Any, shape, path: str = "") -> list[str]:
    """What ParamValidator skips: enum values, string lengths and patterns, numeric ranges."""
    problems = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                problems += check_enums(value[key], member, f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            problems += check_enums(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for k, v in value.items():
            problems += check_enums(v, shape.value, f"{path}.{k}")
    elif shape.type_name == "string" and isinstance(value, str):
        if getattr(shape, "enum", None) and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.enum}")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
            problems.append(f"{path}: length {len(value)} outside [{lo}, {hi}]")
        pattern = _pattern(shape.metadata.get("pattern"))
        if pattern and not pattern.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match {pattern.pattern}")
    elif shape.type_name in ("integer", "long", "double", "float"):
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            problems.append(f"{path}: {value} outside [{lo}, {hi}]")
    return problems


def validate(service: str, operation: str, params: dict) -> None:
    shape = input_shape(service, operation)
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    problems = check_enums(params, shape)
    assert not problems, problems


def test_the_validator_catches_typos_wrong_types_and_bad_enums():
    """It must be able to fail."""
    shape = input_shape("ecs", "RegisterTaskDefinition")
    bad = {"family": "x", "containerDefinitions": [{"name": "app", "image": "i",
                                                    "readOnlyRootFilesystem": True,
                                                    "stopTimeout": "30"}]}
    report = ParamValidator().validate(bad, shape).generate_report()
    assert "readOnlyRootFilesystem" in report and "stopTimeout" in report
    assert check_enums({"family": "x", "networkMode": "bridged", "containerDefinitions": []},
                       shape) == [".networkMode: 'bridged' not in ['bridge', 'host', 'awsvpc', 'none']"]
    assert check_enums({"AlarmName": "", "EvaluationPeriods": 0},
                       input_shape("cloudwatch", "PutMetricAlarm")) == [
        ".AlarmName: length 0 outside [1, 255]", ".EvaluationPeriods: 0 outside [1, None]"]


def register_task_definition(graph: Graph) -> dict:
    task = one(graph, "aws:ecs/taskDefinition:TaskDefinition")
    i = task.inputs
    return {
        "family": i["family"],
        "taskRoleArn": i["taskRoleArn"],
        "executionRoleArn": i["executionRoleArn"],
        "networkMode": i["networkMode"],
        "containerDefinitions": json_input(task, "containerDefinitions"),
        "volumes": i["volumes"],
        "requiresCompatibilities": i["requiresCompatibilities"],
        "cpu": i["cpu"],
        "memory": i["memory"],
        "runtimePlatform": i["runtimePlatform"],
    }


def test_task_definition_is_a_valid_register_task_definition_request(graph):
    params = register_task_definition(graph)
    assert params["containerDefinitions"], "no container definitions to validate"
    validate("ecs", "RegisterTaskDefinition", params)


def test_service_is_a_valid_create_service_request(graph):
    i = one(graph, "aws:ecs/service:Service").inputs
    params = {
        "cluster": i["cluster"], "serviceName": i["name"], "taskDefinition": i["taskDefinition"],
        "desiredCount": i["desiredCount"],
        "capacityProviderStrategy": i["capacityProviderStrategies"],
        "platformVersion": i["platformVersion"],
        "loadBalancers": i["loadBalancers"],
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": i["networkConfiguration"]["subnets"],
            "securityGroups": i["networkConfiguration"]["securityGroups"],
            "assignPublicIp": "ENABLED" if i["networkConfiguration"]["assignPublicIp"] else "DISABLED"}},
        "healthCheckGracePeriodSeconds": i["healthCheckGracePeriodSeconds"],
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": i["deploymentCircuitBreaker"],
            "maximumPercent": i["deploymentMaximumPercent"],
            "minimumHealthyPercent": i["deploymentMinimumHealthyPercent"],
            "alarms": i["alarms"],
        },
        "enableECSManagedTags": i["enableEcsManagedTags"],
        "propagateTags": i["propagateTags"],
        "enableExecuteCommand": i["enableExecuteCommand"],
        "availabilityZoneRebalancing": i["availabilityZoneRebalancing"],
    }
    validate("ecs", "CreateService", params)


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


def test_scaling_policies_are_valid_put_scaling_policy_requests(graph):
    policies = resources_of_type(graph, "aws:appautoscaling/policy:Policy")
    assert len(policies) == 3
    for p in policies:
        tracking = p.inputs["targetTrackingScalingPolicyConfiguration"]
        spec = tracking["predefinedMetricSpecification"]
        params = {
            "PolicyName": p.name, "ServiceNamespace": p.inputs["serviceNamespace"],
            "ResourceId": p.inputs["resourceId"],
            "ScalableDimension": p.inputs["scalableDimension"],
            "PolicyType": p.inputs["policyType"],
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(tracking["targetValue"]),
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": spec["predefinedMetricType"],
                    **({"ResourceLabel": spec["resourceLabel"]} if "resourceLabel" in spec else {})},
                "ScaleOutCooldown": tracking["scaleOutCooldown"],
                "ScaleInCooldown": tracking["scaleInCooldown"],
            },
        }
        validate("application-autoscaling", "PutScalingPolicy", params)


@pytest.mark.parametrize("stack", ["dev"])
def test_a_misspelled_container_key_would_fail(graphs, stack):
    params = register_task_definition(graphs[stack])
    container = json.loads(json.dumps(params["containerDefinitions"][0]))
    container["readOnlyRootFilesystem"] = container.pop("readonlyRootFilesystem")
    params["containerDefinitions"] = [container]
    with pytest.raises(AssertionError, match="readOnlyRootFilesystem"):
        validate("ecs", "RegisterTaskDefinition", params)
