"""The permissions boundary: the ceiling of every IAM role of the stack, and the home of the
stack's IAM invariants.

A pipeline that deploys IAM needs IAM powers (design.md 11), so what must hold whatever a
role's own policies say is written here, in the managed policy
``<prefix>-permissions-boundary`` that every role of the stack carries: the roles of the
service, of the pipeline and of its builds, and any role the deploy role creates (it may
create none without this boundary). A role's effective permissions are its own policies
intersected with this ceiling, and an explicit Deny here wins over any Allow.

Two halves:

* **The ceiling is the stack** (Allow statements). Every role the deploy role writes a policy
  for, and then runs code as (an ECS task), can reach at most this: resources named
  ``<prefix>-*`` by the stack's services (and the few its target's services name for it:
  SageMaker's log group, target tracking's alarms), resources tagged with the project AND
  the stack, read-only calls, and the few resources outside the stack that the configuration
  names (the Pulumi state, a hosted zone, an existing connection, the next stack's promotion
  bucket). No ``s3:*``, ``kms:*`` or ``secretsmanager:*`` on ``*``: a role that could be
  given everything the boundary allows then still stays inside its stack.
* **The invariants** (Deny statements): no role without this boundary; no IAM change outside
  the stack's service roles and service policies (so no role changes its own or a pipeline
  role's policies, trust or boundary, and no users, groups or keys); attachments only of the
  stack's service policies; no role of the stack approves a deploy (the named approvers do,
  ci/approval.py); nobody changes the pipeline, starts it on revisions of its choosing, or
  deletes audit logs. Which service a service role is passed to is the deploy role's own
  grant (one per ``SERVICE_ROLES`` row): any service role is capped by this ceiling, so
  passing it elsewhere would gain nothing.

Built before any other component: ``every_role_carries(boundary.arn)`` then puts it on every
``aws.iam.Role`` the program creates after that call. The size limit of a managed policy
(6,144 characters without whitespace) is why the ceiling grants whole services (``ecs:*``)
and verb wildcards (``ec2:Delete*``) on the stack's resources where the deploy role's own
policies list exact actions; its ARN patterns name every service (IAM allows no wildcard
in that segment: tests/infra/test_iam.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import pulumi
import pulumi_aws as aws

from infra.iam import Scope, Statement, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext

# Service roles by the service they are passed to: IAM path segment (under
# StackNames.service_path) -> service principal. A new kind of service role is one row here
# (and in its target's ``Target.ROLES``); the deploy role may then create, change and pass
# roles under that path to that service, and to nothing else.
SERVICE_ROLES: dict[str, str] = {
    "ecs-tasks": "ecs-tasks.amazonaws.com",
    "vpc-flow-logs": "vpc-flow-logs.amazonaws.com",
    "sagemaker": "sagemaker.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
}


@dataclass(frozen=True)
class Target:
    """Where the stack's image runs (``ml-app:target``), as IAM sees it. Each target brings
    its kinds of service role and the AWS services only it uses; the ceiling and the deploy
    role's grants hold those of the stack's target and no other's, so an ECS stack's roles
    cannot create a Lambda function, nor a Lambda stack's a VPC. (Switching a stack's target
    changes its boundary and its deploy role: an administrator's ``pulumi up``.)"""

    kind: str = "ecs"                      # ecs | sagemaker | lambda
    function_url_auth: str = "AWS_IAM"     # lambda: the only auth the deploy may give its URL

    # target -> the SERVICE_ROLES kinds it creates
    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "ecs": ("ecs-tasks", "vpc-flow-logs"), "sagemaker": ("sagemaker",),
        "lambda": ("lambda",)}
    # target -> the IAM services only it uses (the network, the ALB with its certificate, DNS
    # record and WAF are ECS's; every target shares S3, ECR, KMS, Logs, CloudWatch, SNS...)
    SERVICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "ecs": ("acm", "ec2", "ecs", "elasticloadbalancing", "route53", "wafv2"),
        "sagemaker": ("sagemaker",), "lambda": ("lambda",)}
    # ... and the actions of a shared service only one target calls, as the lists that
    # ``only`` filters hold them: WAF's log delivery in the ceiling (the deploy role's
    # WafLogDelivery statement goes with WAF itself: ``uses("wafv2")``).
    ACTIONS: ClassVar[dict[str, tuple[str, ...]]] = {"ecs": ("logs:*LogDeliver*",)}

    @property
    def service_roles(self) -> dict[str, str]:
        """The kinds of service role this target creates -> the service they are passed to."""
        return {kind: SERVICE_ROLES[kind] for kind in self.ROLES[self.kind]}

    def uses(self, action_or_service: str) -> bool:
        """Whether an action (``ecs:CreateService``) or a service belongs to this stack:
        shared, or this target's own."""
        service = action_or_service.split(":", 1)[0]
        owners = [t for t, actions in self.ACTIONS.items() if action_or_service in actions] \
            or [t for t, services in self.SERVICES.items() if service in services]
        return not owners or self.kind in owners

    def only(self, actions: Sequence[str]) -> list[str]:
        """``actions`` without those of the other targets' services."""
        return [a for a in actions if self.uses(a)]

