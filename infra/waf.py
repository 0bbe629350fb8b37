"""An optional WAF web ACL in front of the ALB: a per-IP rate limit and AWS managed rules.

Rules, in order: block an IP above the configured request rate; AWS's IP reputation list;
the common rule set (OWASP-style protections); known bad inputs (Log4Shell and the like).
The common rule set's 8 KB body-size rule is switched to count-only: a prediction batch is
legitimately larger (the app itself caps bodies at MAX_BODY_BYTES, 1 MiB by default).

With audit logs on, every request WAF inspects is logged to CloudWatch Logs, in a log group
WAF requires to be named ``aws-waf-logs-...`` (so it lives outside the stack's ``/<project>/
<stack>`` path, and the key policy names it), encrypted with the stack's key, with the API
key header redacted. The log group's resource policy lets CloudWatch Logs' delivery service
write for this account's web ACLs only (WAF would otherwise write one itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import on_behalf_of_this_account, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext

wafv2 = aws.wafv2


REDACTED_HEADERS = ("x-api-key",)      # never in the logs: the API key itself
LOG_DELIVERY = "delivery.logs.amazonaws.com"


@dataclass
class WafLogging:
    """Where WAF logs every request it inspects (auditLogs)."""

    context: AwsContext
    names: StackNames
    kms_key_arn: pulumi.Input[str]
    retention_days: int


@dataclass
class FirewallArgs:
    load_balancer_arn: pulumi.Input[str]
    rate_limit: int                      # requests per 5 minutes per IP
    metric_prefix: str
    logging: WafLogging | None = None


def _visibility(metric: str) -> wafv2.WebAclVisibilityConfigArgs:
    return wafv2.WebAclVisibilityConfigArgs(cloudwatch_metrics_enabled=True,
                                            metric_name=metric, sampled_requests_enabled=True)


def _rule_visibility(metric: str) -> wafv2.WebAclRuleVisibilityConfigArgs:
    return wafv2.WebAclRuleVisibilityConfigArgs(cloudwatch_metrics_enabled=True,
                                                metric_name=metric, sampled_requests_enabled=True)


def _managed(name: str, priority: int, prefix: str,
             count_only: tuple[str, ...] = ()) -> wafv2.WebAclRuleArgs:
    return wafv2.WebAclRuleArgs(
        name=name, priority=priority,
        override_action=wafv2.WebAclRuleOverrideActionArgs(none={}),
        statement=wafv2.WebAclRuleStatementArgs(
            managed_rule_group_statement=wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs(
                vendor_name="AWS", name=name,
                rule_action_overrides=[
                    wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArgs(
                        name=rule, action_to_use={"count": {}})
                    for rule in count_only] or None)),
        visibility_config=_rule_visibility(f"{prefix}-{name}"))


class Firewall(pulumi.ComponentResource):
    """Regional WAF web ACL associated with the load balancer."""

    web_acl_arn: pulumi.Output[str]

    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Firewall", name, None, opts)
        prefix = args.metric_prefix
        acl = wafv2.WebAcl(
            f"{name}-waf", scope="REGIONAL", description="rate limit and AWS managed rules",
            default_action=wafv2.WebAclDefaultActionArgs(allow={}),
            rules=[
                wafv2.WebAclRuleArgs(
                    name="rate-limit-per-ip", priority=0,
                    action=wafv2.WebAclRuleActionArgs(block={}),
                    statement=wafv2.WebAclRuleStatementArgs(
                        rate_based_statement=wafv2.WebAclRuleStatementRateBasedStatementArgs(
                            limit=args.rate_limit, aggregate_key_type="IP",
                            evaluation_window_sec=300)),
                    visibility_config=_rule_visibility(f"{prefix}-rate-limit")),
                _managed("AWSManagedRulesAmazonIpReputationList", 1, prefix),
                _managed("AWSManagedRulesCommonRuleSet", 2, prefix,
                         count_only=("SizeRestrictions_BODY",)),
                _managed("AWSManagedRulesKnownBadInputsRuleSet", 3, prefix),
            ],
            visibility_config=_visibility(prefix),
            opts=pulumi.ResourceOptions(parent=self))
        wafv2.WebAclAssociation(f"{name}-waf", resource_arn=args.load_balancer_arn,
                                web_acl_arn=acl.arn, opts=pulumi.ResourceOptions(parent=self))
        if args.logging:
            _logging(name, args.logging, acl, parent=self)
        self.web_acl_arn = acl.arn
        self.register_outputs({"web_acl_arn": acl.arn})


def _logging(name: str, args: WafLogging, acl: wafv2.WebAcl, parent: pulumi.Resource) -> None:
    """The aws-waf-logs-<prefix> log group, its delivery policy, WAF's logging config."""
    ctx, child = args.context, pulumi.ResourceOptions(parent=parent)
    group = aws.cloudwatch.LogGroup(f"{name}-waf-logs", name=args.names.waf_log_group,
                                    retention_in_days=args.retention_days,
                                    kms_key_id=args.kms_key_arn, opts=child)
    policy = aws.cloudwatch.LogResourcePolicy(
        f"{name}-waf-logs", policy_name=args.names.name("waf-logs"),
        policy_document=policy_document([{
            "Sid": "WafLogDeliveryForThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": LOG_DELIVERY},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": pulumi.Output.concat(group.arn, ":log-stream:*"),
            "Condition": on_behalf_of_this_account(ctx, ctx.arn("logs", "*")),
        }]), opts=child)
    wafv2.WebAclLoggingConfiguration(
        f"{name}-waf-logs", resource_arn=acl.arn, log_destination_configs=[group.arn],
        redacted_fields=[wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
            single_header=wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs(
                name=header)) for header in REDACTED_HEADERS],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy]))
