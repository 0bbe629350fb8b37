"""The load balancer (infra/load_balancer.py): settings, listeners, certificate and DNS."""

from __future__ import annotations

import pytest

from app.config import load_server_settings
from tests.infra.harness import config_value, json_input, one, resources_of_type


def test_alb_and_target_group_settings(graph):
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["dropInvalidHeaderFields"] is True
    assert alb.inputs["idleTimeout"] == 60
    # The task's nginx keeps an idle connection open longer than the ALB does (SERVER_KEEPALIVE
    # as the server reads the task's environment): the ALB closes it first, no random 502s.
    [task] = json_input(one(graph, "aws:ecs/taskDefinition:TaskDefinition"),
                        "containerDefinitions")
    server = load_server_settings({e["name"]: e["value"] for e in task["environment"]})
    assert alb.inputs["idleTimeout"] < server.server_keepalive
    tg = one(graph, "aws:lb/targetGroup:TargetGroup")
    assert tg.inputs["targetType"] == "ip" and tg.inputs["port"] == 8080
    assert tg.inputs["healthCheck"]["path"] == "/readyz"
    assert tg.inputs["healthCheck"]["matcher"] == "200"
    assert tg.inputs["deregistrationDelay"] <= 60


def test_listeners_https_with_redirect_when_a_certificate_exists(graph):
    listeners = {r.inputs["port"]: r.inputs for r in resources_of_type(graph, "aws:lb/listener:Listener")}
    https_configured = bool(config_value(graph, "certificateArn") or config_value(graph, "hostedZoneId"))
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
    assert cert.inputs["domainName"] == config_value(graph, "domainName")
    assert cert.inputs["validationMethod"] == "DNS"
    validation = one(graph, "aws:acm/certificateValidation:CertificateValidation")
    https = [l for l in listeners if l.inputs["protocol"] == "HTTPS"][0]
    assert https.inputs["certificateArn"] == validation.outputs["certificateArn"]
    records = {r.inputs["type"]: r.inputs for r in resources_of_type(graph, "aws:route53/record:Record")}
    assert records["A"]["name"] == config_value(graph, "domainName")
    assert records["A"]["aliases"][0]["name"] == one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["dnsName"]
    assert graph.exports["serviceUrl"] == f"https://{config_value(graph, 'domainName')}"