# The stack's resources by name, per service: ARN patterns as AWS writes them
# ({partition}, {region}, {account}, {prefix}, {logs}: Scope.arn_of). The deploy role's named
# grants use these per service (pipeline_iam.BY_NAME).
STACK_ARNS: dict[str, tuple[str, ...]] = {
    "s3": ("arn:{partition}:s3:::{prefix}-*", "arn:{partition}:s3:::{prefix}-*/*"),
    "logs": ("arn:{partition}:logs:{region}:{account}:log-group:{logs}/*",
             "arn:{partition}:logs:{region}:{account}:log-group:aws-waf-logs-{prefix}*"),
    "codepipeline": ("arn:{partition}:codepipeline:{region}:{account}:{prefix}",),
}
# The SageMaker and Lambda targets' resources, exactly (not any "<prefix>-*" of the service:
# a training job, a notebook or a second function would run code the stack does not have).
# The deploy role's grants by name use the same patterns (pipeline_iam.TARGET_BY_NAME).
TARGET_ARNS: dict[str, tuple[str, ...]] = {
    "sagemaker": ("arn:{partition}:sagemaker:{region}:{account}:endpoint/{prefix}",
                  "arn:{partition}:sagemaker:{region}:{account}:endpoint-config/{prefix}-*",
                  "arn:{partition}:sagemaker:{region}:{account}:model/{prefix}-*"),
    "lambda": ("arn:{partition}:lambda:{region}:{account}:function:{prefix}-function",
               "arn:{partition}:lambda:{region}:{account}:function:{prefix}-function:*"),
}
# ... and of the services every target shares (logs, cloudwatch), those whose name AWS
# fixes: SageMaker's log group of the endpoint (/aws/sagemaker/Endpoints/<endpoint>). The
# ceiling grants them with the named services' actions (MaxNamed), the deploy role by name.
TARGET_NAMED: dict[str, tuple[str, ...]] = {
    "sagemaker": ("arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/"
                  "{endpoint}",
                  "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/"
                  "{endpoint}:*"),
}
# Target tracking (infra/autoscaling.py): PutScalingPolicy makes Application Auto Scaling
# create two alarms per policy, named by AWS after the scalable target's resource ID,
# "TargetTracking-<resource id>-AlarmHigh-<uuid>" and "...-AlarmLow-<uuid>", and
# DeleteScalingPolicy (or DeregisterScalableTarget) delete them; both with the caller's
# permissions (cloudwatch:PutMetricAlarm, DeleteAlarms, DescribeAlarms: Application Auto
# Scaling User Guide, "Permissions required for actions on target services and CloudWatch").
# The resource IDs of the stack's scalable targets: the ECS service, the endpoint's variant.
SCALABLE_TARGETS: dict[str, str] = {"ecs": "service/{cluster}/{service}",
                                    "sagemaker": "endpoint/{endpoint}/variant/{variant}"}


