"""The ECS service (infra/service.py): the task, its deployments and its capacity; the task
definition and the service as valid RegisterTaskDefinition and CreateService requests."""

from __future__ import annotations

import hashlib
import json

import pytest

from app.config import load_server_settings
from infra import releases
from tests.infra.harness import (Graph, config_value, deployed_models, json_input, one,
                                 resources_of_type, validate, within)


HEALTH_CHECK = ["CMD", "python", "-c",
                "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("
                "'http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"]


def container(graph: Graph) -> dict:
    [definition] = json_input(one(graph, "aws:ecs/taskDefinition:TaskDefinition"),
                              "containerDefinitions")
    return definition


def env(graph: Graph) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(graph)["environment"]}


# ---------------------------------------------------------------------------- task --
def test_task_is_read_only_non_root_and_runs_the_pushed_digest(graph):
    c = container(graph)
    assert c["readonlyRootFilesystem"] is True
    assert c["user"] == "10001:10001"
    assert c["privileged"] is False
    assert c["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    image = one(graph, "docker:index/image:Image")
    assert image.inputs["skipPush"] is False      # a first deploy builds and pushes
    assert c["image"] == image.outputs["repoDigest"]
    assert "@sha256:" in c["image"] and ":" not in c["image"].split("@")[0].split("/")[-1]


def test_task_size_roles_platform_and_writable_tmp(graph):
    task = one(graph, "aws:ecs/taskDefinition:TaskDefinition")
    assert task.inputs["cpu"] == config_value(graph, "cpu") and task.inputs["memory"] == config_value(graph, "memory")
    assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
    assert task.inputs["networkMode"] == "awsvpc"
    assert task.inputs["runtimePlatform"] == {"cpuArchitecture": "X86_64",
                                              "operatingSystemFamily": "LINUX"}
    assert task.inputs["executionRoleArn"] != task.inputs["taskRoleArn"]
    roles = {r.outputs["arn"] for r in resources_of_type(graph, "aws:iam/role:Role")}
    assert {task.inputs["executionRoleArn"], task.inputs["taskRoleArn"]} <= roles
    volumes = {v["name"] for v in task.inputs["volumes"]}
    mounts = container(graph)["mountPoints"]
    assert [(m["containerPath"], m["readOnly"]) for m in mounts] == [("/tmp", False)]
    assert mounts[0]["sourceVolume"] in volumes
    assert env(graph)["MODEL_CACHE_DIR"].startswith("/tmp/")


def test_task_health_check_shutdown_and_logs(graph):
    c = container(graph)
    assert c["healthCheck"]["command"] == HEALTH_CHECK
    assert c["healthCheck"]["startPeriod"] >= 60
    # ECS sends SIGKILL stopTimeout seconds after SIGTERM: after the drain the server takes
    # with the task's environment (SERVER_GRACEFUL_TIMEOUT, app/config.py), within Fargate's
    # maximum of 120.
    assert load_server_settings(env(graph)).server_graceful_timeout < c["stopTimeout"] <= 120
    logs = c["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    group = one(graph, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring")
    assert logs["options"]["awslogs-group"] == group.inputs["name"]
    assert logs["options"]["awslogs-region"] == graph.config["aws:region"]
    assert c["portMappings"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp",
                                  "name": "http", "appProtocol": "http"}]


