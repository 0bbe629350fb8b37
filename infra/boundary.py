"""The permissions boundary: the ceiling of every IAM role of the stack, and the home of the
stack's IAM invariants.

A pipeline that deploys IAM needs IAM powers (design.md 11), so what must hold whatever a
role's own policies say is written here, as Deny statements of the managed policy
``<prefix>-permissions-boundary`` that every role of the stack carries: the roles of the
service, of the pipeline and of its builds, and any role the deploy role creates (it may
create none without this boundary). A role's effective permissions are its own policies
intersected with this ceiling, and an explicit Deny here wins over any Allow.

Built before any other component: ``every_role_carries(boundary.arn)`` then puts it on every
``aws.iam.Role`` the program creates after that call.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Scope, Statement, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext

# The services this stack's roles use (the service, the pipeline, the builds); every other
# service is out of reach of every role, whatever its policies say.
BOUNDARY_SERVICES = ("acm", "application-autoscaling", "cloudwatch", "codebuild",
                     "codeconnections", "codepipeline", "codestar-connections",
                     "codestar-notifications", "ec2",
                     "ecr", "ecs", "elasticloadbalancing", "iam", "kms", "logs", "route53",
                     "s3", "secretsmanager", "sns", "wafv2")

# Creating a role or changing what it may do: allowed to the deploy role only with the
# boundary (pipeline_iam.deploy_iam), denied to every bounded role without it (below).
ROLE_PERMISSION_ACTIONS = ["iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRolePolicy",
                           "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary",
                           "iam:PutRolePolicy"]


def policy_name(names: StackNames) -> str:
    return names.name("permissions-boundary")


def statements(scope: Scope, boundary_arn: pulumi.Input[str]) -> list[Statement]:
    """The boundary's document: a ceiling, never a grant."""
    roles = scope.arn("iam", "role/*", region=False)
    return [
        {
            # A boundary only caps: "*" here grants nothing by itself. The services are the
            # ones this stack (service, pipeline, builds) uses; everything else is out.
            "Sid": "CeilingServicesOfThisStack",
            "Effect": "Allow",
            "Action": [f"{service}:*" for service in BOUNDARY_SERVICES],
            "Resource": "*",
        },
        {
            "Sid": "NoRoleWithoutThisBoundary",
            "Effect": "Deny",
            "Action": ROLE_PERMISSION_ACTIONS,
            "Resource": roles,
            "Condition": {"ArnNotEquals": {"iam:PermissionsBoundary": boundary_arn}},
        },
        {
            # A Deny on "*": no role or user of the account loses its boundary through us.
            "Sid": "NoRemovingBoundaries",
            "Effect": "Deny",
            "Action": ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"],
            "Resource": "*",
        },
        {
            "Sid": "NoEditingThisBoundary",
            "Effect": "Deny",
            "Action": ["iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                       "iam:SetDefaultPolicyVersion"],
            "Resource": boundary_arn,
        },
        {
            # A Deny on "*": the stack has no users, groups or access keys, ever.
            "Sid": "NoUsersGroupsOrKeys",
            "Effect": "Deny",
            "Action": ["iam:AddUserToGroup", "iam:AttachGroupPolicy", "iam:AttachUserPolicy",
                       "iam:CreateAccessKey", "iam:CreateGroup", "iam:CreateLoginProfile",
                       "iam:CreateUser", "iam:PutGroupPolicy", "iam:PutUserPolicy",
                       "iam:UpdateLoginProfile"],
            "Resource": "*",
        },
    ]


@dataclass
class PermissionsBoundaryArgs:
    """Where the boundary applies: the stack's account and its names, log groups and tag."""

    context: AwsContext
    names: StackNames


class PermissionsBoundary(pulumi.ComponentResource):
    """The managed policy every role of the stack carries (``<prefix>-permissions-boundary``)."""

    policy: aws.iam.Policy
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: PermissionsBoundaryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        # The type token stays "cicd" (where the boundary was first built): a new token
        # would replace the policy, and every role, in deployed stacks.
        super().__init__("ml-app:cicd:PermissionsBoundary", name, None, opts)
        own_name = policy_name(args.names)
        own_arn = args.context.arn("iam", f"policy/{own_name}", region=False)
        self.policy = aws.iam.Policy(
            f"{name}-permissions-boundary", name=own_name,
            description="Ceiling of every role of this stack: its services only, no way out",
            policy=policy_document(statements(Scope(args.context, args.names), own_arn)),
            opts=pulumi.ResourceOptions(parent=self))
        self.arn = self.policy.arn
        self.register_outputs({"arn": self.arn})


def every_role_carries(boundary_arn: pulumi.Input[str]) -> None:
    """Register a stack transformation that sets ``permissions_boundary`` on every IAM role
    created after this call (a role that already sets one keeps it)."""
    def transformation(args: pulumi.ResourceTransformationArgs):
        if args.type_ != "aws:iam/role:Role" or args.props.get("permissions_boundary"):
            return None
        return pulumi.ResourceTransformationResult(
            props={**args.props, "permissions_boundary": boundary_arn}, opts=args.opts)

    # The SDK-side transformation (not register_resource_transform): it runs in this
    # process, so the offline tests under mocks see its effect too.
    pulumi.runtime.register_stack_transformation(transformation)
