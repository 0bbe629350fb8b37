"""Behaviour properties: the task, its deployments, the load balancer, scaling, monitoring,
the image and the stack outputs, for each stack."""

from __future__ import annotations

import hashlib
import json

import pytest

from infra import releases
from infra.build_context import build_inputs_hash
from tests.infra.harness import (ROOT, Graph, json_input, one, resources_of_type, run_program,
                                 within)

HEALTH_CHECK = ["CMD", "python", "-c",
                "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("
                "'http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"]


def cfg(graph: Graph, key: str) -> str:
    return graph.config[f"ml-app:{key}"]


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


def test_a_tag_already_in_ecr_is_reused_not_pushed_again():
    """Rollback or revert to earlier build inputs: ECR's tags are immutable and a rebuild is
    not byte-identical, so the program must reference the existing image, not push."""
    first = run_program("dev")
    tag = first.exports["imageTag"]
    digest = "sha256:" + "ab" * 32
    again = run_program("dev", ecr_images={tag: digest, "0123456789abcdef": "sha256:" + "cd" * 32})
    image = one(again, "docker:index/image:Image")
    assert image.inputs["skipPush"] is True
    repo = again.exports["ecrRepositoryUrl"]
    assert container(again)["image"] == again.exports["imageRef"] == f"{repo}@{digest}"
    # another tag in the repository changes nothing
    other = run_program("dev", ecr_images={"0123456789abcdef": "sha256:" + "cd" * 32})
    assert one(other, "docker:index/image:Image").inputs["skipPush"] is False


def test_task_size_roles_platform_and_writable_tmp(graph):
    task = one(graph, "aws:ecs/taskDefinition:TaskDefinition")
    assert task.inputs["cpu"] == cfg(graph, "cpu") and task.inputs["memory"] == cfg(graph, "memory")
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
    assert 30 <= c["stopTimeout"] <= 120   # above gunicorn's 25 s drain, Fargate's maximum 120
    logs = c["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    group = one(graph, "aws:cloudwatch/logGroup:LogGroup", "ml-app:infra:Monitoring")
    assert logs["options"]["awslogs-group"] == group.inputs["name"]
    assert logs["options"]["awslogs-region"] == graph.config["aws:region"]
    assert c["portMappings"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp",
                                  "name": "http", "appProtocol": "http"}]