def test_task_loads_the_configured_model_versions_each_pinned_by_hash(graph):
    e = env(graph)
    bucket = one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["bucket"]
    models = deployed_models(graph)
    # the order of ml-app:models (the default model first), one pin per URI (app/config.py)
    assert e["MODEL_URI"].split(",") == [f"s3://{bucket}/models/{m.name}/{m.version}"
                                         for m in models]
    assert e["MODEL_SHA256"].split(",") == [
        hashlib.sha256((releases.MODEL_ROOT / m.name / m.version / "manifest.json").read_bytes())
        .hexdigest() for m in models]
    keys = {o.inputs["key"] for o in resources_of_type(graph, "aws:s3/bucketObjectv2:BucketObjectv2")}
    assert {f"models/{m.name}/{m.version}/manifest.json" for m in models} <= keys
    # and the service reads them as the same pairs (app/config.py parses the task's env)
    from app.config import ModelSource, load_settings
    app_keys = ("MODEL_URI", "MODEL_SHA256", "MODEL_CACHE_DIR", "LOG_LEVEL", "METRICS_NAMESPACE")
    settings = load_settings({k: e[k] for k in app_keys})
    assert settings.models == tuple(ModelSource(f"s3://{bucket}/{m.prefix}", m.manifest_sha256)
                                    for m in models)
    # One app worker per vCPU, as the server reads it.
    assert load_server_settings(e).web_concurrency == max(1, int(config_value(graph, "cpu")) // 1024)
    assert e["METRICS_NAMESPACE"] == f"ml-app/{graph.stack}"
    assert all(isinstance(v, str) and v for v in e.values()), "null or empty env values diff forever"
    assert [x["name"] for x in container(graph)["environment"]] == sorted(e)


# ------------------------------------------------------------------------- service --
def test_service_deploys_safely(graph):
    service = one(graph, "aws:ecs/service:Service")
    i = service.inputs
    assert i["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    alarm_names = {a.inputs["name"] for a in resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert i["alarms"]["enable"] is True and i["alarms"]["rollback"] is True
    assert set(i["alarms"]["alarmNames"]) == {f"ml-app-{graph.stack}-error-rate",
                                              f"ml-app-{graph.stack}-latency-p99"}
    assert set(i["alarms"]["alarmNames"]) <= alarm_names
    assert i["healthCheckGracePeriodSeconds"] >= 60
    assert i["deploymentMinimumHealthyPercent"] == 100 and i["deploymentMaximumPercent"] == 200
    assert i["waitForSteadyState"] is True
    assert i["enableExecuteCommand"] is False
    assert service.ignore_changes == ["desiredCount"]
    assert i["taskDefinition"] == one(graph, "aws:ecs/taskDefinition:TaskDefinition").outputs["arn"]
    tg = one(graph, "aws:lb/targetGroup:TargetGroup")
    assert i["loadBalancers"] == [{"targetGroupArn": tg.outputs["arn"], "containerName": "app",
                                   "containerPort": 8080}]
    listeners = {r.urn for r in resources_of_type(graph, "aws:lb/listener:Listener")}
    assert listeners <= set(service.depends_on), "the service must wait for the listeners"


def test_capacity_strategy_and_counts_follow_config(graph):
    service = one(graph, "aws:ecs/service:Service")
    strategy = {s["capacityProvider"]: s for s in service.inputs["capacityProviderStrategies"]}
    assert strategy["FARGATE"]["base"] == int(config_value(graph, "fargateBase"))
    assert strategy["FARGATE"]["weight"] == int(config_value(graph, "fargateWeight"))
    assert strategy["FARGATE_SPOT"]["weight"] == int(config_value(graph, "fargateSpotWeight"))
    assert "base" not in strategy["FARGATE_SPOT"]
    assert service.inputs["desiredCount"] == int(config_value(graph, "desiredCount"))
    assert "launchType" not in service.inputs
    cluster = one(graph, "aws:ecs/cluster:Cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]
    providers = one(graph, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert set(providers.inputs["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    # The service's strategy needs the providers associated with the cluster first.
    assert providers.urn in service.explicit_depends_on
    policies = within(graph, "ml-app:infra:ServiceRoles", "aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 2 and all(p.urn in service.depends_on for p in policies)


@pytest.mark.parametrize("stack", ["prod"])
def test_prod_runs_at_least_two_tasks_over_at_least_two_zones_on_demand(graphs, stack):
    graph = graphs[stack]
    service = one(graph, "aws:ecs/service:Service")
    assert service.inputs["desiredCount"] >= 2
    assert one(graph, "aws:appautoscaling/target:Target").inputs["minCapacity"] >= 2
    assert len(service.inputs["networkConfiguration"]["subnets"]) >= 2
    strategy = {s["capacityProvider"]: s for s in service.inputs["capacityProviderStrategies"]}
    assert strategy["FARGATE"]["base"] >= one(graph, "aws:appautoscaling/target:Target").inputs["minCapacity"]
    assert len(resources_of_type(graph, "aws:ec2/natGateway:NatGateway")) >= 2


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


@pytest.mark.parametrize("stack", ["dev"])
def test_a_misspelled_container_key_would_fail(graphs, stack):
    params = register_task_definition(graphs[stack])
    container = json.loads(json.dumps(params["containerDefinitions"][0]))
    container["readOnlyRootFilesystem"] = container.pop("readonlyRootFilesystem")
    params["containerDefinitions"] = [container]
    with pytest.raises(AssertionError, match="readOnlyRootFilesystem"):
        validate("ecs", "RegisterTaskDefinition", params)
