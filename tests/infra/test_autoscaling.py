"""Autoscaling (infra/autoscaling.py): target tracking within the configured counts."""

from __future__ import annotations

from tests.infra.harness import config_value, one, resources_of_type, validate


def test_autoscaling_tracks_cpu_memory_and_requests_within_config_bounds(graph):
    target = one(graph, "aws:appautoscaling/target:Target")
    assert target.inputs["minCapacity"] == int(config_value(graph, "minCount"))
    assert target.inputs["maxCapacity"] == int(config_value(graph, "maxCount"))
    assert target.inputs["resourceId"] == f"service/ml-app-{graph.stack}/ml-app-{graph.stack}"
    policies = resources_of_type(graph, "aws:appautoscaling/policy:Policy")
    by_metric = {p.inputs["targetTrackingScalingPolicyConfiguration"]
                 ["predefinedMetricSpecification"]["predefinedMetricType"]: p for p in policies}
    assert set(by_metric) == {"ECSServiceAverageCPUUtilization",
                              "ECSServiceAverageMemoryUtilization", "ALBRequestCountPerTarget"}
    for p in policies:
        tracking = p.inputs["targetTrackingScalingPolicyConfiguration"]
        assert p.inputs["policyType"] == "TargetTrackingScaling"
        assert 0 < tracking["scaleOutCooldown"] < tracking["scaleInCooldown"]
    requests = by_metric["ALBRequestCountPerTarget"].inputs["targetTrackingScalingPolicyConfiguration"]
    assert requests["targetValue"] == int(config_value(graph, "scaleRequestsPerTarget"))
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]
    tg = one(graph, "aws:lb/targetGroup:TargetGroup").outputs["arnSuffix"]
    assert requests["predefinedMetricSpecification"]["resourceLabel"] == f"{alb}/{tg}"


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
