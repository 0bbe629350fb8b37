"""CrossGuard policy pack for ml-app: `pulumi preview --policy-pack policy`.

The rules live in rules.py as plain functions (the offline tests run the same functions over
the mocked resource graph); this file only wraps them for the Pulumi engine. PolicyPack()
starts the analyzer's gRPC server and blocks, so nothing may import this module.
"""

from pulumi_policy import (EnforcementLevel, PolicyPack, ResourceValidationPolicy,
                           StackValidationPolicy)

from rules import RULES


def _resource_policy(rule):
    def validate(args, report_violation):
        for message in rule.check(args.resource_type, args.props):
            report_violation(message)
    return validate


def _stack_policy(rule):
    def validate(args, report_violation):
        resources = [(r.resource_type, r.props) for r in args.resources]
        for message in rule.check(resources):
            report_violation(message)
    return validate


def _level(rule):
    return EnforcementLevel.MANDATORY if rule.mandatory else EnforcementLevel.ADVISORY


PolicyPack(
    name="ml-app-policies",
    description="Security and resilience rules of the ml-app stacks (see policy/rules.py).",
    policies=[
        StackValidationPolicy(name=rule.name, description=rule.description,
                              validate=_stack_policy(rule), enforcement_level=_level(rule))
        if rule.stack else
        ResourceValidationPolicy(name=rule.name, description=rule.description,
                                 validate=_resource_policy(rule), enforcement_level=_level(rule))
        for rule in RULES
    ],
)