def tracking_alarms(kind: str, alarms: Sequence[str] = ("AlarmHigh-*", "AlarmLow-*")
                    ) -> tuple[str, ...]:
    """ARN patterns of the target-tracking alarms of the stack's scalable target on target
    ``kind`` (none on a target Application Auto Scaling does not scale: Lambda)."""
    if kind not in SCALABLE_TARGETS:
        return ()
    return tuple(f"arn:{{partition}}:cloudwatch:{{region}}:{{account}}:alarm:TargetTracking-"
                 f"{SCALABLE_TARGETS[kind]}-{alarm}" for alarm in alarms)


# The same, for the ceiling, in fewer characters (the size limit): per service, the resource
# part of "arn:{partition}:<service>:*:{account}:<part>" for the stack's resources of that
# service. The service is always named: "You can't use a wildcard in the service segment"
# (IAM JSON policy elements: Resource). The region is not: a stack's roles are named
# "<prefix>-..." and IAM names are global to the account, so a prefix is one stack's in every
# region of it (tags, MaxTagged, span regions too); "*" there keeps the policy's size
# independent of the region's name. A "*" within the part stays within its colon-separated
# segment unless it ends it, and IAM wildcards are only "*" and "?", hence one pattern per
# separator after the prefix ("cluster/<prefix>", "service/<prefix>/...",
# "task-definition/<prefix>:3"). The ceiling grants "<service>:*" on these (kms: aliases only;
# the key side by its tags), and S3, Logs and CloudWatch's dashboard on CEILING_GLOBAL_NAMED.
CEILING_NAMED: dict[str, tuple[str, ...]] = {
    "cloudwatch": ("alarm:{prefix}-*",),
    "codebuild": ("*/{prefix}-*",),                        # project/, report-group/
    "codepipeline": ("{prefix}",),
    "ecr": ("repository/{prefix}-*",),
    "ecs": ("*/{prefix}", "*/{prefix}/*", "*/{prefix}:*"),  # cluster, service, task-definition
    "elasticloadbalancing": ("*/{prefix}-*",),             # loadbalancer/app/, targetgroup/...
    "kms": ("alias/{prefix}",),
    "secretsmanager": ("secret:{prefix}-*",),
    "sns": ("{prefix}-*",),
    # the web ACL, and AWS's managed rule groups it reads
    "wafv2": ("*/{prefix}-*", "regional/managedruleset/*/*"),
}
CEILING_NAMED_ACTIONS = {"kms": "kms:*Alias"}
# (The bucket pattern's trailing "*" reaches the buckets' objects too.)
CEILING_GLOBAL_NAMED = ("arn:{partition}:cloudwatch::{account}:dashboard/{prefix}*",
                        STACK_ARNS["s3"][0], *STACK_ARNS["logs"])


def ceiling_named(target: Target) -> tuple[list[str], list[str]]:
    """(actions, ARN patterns) of the ceiling's grant by name for a stack on ``target``: the
    services it uses, its target's own named resources (TARGET_NAMED) and tracking alarms
    (as one pattern each: "-Alarm*" for High and Low)."""
    services = [service for service in CEILING_NAMED if target.uses(service)]
    actions = [CEILING_NAMED_ACTIONS.get(service, f"{service}:*")
               for service in (*services, "logs", "s3")]
    patterns = [f"arn:{{partition}}:{service}:*:{{account}}:{part}"
                for service in services for part in CEILING_NAMED[service]]
    return sorted(actions), [*patterns, *CEILING_GLOBAL_NAMED,
                             *TARGET_NAMED.get(target.kind, ()),
                             *tracking_alarms(target.kind, ("Alarm*",))]


