"""The WAF web ACL (infra/waf.py): rate limit and managed rules, on the load balancer."""

from __future__ import annotations

from tests.infra.harness import config_value, one, resources_of_type


def test_waf_follows_config(graph):
    acls = resources_of_type(graph, "aws:wafv2/webAcl:WebAcl")
    if config_value(graph, "wafEnabled") != "true":
        assert not acls
        return
    [acl] = acls
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    rate = rules["rate-limit-per-ip"]["statement"]["rateBasedStatement"]
    assert rate["limit"] == int(config_value(graph, "wafRateLimit")) and rate["aggregateKeyType"] == "IP"
    common = rules["AWSManagedRulesCommonRuleSet"]["statement"]["managedRuleGroupStatement"]
    assert common["ruleActionOverrides"] == [{"name": "SizeRestrictions_BODY",
                                              "actionToUse": {"count": {}}}]
    assert "AWSManagedRulesKnownBadInputsRuleSet" in rules
    association = one(graph, "aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["resourceArn"] == one(graph, "aws:lb/loadBalancer:LoadBalancer").outputs["arn"]
    assert association.inputs["webAclArn"] == acl.outputs["arn"]