def test_task_loads_the_configured_model_version_pinned_by_hash(graph):
    e = env(graph)
    bucket = one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry").outputs["bucket"]
    name, version = cfg(graph, "modelName"), cfg(graph, "modelVersion")
    assert e["MODEL_URI"] == f"s3://{bucket}/models/{name}/{version}"
    manifest = releases.MODEL_ROOT / name / version / "manifest.json"
    assert e["MODEL_SHA256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    keys = {o.inputs["key"] for o in resources_of_type(graph, "aws:s3/bucketObjectv2:BucketObjectv2")}
    assert f"models/{name}/{version}/manifest.json" in keys
    assert e["WEB_CONCURRENCY"] == str(max(1, int(cfg(graph, "cpu")) // 1024))
    assert e["METRICS_NAMESPACE"] == f"ml-app/{graph.stack}"
    assert all(isinstance(v, str) and v for v in e.values()), "null or empty env values diff forever"
    assert [x["name"] for x in container(graph)["environment"]] == sorted(e)


def test_api_key_comes_from_secrets_manager_when_enabled(graph):
    secrets = container(graph).get("secrets", [])
    if cfg(graph, "apiKeyEnabled") == "true":
        secret = one(graph, "aws:secretsmanager/secret:Secret", "ml-app:infra:ApiKey")
        assert secrets == [{"name": "API_KEY", "valueFrom": secret.outputs["arn"]}]
        version = one(graph, "aws:secretsmanager/secretVersion:SecretVersion", "ml-app:infra:ApiKey")
        assert version.ignore_changes == ["secretString"]
        assert "API_KEY" not in env(graph)
        assert type(version.raw_inputs["secretString"]).__name__ == "Secret"
    else:
        assert secrets == [] and not resources_of_type(graph, "aws:secretsmanager/secret:Secret")


def test_api_key_can_be_disabled():
    from tests.infra.harness import run_program
    graph = run_program("dev", {"apiKeyEnabled": False})
    assert "secrets" not in container(graph)
    assert not resources_of_type(graph, "aws:secretsmanager/secret:Secret")
    execution = [p for p in resources_of_type(graph, "aws:iam/rolePolicy:RolePolicy")
                 if p.name.endswith("-execution")][0]
    assert "secretsmanager" not in execution.inputs["policy"]


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
    assert strategy["FARGATE"]["base"] == int(cfg(graph, "fargateBase"))
    assert strategy["FARGATE"]["weight"] == int(cfg(graph, "fargateWeight"))
    assert strategy["FARGATE_SPOT"]["weight"] == int(cfg(graph, "fargateSpotWeight"))
    assert "base" not in strategy["FARGATE_SPOT"]
    assert service.inputs["desiredCount"] == int(cfg(graph, "desiredCount"))
    assert "launchType" not in service.inputs
    cluster = one(graph, "aws:ecs/cluster:Cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]
    providers = one(graph, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert set(providers.inputs["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    # The service's strategy needs the providers associated with the cluster first.
    assert providers.urn in service.explicit_depends_on
    policies = within(graph, "ml-app:infra:ServiceRoles", "aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 2 and all(p.urn in service.depends_on for p in policies)


def test_autoscaling_tracks_cpu_memory_and_requests_within_config_bounds(graph):
    target = one(graph, "aws:appautoscaling/target:Target")
    assert target.inputs["minCapacity"] == int(cfg(graph, "minCount"))
    assert target.inputs["maxCapacity"] == int(cfg(graph, "maxCount"))
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
    assert requests["targetValue"] == int(cfg(graph, "scaleRequestsPerTarget"))
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]
    tg = one(graph, "aws:lb/targetGroup:TargetGroup").outputs["arnSuffix"]
    assert requests["predefinedMetricSpecification"]["resourceLabel"] == f"{alb}/{tg}"


# ------------------------------------------------------------------- load balancer --
def test_alb_and_target_group_settings(graph):
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["dropInvalidHeaderFields"] is True
    assert alb.inputs["idleTimeout"] == 60
    tg = one(graph, "aws:lb/targetGroup:TargetGroup")
    assert tg.inputs["targetType"] == "ip" and tg.inputs["port"] == 8080
    assert tg.inputs["healthCheck"]["path"] == "/readyz"
    assert tg.inputs["healthCheck"]["matcher"] == "200"
    assert tg.inputs["deregistrationDelay"] <= 60


def test_listeners_https_with_redirect_when_a_certificate_exists(graph):
    listeners = {r.inputs["port"]: r.inputs for r in resources_of_type(graph, "aws:lb/listener:Listener")}
    https_configured = bool(cfg(graph, "certificateArn") or cfg(graph, "hostedZoneId"))
    if https_configured:
        assert set(listeners) == {80, 443}
        assert listeners[443]["protocol"] == "HTTPS"
        assert listeners[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
        assert listeners[443]["certificateArn"].startswith("arn:aws:acm:")
        assert listeners[80]["defaultActions"] == [{"type": "redirect", "redirect": {
            "protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
        assert graph.exports["serviceUrl"].startswith("https://")
        assert not graph.warnings
    else:
        assert set(listeners) == {80} and listeners[80]["defaultActions"][0]["type"] == "forward"
        assert graph.exports["serviceUrl"].startswith("http://")
        assert any("plain HTTP" in w for w in graph.warnings)


@pytest.mark.parametrize("stack", ["prod"])
def test_prod_is_https_only_with_a_validated_certificate_and_its_dns_name(graphs, stack):
    graph = graphs[stack]
    listeners = resources_of_type(graph, "aws:lb/listener:Listener")
    forwarding = [l.inputs for l in listeners if l.inputs["defaultActions"][0]["type"] == "forward"]
    assert [l["protocol"] for l in forwarding] == ["HTTPS"]
    cert = one(graph, "aws:acm/certificate:Certificate")
    assert cert.inputs["domainName"] == cfg(graph, "domainName")
    assert cert.inputs["validationMethod"] == "DNS"
    validation = one(graph, "aws:acm/certificateValidation:CertificateValidation")
    https = [l for l in listeners if l.inputs["protocol"] == "HTTPS"][0]
    assert https.inputs["certificateArn"] == validation.outputs["certificateArn"]
    records = {r.inputs["type"]: r.inputs for r in resources_of_type(graph, "aws:route53/record:Record")}
    assert records["A"]["name"] == cfg(graph, "domainName")
    assert records["A"]["aliases"][0]["name"] == one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["dnsName"]
    assert graph.exports["serviceUrl"] == f"https://{cfg(graph, 'domainName')}"


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


def test_waf_follows_config(graph):
    acls = resources_of_type(graph, "aws:wafv2/webAcl:WebAcl")
    if cfg(graph, "wafEnabled") != "true":
        assert not acls
        return
    [acl] = acls
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    rate = rules["rate-limit-per-ip"]["statement"]["rateBasedStatement"]
    assert rate["limit"] == int(cfg(graph, "wafRateLimit")) and rate["aggregateKeyType"] == "IP"
    common = rules["AWSManagedRulesCommonRuleSet"]["statement"]["managedRuleGroupStatement"]
    assert common["ruleActionOverrides"] == [{"name": "SizeRestrictions_BODY",
                                              "actionToUse": {"count": {}}}]
    assert "AWSManagedRulesKnownBadInputsRuleSet" in rules
    association = one(graph, "aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["resourceArn"] == one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["arn"]
    assert association.inputs["webAclArn"] == acl.outputs["arn"]


# ---------------------------------------------------------------------- monitoring --
def test_alarms_cover_the_failure_modes_and_notify_the_topic(graph):
    topic = one(graph, "aws:sns/topic:Topic").outputs["arn"]
    alarms = {a.inputs["name"].removeprefix(f"ml-app-{graph.stack}-"): a.inputs
              for a in resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(alarms) == len(resources_of_type(graph, "aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert set(alarms) >= {"error-rate", "latency-p99", "unhealthy-targets", "cpu-high",
                           "memory-high", "tasks-below-desired", "error-log-lines"}
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic], name
    assert alarms["error-rate"]["threshold"] == int(cfg(graph, "alarmErrorRatePercent"))
    assert alarms["latency-p99"]["threshold"] == int(cfg(graph, "alarmLatencyP99Ms")) / 1000
    assert alarms["latency-p99"]["extendedStatistic"] == "p99"
    expression = [q for q in alarms["tasks-below-desired"]["metricQueries"] if q.get("expression")]
    assert expression[0]["expression"] == "desired - running"
    subscriptions = within(graph, "ml-app:infra:Monitoring",
                           "aws:sns/topicSubscription:TopicSubscription")
    email = cfg(graph, "alarmEmail")
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


# ----------------------------------------------------------------- image, outputs --
def test_image_is_built_for_amd64_from_the_dockerfile_and_tagged_by_content(graph):
    image = one(graph, "docker:index/image:Image")
    build = image.inputs["build"]
    assert build["platform"] == "linux/amd64"
    assert build["context"] == "." and build["dockerfile"] == "Dockerfile"
    # The same call as the program's (so the cached hash: app/ may change while tests run);
    # test_build_context.py checks what the hash covers.
    tag = build_inputs_hash(ROOT, "Dockerfile", "linux/amd64", ())[:16]
    repo = one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage").outputs["repositoryUrl"]
    assert image.inputs["imageName"] == f"{repo}:{tag}"
    assert graph.exports["imageTag"] == tag
    assert image.inputs["buildOnPreview"] is False
    # The registry block carries the ECR password, so the engine keeps it secret.
    assert type(image.raw_inputs["registry"]).__name__ == "Secret"
    assert image.inputs["registry"]["username"] == "AWS"
    assert image.inputs["registry"]["server"] == repo


EXPORTS = {"serviceUrl", "ecrRepositoryUrl", "imageRef", "modelUri", "modelBucket",
           "clusterName", "serviceName", "logGroupName", "alarmTopicArn", "dashboardUrl",
           "taskDefinitionArn", "kmsKeyArn", "consoleLinks"}


def test_stack_outputs(graph):
    assert EXPORTS <= set(graph.exports), EXPORTS - set(graph.exports)
    # docs/deploy.md's "Outputs" table names every output of the stack.
    section = (ROOT / "docs" / "deploy.md").read_text().split("## 5. Outputs", 1)[1]
    table = section.split("\n## ", 1)[0]
    undocumented = [k for k in graph.exports if f"`{k}`" not in table]
    assert not undocumented, f"add to the outputs table of docs/deploy.md: {undocumented}"
    assert graph.exports["imageRef"] == container(graph)["image"]
    assert graph.exports["modelUri"] == env(graph)["MODEL_URI"]
    assert graph.exports["clusterName"] == graph.exports["serviceName"] == f"ml-app-{graph.stack}"
    assert all(link.startswith("https://") for link in graph.exports["consoleLinks"].values())
    assert not graph.secret_exports