# Read-only calls, and calls AWS authorises only on "*" (no resource-level permissions).
# No data reads here: s3:GetObject, secretsmanager:GetSecretValue, logs:GetLogEvents are
# granted by name only.
CEILING_ON_ANY_RESOURCE = (
    "application-autoscaling:Describe*", "cloudwatch:Describe*", "ec2:Describe*",
    "ecr:GetAuthorizationToken", "ecs:DeregisterTaskDefinition", "ecs:Describe*",
    "elasticloadbalancing:Describe*", "kms:ListAliases", "logs:Describe*",
    "route53:GetChange", "secretsmanager:GetRandomPassword", "sns:Unsubscribe",
    # WAF's log delivery to CloudWatch Logs: account-level calls, "*" per AWS's guide.
    # (The log group's resource policy is an administrator's: no role of the stack writes
    # account-level CloudWatch Logs resource policies.)
    "logs:*LogDeliver*")
# SageMaker's hosting publishes the endpoint's instance metrics with the execution role:
# PutMetricData has no resource-level permission, so the ceiling pins the namespace.
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"

# Resources whose ARN holds a generated ID (vpc-..., key/...): created only with the
# project and stack tags in the request (the deploy role's grants list the same actions).
# The GitHub connection and the notification rule are the pipeline's: an administrator's.
CREATE_WITH_STACK_TAG = [
    "acm:RequestCertificate", "application-autoscaling:RegisterScalableTarget",
    "ec2:AllocateAddress",
    "ec2:CreateFlowLogs", "ec2:CreateInternetGateway",
    "ec2:CreateNatGateway", "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup", "ec2:CreateSubnet", "ec2:CreateVpc",
    "ec2:CreateVpcEndpoint", "kms:CreateKey"]
# ... and everything else of these services only on resources that carry both tags.
# Creating something in a foreign VPC authorises the new resource (request tags) and not
# the VPC's tags: it stays possible, and changes nothing that exists (docs/pipeline.md,
# what the boundary cannot do).
TAGGED_SERVICES = ("acm", "application-autoscaling", "codestar-connections",
                   "codestar-notifications", "ec2", "kms")

# Creating a role or changing what it may do: allowed to the deploy role only with the
# boundary (pipeline_iam.deploy_iam), denied to every bounded role without it (below).
ROLE_PERMISSION_ACTIONS = ["iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRolePolicy",
                           "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary",
                           "iam:PutRolePolicy"]
# Every IAM call that changes something (verbs): denied outside the service roles.
IAM_WRITES = ["iam:Add*", "iam:Attach*", "iam:Change*", "iam:Create*", "iam:Deactivate*",
              "iam:Delete*", "iam:Detach*", "iam:Enable*", "iam:PassRole", "iam:Put*",
              "iam:Remove*", "iam:Reset*", "iam:Resync*", "iam:Set*", "iam:Tag*",
              "iam:Untag*", "iam:Update*", "iam:Upload*"]
# The pipeline is changed by an administrator only (docs/pipeline.md, bootstrap): no role of
# the stack creates, changes or deletes a build or the pipeline, injects a source revision
# or starts an execution with revisions of its choosing.
PIPELINE_CHANGES = ["codebuild:*Project", "codebuild:*Webhook",
                    "codebuild:ImportSourceCredentials", "codepipeline:Create*",
                    "codepipeline:Delete*", "codepipeline:Update*",
                    "codepipeline:PutActionRevision", "codepipeline:Put*Job*",
                    "codepipeline:PutWebhook"]
# Audit logs are written by AWS's log delivery and expire by lifecycle; no role deletes them.
LOG_TAMPERING = ["s3:DeleteObject*", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
                 "s3:BypassGovernanceRetention"]
# Buckets of the stack that only an administrator (and AWS's log delivery) configures.
ADMIN_BUCKETS = ("{prefix}-artifacts-*", "{prefix}-promotion-*")
LOG_BUCKETS = "{prefix}-*-logs-*"          # <prefix>-audit-logs-*, <prefix>-access-logs-*


# What a stack publishes to the next stack's promotion bucket, and what that stack's pipeline
# runs (infra/pipeline.py): one key on both sides.
PROMOTED_OBJECT = "source.zip"


@dataclass(frozen=True)
class Promotion:
    """Where this stack's verified revision goes (staging -> prod): the next stack's
    promotion bucket and the account it lives in."""

    bucket: str
    account: str

    @property
    def keys_arn(self) -> str:
        """ARN pattern (``Scope.arn_of``) of the next stack's KMS keys: its account's, the
        key's ID unknown here."""
        return f"arn:{{partition}}:kms:{{region}}:{self.account}:key/*"


@dataclass(frozen=True)
class Outside:
    """What the stack's roles use that the stack does not own, named by its configuration:
    nothing else outside the stack is within reach of any role."""

    s3: tuple[pulumi.Input[str], ...] = ()    # ARNs: the S3 state backend's bucket, objects
    secrets: tuple[pulumi.Input[str], ...] = ()  # the Pulumi Cloud token's secret
    keys: tuple[str, ...] = ()                # the awskms:// secrets provider's key
    connection: str | None = None             # an existing GitHub connection
    hosted_zone_id: str | None = None         # the zone of domainName
    groups: tuple[str, ...] = ()              # approver groups (read to verify an approval)
    # The next stack's bucket this stack's deploy role publishes to (that bucket's policy
    # lets the deploy role alone write).
    promotes_to: Promotion | None = None
    promoted: bool = False                    # this stack's source is a promotion bucket


def policy_name(names: StackNames) -> str:
    return names.name("permissions-boundary")


def _arns(scope: Scope, patterns: Sequence[str]) -> list[pulumi.Input[str]]:
    return [scope.arn_of(p) for p in patterns]


def ceiling(scope: Scope, outside: Outside, target: Target = Target()) -> list[Statement]:
    """Allow statements: the most any role of the stack can ever do."""
    return [*_ceiling_stack(scope, target), *_ceiling_target(scope, target),
            *_ceiling_iam(scope, outside, target), *_ceiling_outside(scope, outside)]


def _ceiling_stack(scope: Scope, target: Target) -> list[Statement]:
    """The stack's resources by name and by tags, and what needs no resource."""
    named_actions, named_patterns = ceiling_named(target)
    on_any, target_creates = (target.only(CEILING_ON_ANY_RESOURCE),
                              target.only(CREATE_WITH_STACK_TAG))
    return [
        {
            # (KMS aliases carry no tags: alias/<prefix> by name, the key side by its tags.)
            "Sid": "MaxNamed",
            "Effect": "Allow",
            "Action": named_actions,
            "Resource": _arns(scope, named_patterns),
        },
        {
            # Read-only calls and calls without resource-level permissions (listed above).
            "Sid": "MaxAnyResource",
            "Effect": "Allow",
            "Action": on_any,
            "Resource": "*",
        },
        {
            # Resource "*": created only with the project and stack tags in the request.
            "Sid": "MaxCreateTagged",
            "Effect": "Allow",
            "Action": target_creates,
            "Resource": "*",
            "Condition": scope.request_tag,
        },
        {
            # Resource "*": anything else only on resources that carry both tags (a new
            # resource carries none yet: creating is the statement above).
            "Sid": "MaxTagged",
            "Effect": "Allow",
            "Action": [f"{service}:*" for service in TAGGED_SERVICES if target.uses(service)],
            "Resource": "*",
            "Condition": scope.resource_tag,
        },
    ]


def _ceiling_target(scope: Scope, target: Target) -> list[Statement]:
    """What only the stack's target needs: its own resources, metrics and tags on create."""
    statements: list[Statement] = []
    if target.kind in TARGET_ARNS:
        statements.append({
            "Sid": "MaxTargetResources",
            "Effect": "Allow",
            "Action": f"{target.kind}:*",
            "Resource": _arns(scope, TARGET_ARNS[target.kind]),
        })
    if target.kind == "sagemaker":
        statements.append({
            # Resource "*" (no resource-level permission): the endpoint's instance metrics.
            "Sid": "MaxInstanceMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": INSTANCE_METRICS_NAMESPACE}},
        })
    if target.uses("ec2"):
        statements.append({
            # Resource "*": EC2 writes the tags of a new resource within its create call.
            "Sid": "MaxTagOnCreate",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "*",
            "Condition": {"Null": {"ec2:CreateAction": "false"}},
        })
    return statements


def _ceiling_iam(scope: Scope, outside: Outside, target: Target) -> list[Statement]:
    """IAM: the target's service roles and policies, reads of the stack's roles, AWS's
    service-linked roles."""
    iam = scope.context.arn
    # Roles only under the path of a known kind (SERVICE_ROLES) of this target: nothing else
    # can be created, so every service role is passable to exactly one service.
    service_roles = [scope.service_roles_arn(kind) for kind in target.service_roles]
    return [
        {
            "Sid": "MaxServiceRoles",
            "Effect": "Allow",
            "Action": ["iam:*"],
            "Resource": [*service_roles, scope.service_policies_arn],
        },
        {
            "Sid": "MaxReadIam",
            "Effect": "Allow",
            "Action": ["iam:Get*", "iam:List*"],
            "Resource": [iam("iam", f"*/{scope.prefix}-*", region=False),
                         iam("iam", "oidc-provider/token.actions.githubusercontent.com",
                             region=False), *outside.groups],
        },
        {
            "Sid": "MaxServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": scope.service_linked_roles_arn,
        },
    ]


def _ceiling_outside(scope: Scope, outside: Outside) -> list[Statement]:
    """The resources outside the stack that its configuration names."""
    found: list[Statement] = []
    if outside.s3:
        found.append({"Sid": "MaxStateBucket", "Effect": "Allow",
                      "Action": "s3:*", "Resource": list(outside.s3)})
    if outside.secrets:
        found.append({"Sid": "MaxStateToken", "Effect": "Allow",
                      "Action": "secretsmanager:GetSecretValue",
                      "Resource": list(outside.secrets)})
    if outside.keys:
        found.append({"Sid": "MaxSecretsKey", "Effect": "Allow",
                      "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                      "Resource": list(outside.keys)})
    if outside.connection:
        found.append({"Sid": "MaxConnection", "Effect": "Allow",
                      "Action": ["codestar-connections:*", "codeconnections:*"],
                      "Resource": outside.connection})
    if outside.hosted_zone_id:
        found.append({"Sid": "MaxHostedZone", "Effect": "Allow",
                      "Action": "route53:*",
                      "Resource": scope.context.arn("route53",
                                                    f"hostedzone/{outside.hosted_zone_id}",
                                                    region=False, account=False)})
    if outside.promotes_to:
        found.append({"Sid": "MaxPromote", "Effect": "Allow",
                      "Action": ["s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt"],
                      "Resource": [scope.s3(f"{outside.promotes_to.bucket}/*"),
                                   scope.arn_of(outside.promotes_to.keys_arn)]})
    return found


def invariants(scope: Scope, boundary_arn: pulumi.Input[str], outside: Outside
               ) -> list[Statement]:
    """Deny statements: what holds for every role of the stack, whatever it is granted."""
    return [*_iam_invariants(scope, boundary_arn), *_pipeline_invariants(scope, outside)]


def _iam_invariants(scope: Scope, boundary_arn: pulumi.Input[str]) -> list[Statement]:
    """No role without the boundary, and no IAM change outside the service roles."""
    return [
        {
            # A Deny on "*": no role of the account gets or keeps permissions without it.
            "Sid": "NoRoleWithoutThisBoundary",
            "Effect": "Deny",
            "Action": ROLE_PERMISSION_ACTIONS,
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"iam:PermissionsBoundary": boundary_arn}},
        },
        {
            # A Deny on "*": no role or user of the account loses its boundary through us.
            "Sid": "NoRemovingBoundaries",
            "Effect": "Deny",
            "Action": "iam:Delete*PermissionsBoundary",
            "Resource": "*",
        },
        {
            # Everything in IAM outside the stack's service roles and service policies:
            # the pipeline's roles (this one's too), their policies, this boundary, other
            # stacks, users, groups, providers. Service-linked roles are AWS's.
            "Sid": "NoIamOutsideServiceRoles",
            "Effect": "Deny",
            "Action": IAM_WRITES,
            "NotResource": [scope.service_roles_arn(), scope.service_policies_arn,
                            scope.service_linked_roles_arn],
        },
        {
            # Even on a service role: only the stack's own service policies are attached
            # (never AdministratorAccess or another stack's).
            "Sid": "AttachOnlyServicePolicies",
            "Effect": "Deny",
            "Action": "iam:AttachRolePolicy",
            "Resource": "*",
            "Condition": {"ArnNotLike": {"iam:PolicyARN": scope.service_policies_arn}},
        },
    ]


def _pipeline_invariants(scope: Scope, outside: Outside) -> list[Statement]:
    """The pipeline is the administrator's, approvals the approvers', audit logs AWS's."""
    iam = scope.context.arn
    statements: list[Statement] = [
        {
            # A Deny on "*": approvals come from the named approvers, never from a role of
            # the stack (the Deploy stage verifies who approved, ci/approval.py).
            "Sid": "NoRoleApproves",
            "Effect": "Deny",
            "Action": "codepipeline:PutApprovalResult",
            "Resource": "*",
        },
        {
            # Executions start from the pipeline's source only (the promotion trigger for a
            # promoted stack): no role picks the revisions an execution runs.
            "Sid": "NoStartWithOtherRevisions",
            "Effect": "Deny",
            "Action": "codepipeline:StartPipelineExecution",
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": iam(
                "iam", f"role/{scope.names.pipeline_role('promotion-trigger')}",
                region=False)}},
        },
        {
            # A Deny on "*": the pipeline and its builds are the administrator's.
            "Sid": "NoChangingThePipeline",
            "Effect": "Deny",
            "Action": PIPELINE_CHANGES,
            "Resource": "*",
        },
        {
            "Sid": "NoDeletingAuditLogs",
            "Effect": "Deny",
            "Action": LOG_TAMPERING,
            "Resource": scope.s3(LOG_BUCKETS.format(prefix=scope.prefix) + "/*"),
        },
        {
            # The artifact and promotion buckets: configured by an administrator.
            "Sid": "NoChangingPipelineBuckets",
            "Effect": "Deny",
            # (Put*Configuration: lifecycle, encryption, replication, inventory...)
            "Action": ["s3:PutBucket*", "s3:DeleteBucket*", "s3:Put*Configuration"],
            "Resource": [scope.s3(p.format(prefix=scope.prefix))
                         for p in ADMIN_BUCKETS[:2 if outside.promoted else 1]],
        },
    ]
    if outside.promoted:
        statements.append({
            # The promotion bucket is written only by the previous stack's deploy role (its
            # bucket policy); no role of this stack writes it.
            "Sid": "NoWritingPromotionBucket",
            "Effect": "Deny",
            "Action": ["s3:PutObject*", "s3:DeleteObject*"],
            "Resource": scope.s3(f"{scope.prefix}-promotion-*/*"),
        })
    return statements


def statements(scope: Scope, boundary_arn: pulumi.Input[str],
               outside: Outside = Outside(), target: Target = Target()) -> list[Statement]:
    """The boundary's document: the ceiling, then the invariants."""
    return ceiling(scope, outside, target) + invariants(scope, boundary_arn, outside)


@dataclass
class PermissionsBoundaryArgs:
    """Where the boundary applies: the stack's account and its names, log groups and tag,
    what outside the stack its configuration names, and where its image runs."""

    context: AwsContext
    names: StackNames
    outside: Outside = field(default_factory=Outside)
    target: Target = field(default_factory=Target)


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
            description="Ceiling of every role of this stack: the stack, and no way out",
            policy=policy_document(statements(Scope(args.context, args.names), own_arn,
                                              args.outside, args.target)),
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
