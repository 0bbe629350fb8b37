"""IAM policy statements of the delivery pipeline (infra/pipeline.py), as plain data.

Four kinds of principal, least privilege first:

* the CodePipeline service role: artifacts, the GitHub connection, start its three builds,
  publish approval notifications;
* the Test and Preview builds: their own log group and artifacts; Preview also reads the
  stack's configuration (read-only, no data) and the Pulumi state;
* the GitHub pull-request preview role: the same read-only access, through OIDC;
* the Deploy build: what ``pulumi up`` of this stack needs, scoped to the stack's resources
  by name (every physical name starts with ``<project>-<stack>``), by the project and stack
  tags that the provider's default tags put on every resource, and in IAM to the stack's
  service roles and service policies (under ``/<project>/<stack>/service/``). The pipeline
  itself (its roles, policies, builds and buckets) is an administrator's: the deploy role
  cannot change the machinery that runs it (docs/pipeline.md, bootstrap).

The permissions boundary (infra/boundary.py) is the ceiling of every one of these roles and
of every role the deploy creates; the invariants that must hold whatever a policy here says
are Deny statements there.

Each ``"Resource": "*"`` below says why. Statement functions return lists of dicts whose
values may be Outputs; ``infra.iam.policy_document`` serialises them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pulumi

from infra.boundary import (CREATE_WITH_STACK_TAG, PROMOTED_OBJECT, ROLE_PERMISSION_ACTIONS,
                            STACK_ARNS, TARGET_ARNS, TARGET_NAMED, Promotion, Target,
                            tracking_alarms)
from infra.iam import Scope, Statement
from infra.provider import AwsContext

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


@dataclass(frozen=True)
class StateBackend:
    """Where ``pulumi preview`` and ``pulumi up`` keep the stack's state (pulumiBackend)."""

    kind: str                              # cloud | s3
    token_secret: str | None = None        # cloud: Secrets Manager name or ARN of the token
    state_bucket: str | None = None        # s3: bucket of the self-managed backend
    secrets_key_arn: str | None = None     # s3: KMS key of the awskms:// secrets provider

    def token_secret_arn(self, context: AwsContext) -> pulumi.Output[str] | None:
        """IAM needs an ARN; Secrets Manager appends 6 random characters to a name."""
        if self.kind != "cloud" or not self.token_secret:
            return None
        if self.token_secret.startswith("arn:"):
            return pulumi.Output.from_input(self.token_secret)
        return context.arn("secretsmanager", f"secret:{self.token_secret}-??????")


def connection_service(connection_arn: str | None) -> str:
    """The IAM service of a GitHub connection: console connections made since 2024 are AWS
    CodeConnections ARNs, older ones (and the one this stack creates) CodeStar's."""
    return ("codeconnections" if ":codeconnections:" in (connection_arn or "")
            else "codestar-connections")


# ------------------------------------------------------ the pipeline and its previews ----
def pipeline_service(scope: Scope, *, artifact_bucket_arn: pulumi.Input[str],
                     kms_key_arn: pulumi.Input[str], source: list[Statement],
                     project_arns: Sequence[pulumi.Input[str]],
                     alarm_topic_arn: pulumi.Input[str]) -> list[Statement]:
    """The CodePipeline service role: artifacts, its source, its builds, approvals."""
    return [
        {
            "Sid": "Artifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            "Resource": pulumi.Output.concat(artifact_bucket_arn, "/*"),
        },
        {
            # CodePipeline checks the artifact store's versioning before a run.
            "Sid": "ArtifactBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning", "s3:GetBucketLocation"],
            "Resource": artifact_bucket_arn,
        },
        {
            "Sid": "ArtifactKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": kms_key_arn,
            "Condition": scope.via("s3"),
        },
        *source,
        {
            "Sid": "RunTheStageBuilds",
            "Effect": "Allow",
            "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
            "Resource": list(project_arns),
        },
        {
            "Sid": "ApprovalNotifications",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": alarm_topic_arn,
        },
    ]


def github_source(connection_arn: pulumi.Input[str],
                  configured_connection: str | None) -> list[Statement]:
    """The pipeline's source when it is the stack's branch: the GitHub connection."""
    return [{
        "Sid": "GithubSource",
        "Effect": "Allow",
        "Action": f"{connection_service(configured_connection)}:UseConnection",
        "Resource": connection_arn,
    }]


def promotion_source(bucket_arn: pulumi.Input[str]) -> list[Statement]:
    """The pipeline's source when the stack is promoted to: the object the previous stack's
    deploy role published, and its versions (CodePipeline records the version it ran)."""
    return [
        {
            "Sid": "PromotedSource",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": pulumi.Output.concat(bucket_arn, "/*"),
        },
        {
            "Sid": "PromotedSourceBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning", "s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": bucket_arn,
        },
    ]


def github_environment_trust(provider_arn: pulumi.Input[str], repository: str,
                             environment: str) -> list[Statement]:
    """Trust of the GitHub preview role: only jobs of this repository that run in the GitHub
    environment named after the stack (its protection rules, e.g. required reviewers, run
    before GitHub issues the token), through GitHub's OIDC provider, for STS's audience.
    A pull request's own workflow file cannot get this token without that environment."""
    return [{
        "Sid": "ThisRepositorysEnvironment",
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
            f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:environment:{environment}",
        }},
    }]


def approver_statements(scope: Scope, pipeline_arn: pulumi.Input[str],
                        artifact_bucket_arn: pulumi.Input[str],
                        kms_key_arn: pulumi.Input[str]) -> list[Statement]:
    """The managed policy ``<prefix>-approve`` for the named approvers (an administrator
    attaches it to them): approve or reject this pipeline's approval only, after reading
    the preview artifact."""
    return [
        {
            "Sid": "ApproveThisPipeline",
            "Effect": "Allow",
            "Action": "codepipeline:PutApprovalResult",
            "Resource": pulumi.Output.concat(pipeline_arn, "/Approval/Approve"),
        },
        {
            "Sid": "ReadThisPipeline",
            "Effect": "Allow",
            "Action": ["codepipeline:GetPipeline", "codepipeline:GetPipelineExecution",
                       "codepipeline:GetPipelineState", "codepipeline:ListActionExecutions",
                       "codepipeline:ListPipelineExecutions"],
            "Resource": pipeline_arn,
        },
        {
            "Sid": "ReadThePreview",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": pulumi.Output.concat(artifact_bucket_arn, "/*"),
        },
        {
            "Sid": "DecryptThePreview",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn,
            "Condition": scope.via("s3"),
        },
    ]


# --------------------------------------------------------------------------- shared parts --
def build_basics(scope: Scope, log_group_arn: pulumi.Input[str],
                 artifact_bucket_arn: pulumi.Input[str], kms_key_arn: pulumi.Input[str],
                 *, write_artifacts: bool) -> list[Statement]:
    """What every CodeBuild project needs: its log group, the pipeline's artifacts, the key."""
    object_actions = ["s3:GetObject", "s3:GetObjectVersion"]
    if write_artifacts:
        object_actions.append("s3:PutObject")
    return [
        {
            "Sid": "WriteOwnBuildLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": pulumi.Output.concat(log_group_arn, ":log-stream:*"),
        },
        {
            "Sid": "PipelineArtifacts",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": pulumi.Output.concat(artifact_bucket_arn, "/*"),
        },
        {
            "Sid": "ArtifactKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": kms_key_arn,
            "Condition": scope.via("s3"),
        },
    ]


def test_reports(scope: Scope, project_name: str) -> Statement:
    """CodeBuild test reports (the JUnit file of ``make test``), this project's only."""
    return {
        "Sid": "TestReports",
        "Effect": "Allow",
        "Action": ["codebuild:CreateReportGroup", "codebuild:CreateReport",
                   "codebuild:UpdateReport", "codebuild:BatchPutTestCases"],
        "Resource": scope.arn("codebuild", f"report-group/{project_name}-*"),
    }


def state_backend(scope: Scope, backend: StateBackend, *, write: bool) -> list[Statement]:
    """Read (preview) or read and write (deploy) the Pulumi state of this stack."""
    if backend.kind == "cloud":
        return [{
            "Sid": "PulumiCloudAccessToken",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": backend.token_secret_arn(scope.context),
        }]
    bucket = backend.state_bucket
    object_actions = ["s3:GetObject"] + (["s3:PutObject", "s3:DeleteObject"] if write else [])
    return [
        {
            "Sid": "PulumiStateList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": scope.s3(str(bucket)),
            "Condition": {"StringLike": {"s3:prefix": [".pulumi", ".pulumi/*"]}},
        },
        {
            "Sid": "PulumiStateObjects",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": scope.s3(f"{bucket}/.pulumi/*"),
        },
        {
            # The stack's secrets provider (awskms://): preview decrypts, deploy also encrypts.
            "Sid": "PulumiSecretsProvider",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"] + (["kms:Encrypt", "kms:GenerateDataKey"] if write else []),
            "Resource": backend.secrets_key_arn,
        },
    ]


# Read-only metadata calls that `pulumi preview` and `pulumi up` make (invokes, reads after
# create, refresh). No data-plane reads: no s3:GetObject, no secretsmanager:GetSecretValue.
READ_ACTIONS = sorted([
    "ec2:DescribeAddresses", "ec2:DescribeAddressesAttribute", "ec2:DescribeAvailabilityZones",
    "ec2:DescribeFlowLogs", "ec2:DescribeInternetGateways", "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkAcls", "ec2:DescribeNetworkInterfaces", "ec2:DescribePrefixLists",
    "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets", "ec2:DescribeTags", "ec2:DescribeVpcAttribute",
    "ec2:DescribeVpcEndpoints", "ec2:DescribeVpcs",
    "ecs:DescribeCapacityProviders", "ecs:DescribeClusters", "ecs:DescribeServices",
    "ecs:DescribeTaskDefinition", "ecs:ListTagsForResource",
    "elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:ListTagsForResource",
    "cloudwatch:DescribeAlarms", "cloudwatch:GetDashboard", "cloudwatch:ListTagsForResource",
    "logs:DescribeLogGroups", "logs:DescribeMetricFilters", "logs:ListTagsForResource",
    "sns:GetSubscriptionAttributes", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic",
    "sns:ListTagsForResource",
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases",
    "kms:ListResourceTags",
    "s3:GetAccelerateConfiguration", "s3:GetBucketAcl", "s3:GetBucketCORS",
    "s3:GetBucketLocation", "s3:GetBucketLogging", "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls", "s3:GetBucketPolicy", "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment", "s3:GetBucketTagging", "s3:GetBucketVersioning",
    "s3:GetBucketWebsite", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
    "ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:ListImages",
    "ecr:GetRepositoryPolicy", "ecr:ListTagsForResource",
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy",
    "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:ListTagsForResource",
    "codebuild:BatchGetProjects", "codepipeline:GetPipeline",
    "codepipeline:ListTagsForResource", "codestar-connections:GetConnection",
    "codestar-connections:ListTagsForResource",
    "codestar-notifications:DescribeNotificationRule",
    "codestar-notifications:ListTagsForResource",
    "acm:DescribeCertificate", "acm:ListTagsForCertificate",
    "route53:GetChange", "route53:GetHostedZone", "route53:ListResourceRecordSets",
    "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeModel", "sagemaker:ListTags",
    "lambda:GetAlias", "lambda:GetFunction", "lambda:GetFunctionCodeSigningConfig",
    "lambda:GetFunctionConcurrency", "lambda:GetFunctionConfiguration",
    "lambda:GetFunctionUrlConfig", "lambda:GetPolicy",
    "lambda:GetProvisionedConcurrencyConfig", "lambda:ListTags",
    "lambda:ListVersionsByFunction",
])


# IAM reads are scoped to the stack's own roles, policies and the GitHub OIDC provider.
READ_IAM_ACTIONS = sorted([
    "iam:GetOpenIDConnectProvider", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:GetRole",
    "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
    "iam:ListPolicyVersions", "iam:ListRolePolicies",
])


def read_stack(scope: Scope, target: Target = Target()) -> list[Statement]:
    """Read the configuration of the stack's resources (those of its target), and make the
    program's invokes (every run, a preview included, calls ``ecr.get_authorization_token``
    and, with ``apiKeyEnabled``, ``secretsmanager.get_random_password``)."""
    reads = target.only(READ_ACTIONS)
    return [
        {
            # Describe/List/Get calls on metadata only. Many of them (ec2:Describe*, the List
            # calls) have no resource-level permissions, and the rest would need the ARNs of
            # resources a preview has not created yet: "*" for this read-only set.
            "Sid": "ReadStackConfiguration",
            "Effect": "Allow",
            "Action": reads,
            "Resource": "*",
        },
        {
            "Sid": "ReadStackIam",
            "Effect": "Allow",
            "Action": READ_IAM_ACTIONS,
            "Resource": [scope.arn("iam", f"role/{scope.prefix}-*", region=False),
                         scope.arn("iam", f"policy/{scope.prefix}-*", region=False),
                         scope.arn("iam", f"oidc-provider/{GITHUB_OIDC_HOST}", region=False)],
        },
        {
            # ecr:GetAuthorizationToken has no resource-level permissions: AWS requires "*".
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            # The API key's generator (infra/secrets.py): no resource-level permissions, so
            # AWS requires "*"; it returns random characters and reads nothing.
            "Sid": "GenerateApiKey",
            "Effect": "Allow",
            "Action": "secretsmanager:GetRandomPassword",
            "Resource": "*",
        },
    ]


# ------------------------------------------------------------------------------ deploy ----
# What the deploy does to a log group of the stack (its own, and SageMaker's, whose name AWS
# fixes).
LOG_GROUP_ACTIONS = ["logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DeleteLogGroup",
                     "logs:DeleteMetricFilter", "logs:DeleteRetentionPolicy",
                     "logs:DisassociateKmsKey", "logs:PutMetricFilter",
                     "logs:PutRetentionPolicy", "logs:TagResource", "logs:UntagResource"]

# Writes on resources whose ARN carries the stack's physical-name prefix: (Sid, actions, ARN
# patterns as AWS writes them; {prefix} and {logs}, the log-group path, are the stack's).
BY_NAME: tuple[tuple[str, list[str], tuple[str, ...]], ...] = (
    ("S3BucketsOfThisStack",
     ["s3:CreateBucket", "s3:DeleteBucket", "s3:DeleteBucketPolicy",
      "s3:ListBucket", "s3:ListBucketVersions", "s3:PutBucketOwnershipControls",
      "s3:PutBucketPolicy", "s3:PutBucketPublicAccessBlock",
      "s3:PutBucketLogging", "s3:PutBucketObjectLockConfiguration",
      "s3:PutBucketTagging", "s3:PutBucketVersioning",
      "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration"],
     STACK_ARNS["s3"][:1]),
    ("S3ObjectsOfThisStack",
     ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject",
      "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging"],
     STACK_ARNS["s3"][1:]),
    ("EcrRepositoryAndPush",
     ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload", "ecr:CreateRepository",
      "ecr:DeleteLifecyclePolicy", "ecr:DeleteRepository",
      "ecr:DeleteRepositoryPolicy", "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload", "ecr:PutImage",
      "ecr:PutImageScanningConfiguration", "ecr:PutImageTagMutability",
      "ecr:PutLifecyclePolicy", "ecr:SetRepositoryPolicy", "ecr:TagResource",
      "ecr:UntagResource", "ecr:UploadLayerPart"],
     ("arn:{partition}:ecr:{region}:{account}:repository/{prefix}-*",)),
    ("LogGroupsOfThisStack", LOG_GROUP_ACTIONS, STACK_ARNS["logs"]),
    ("AlarmTopicOfThisStack",
     ["sns:CreateTopic", "sns:DeleteTopic", "sns:SetTopicAttributes",
      "sns:Subscribe", "sns:TagResource", "sns:UntagResource"],
     ("arn:{partition}:sns:{region}:{account}:{prefix}-*",)),
    # GetSecretValue: the smoke test reads the API key it must send.
    ("SecretsOfThisStack",
     ["secretsmanager:CreateSecret", "secretsmanager:DeleteResourcePolicy",
      "secretsmanager:DeleteSecret", "secretsmanager:GetSecretValue",
      "secretsmanager:PutResourcePolicy", "secretsmanager:PutSecretValue",
      "secretsmanager:TagResource", "secretsmanager:UntagResource",
      "secretsmanager:UpdateSecret"],
     ("arn:{partition}:secretsmanager:{region}:{account}:secret:{prefix}-*",)),
    ("AlarmsAndDashboardOfThisStack",
     ["cloudwatch:DeleteAlarms", "cloudwatch:DeleteDashboards",
      "cloudwatch:PutDashboard", "cloudwatch:PutMetricAlarm",
      "cloudwatch:TagResource", "cloudwatch:UntagResource"],
     ("arn:{partition}:cloudwatch:{region}:{account}:alarm:{prefix}-*",
      "arn:{partition}:cloudwatch::{account}:dashboard/{prefix}*")),
    ("LoadBalancerOfThisStack",
     ["elasticloadbalancing:AddListenerCertificates",
      "elasticloadbalancing:AddTags", "elasticloadbalancing:CreateListener",
      "elasticloadbalancing:CreateLoadBalancer",
      "elasticloadbalancing:CreateRule",
      "elasticloadbalancing:CreateTargetGroup",
      "elasticloadbalancing:DeleteListener",
      "elasticloadbalancing:DeleteLoadBalancer",
      "elasticloadbalancing:DeleteRule",
      "elasticloadbalancing:DeleteTargetGroup",
      "elasticloadbalancing:ModifyListener",
      "elasticloadbalancing:ModifyListenerAttributes",
      "elasticloadbalancing:ModifyLoadBalancerAttributes",
      "elasticloadbalancing:ModifyRule",
      "elasticloadbalancing:ModifyTargetGroup",
      "elasticloadbalancing:ModifyTargetGroupAttributes",
      "elasticloadbalancing:RemoveListenerCertificates",
      "elasticloadbalancing:RemoveTags",
      "elasticloadbalancing:SetSecurityGroups",
      "elasticloadbalancing:SetSubnets", "elasticloadbalancing:SetWebAcl"],
     ("arn:{partition}:elasticloadbalancing:{region}:{account}:loadbalancer/app/{prefix}-*/*",
      "arn:{partition}:elasticloadbalancing:{region}:{account}:listener/app/{prefix}-*/*/*",
      "arn:{partition}:elasticloadbalancing:{region}:{account}:"
      "listener-rule/app/{prefix}-*/*/*/*",
      "arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/{prefix}-*/*")),
    ("EcsClusterServiceAndTasksOfThisStack",
     ["ecs:CreateCluster", "ecs:CreateService", "ecs:DeleteCluster",
      "ecs:DeleteService",
      "ecs:PutClusterCapacityProviders", "ecs:RegisterTaskDefinition",
      "ecs:TagResource", "ecs:UntagResource", "ecs:UpdateCluster",
      "ecs:UpdateClusterSettings", "ecs:UpdateService"],
     ("arn:{partition}:ecs:{region}:{account}:cluster/{prefix}",
      "arn:{partition}:ecs:{region}:{account}:service/{prefix}/*",
      "arn:{partition}:ecs:{region}:{account}:task-definition/{prefix}:*")),
    # No resource-level permissions: ecs:DeregisterTaskDefinition (old revisions of the task
    # definition) and sns:Unsubscribe (the alarm e-mail) require "*".
    ("NoResourceLevelPermissions", ["ecs:DeregisterTaskDefinition", "sns:Unsubscribe"], ("*",)),
    ("WebAclOfThisStack",
     ["wafv2:AssociateWebACL", "wafv2:CreateWebACL", "wafv2:DeleteLoggingConfiguration",
      "wafv2:DeleteWebACL", "wafv2:DisassociateWebACL", "wafv2:PutLoggingConfiguration",
      "wafv2:TagResource", "wafv2:UntagResource", "wafv2:UpdateWebACL"],
     ("arn:{partition}:wafv2:{region}:{account}:regional/webacl/{prefix}-*/*",
      "arn:{partition}:wafv2:{region}:{account}:regional/managedruleset/*/*",
      "arn:{partition}:elasticloadbalancing:{region}:{account}:loadbalancer/app/{prefix}-*/*")),
    # The Deploy stage checks who approved this execution before it deploys (ci/approval.py).
    ("ReadWhoApprovedThisExecution",
     ["codepipeline:GetPipelineExecution", "codepipeline:ListActionExecutions"],
     STACK_ARNS["codepipeline"][:1]),
)


# What Application Auto Scaling does with the caller's permissions when the deploy puts or
# deletes a target-tracking policy: the policy's two alarms (boundary.tracking_alarms).
# (DescribeAlarms, and the scaled resource's Describe calls, are in READ_ACTIONS; ECS's
# UpdateService and SageMaker's UpdateEndpointWeightsAndCapacities are granted by name.)
TRACKING_ALARM_ACTIONS = ["cloudwatch:DeleteAlarms", "cloudwatch:PutMetricAlarm"]


# The targets' own resources, by name (infra/naming.py names them): the alarms target
# tracking creates for the ECS service or the endpoint's variant; SageMaker's endpoint
# (fixed name) with its models and configurations (Pulumi-named <prefix>-model-*,
# <prefix>-config-*, replaced on change), its log group, whose name SageMaker fixes;
# Lambda's function with its versions and alias. Each also lets the smoke test call it
# (InvokeEndpoint; the Function URL needs InvokeFunctionUrl and InvokeFunction).
TARGET_BY_NAME: dict[str, tuple[tuple[str, list[str], tuple[str, ...]], ...]] = {
    "ecs": (
        ("TargetTrackingAlarmsOfThisStack", TRACKING_ALARM_ACTIONS, tracking_alarms("ecs")),
    ),
    "sagemaker": (
        ("TargetTrackingAlarmsOfThisStack", TRACKING_ALARM_ACTIONS,
         tracking_alarms("sagemaker")),
        ("SageMakerEndpointOfThisStack",
         ["sagemaker:AddTags", "sagemaker:CreateEndpoint", "sagemaker:CreateEndpointConfig",
          "sagemaker:CreateModel", "sagemaker:DeleteEndpoint",
          "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel", "sagemaker:DeleteTags",
          "sagemaker:InvokeEndpoint", "sagemaker:UpdateEndpoint",
          # Registering the variant with Application Auto Scaling checks the caller may
          # change its capacity.
          "sagemaker:UpdateEndpointWeightsAndCapacities"],
         TARGET_ARNS["sagemaker"]),
        ("SageMakerLogGroupOfThisStack", LOG_GROUP_ACTIONS, TARGET_NAMED["sagemaker"]),
    ),
    "lambda": (
        ("LambdaFunctionOfThisStack",
         ["lambda:CreateAlias", "lambda:CreateFunction", "lambda:DeleteAlias",
          "lambda:DeleteFunction", "lambda:DeleteFunctionConcurrency",
          "lambda:DeleteFunctionUrlConfig", "lambda:DeleteProvisionedConcurrencyConfig",
          "lambda:InvokeFunction", "lambda:InvokeFunctionUrl", "lambda:PublishVersion",
          "lambda:PutFunctionConcurrency", "lambda:PutProvisionedConcurrencyConfig",
          "lambda:TagResource", "lambda:UntagResource", "lambda:UpdateAlias",
          "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration"],
         TARGET_ARNS["lambda"]),
    ),
}


def deploy_by_name(scope: Scope, target: Target = Target()) -> list[Statement]:
    """Writes on resources whose ARN carries the stack's physical-name prefix (BY_NAME, the
    rows of the other targets' services left out, then TARGET_BY_NAME)."""
    statements = []
    for sid, actions, patterns in (*BY_NAME, *TARGET_BY_NAME.get(target.kind, ())):
        actions = target.only(actions)
        if not actions:
            continue
        arns = [scope.arn_of(p) for p in patterns]
        statements.append({"Sid": sid, "Effect": "Allow", "Action": actions,
                           "Resource": arns[0] if len(arns) == 1 else arns})
    if target.kind == "lambda":
        statements += _function_url(scope, target)
    return statements


def _function_url(scope: Scope, target: Target) -> list[Statement]:
    """The Function URL, with the authentication the configuration names and no other
    (``lambda:FunctionUrlAuthType``): a deploy role cannot open a public URL on a stack whose
    configuration says AWS_IAM, production's included. Only a NONE URL needs the public
    resource permissions the provider adds (and removes) for it."""
    function = [scope.arn_of(p) for p in TARGET_ARNS["lambda"]]
    statements: list[Statement] = [{
        "Sid": "FunctionUrlWithTheConfiguredAuth",
        "Effect": "Allow",
        "Action": ["lambda:CreateFunctionUrlConfig", "lambda:UpdateFunctionUrlConfig"],
        "Resource": function,
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": target.function_url_auth}},
    }]
    if target.function_url_auth == "NONE":
        statements.append({
            "Sid": "PublicFunctionUrlPermission",
            "Effect": "Allow",
            "Action": ["lambda:AddPermission", "lambda:RemovePermission"],
            "Resource": function,
        })
    return statements


# Resources whose ARN holds a generated ID (vpc-..., key/...): created only with the project
# and stack tags in the request (boundary.CREATE_WITH_STACK_TAG), changed or deleted only
# while they carry both. (RegisterScalableTarget is both: a new scalable target with its
# tags, and an update of min or max capacity, which the provider sends without tags.)
CHANGE_WITH_STACK_TAG = [
    "acm:AddTagsToCertificate", "acm:DeleteCertificate",
    "acm:RemoveTagsFromCertificate",
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:TagResource",
    "application-autoscaling:UntagResource",
    "ec2:AssociateRouteTable", "ec2:AttachInternetGateway",
    "ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateRoute", "ec2:CreateTags", "ec2:DeleteFlowLogs",
    "ec2:DeleteInternetGateway", "ec2:DeleteNatGateway", "ec2:DeleteRoute",
    "ec2:DeleteRouteTable", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet",
    "ec2:DeleteTags", "ec2:DeleteVpc", "ec2:DeleteVpcEndpoints",
    "ec2:DetachInternetGateway", "ec2:DisassociateAddress",
    "ec2:DisassociateRouteTable", "ec2:ModifySecurityGroupRules",
    "ec2:ModifySubnetAttribute", "ec2:ModifyVpcAttribute",
    "ec2:ModifyVpcEndpoint", "ec2:ReleaseAddress", "ec2:ReplaceRoute",
    "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
    "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    "kms:CancelKeyDeletion", "kms:CreateAlias",
    "kms:DeleteAlias", "kms:EnableKeyRotation", "kms:PutKeyPolicy", "kms:RetireGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias",
    "kms:UpdateKeyDescription"]


def deploy_by_tag(scope: Scope, target: Target = Target()) -> list[Statement]:
    """Resources whose ARN is not known before they exist (generated IDs): created only with
    the project and stack tags, changed or deleted only while they carry both (those of the
    stack's target's services)."""
    return [*_create_with_stack_tag(scope, target), *_change_with_stack_tag(scope, target),
            *_stack_key(scope)]


def _create_with_stack_tag(scope: Scope, target: Target) -> list[Statement]:
    creates = target.only(CREATE_WITH_STACK_TAG)
    ec2_creates = [a.removeprefix("ec2:") for a in creates if a.startswith("ec2:")]
    statements: list[Statement] = [
        {
            # Resource "*": the ARN of a resource being created is not known; the request
            # must carry both tags (the provider's default tags always do).
            "Sid": "CreateOnlyWithStackTag",
            "Effect": "Allow",
            "Action": creates,
            "Resource": "*",
            "Condition": scope.request_tag,
        },
    ]
    if target.uses("ec2"):
        statements.append({
            # EC2 tags are written by the create call itself (TagSpecifications).
            "Sid": "TagOnCreate",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "*",
            "Condition": {"StringEquals": {"ec2:CreateAction": ec2_creates}},
        })
    return statements


def _change_with_stack_tag(scope: Scope, target: Target) -> list[Statement]:
    changes = target.only(CHANGE_WITH_STACK_TAG)
    return [
        {
            # Resource "*" with both tags as the condition: generated IDs (vpc-..., key/...).
            "Sid": "ChangeOnlyStackTaggedResources",
            "Effect": "Allow",
            "Action": changes,
            "Resource": "*",
            "Condition": scope.resource_tag,
        },
        {
            # Resource "*" with both tags: the stack's key, used only by the services that
            # encrypt for the deploy (model objects in S3, the API key in Secrets Manager,
            # image layers in ECR), never directly.
            "Sid": "UseTheStackKeyThroughItsServices",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {**scope.resource_tag["StringEquals"],
                                           **scope.via("s3", "secretsmanager", "ecr")[
                                               "StringEquals"]}},
        },
        *([{
            # WAF's log delivery to CloudWatch Logs (ECS: the ALB's WAF): account-level calls
            # without resource-level permissions (AWS's guide asks for "*"). The log group's
            # resource policy (infra/waf.py) is an administrator's to write: account-level
            # CloudWatch Logs policies are permissions management.
            "Sid": "WafLogDelivery",
            "Effect": "Allow",
            "Action": ["logs:CreateLogDelivery", "logs:DeleteLogDelivery",
                       "logs:DescribeResourcePolicies", "logs:GetLogDelivery",
                       "logs:ListLogDeliveries", "logs:UpdateLogDelivery"],
            "Resource": "*",
        }] if target.uses("wafv2") else []),
    ]


def _stack_key(scope: Scope) -> list[Statement]:
    """Grants on the stack's key for AWS services, and its alias."""
    return [
        {
            # Resource "*" with the stack tag: ECR (a KMS-encrypted repository) and Secrets
            # Manager create grants on the stack's key for the caller; only for AWS services.
            # (RetireGrant, which this condition key does not cover, is in the list above.)
            "Sid": "KeyGrantsForAwsServices",
            "Effect": "Allow",
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {**scope.resource_tag,
                          "Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
        {
            # Aliases carry no tags: the stack's alias by name (the key side is tag-scoped).
            "Sid": "KeyAliasOfThisStack",
            "Effect": "Allow",
            "Action": ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            "Resource": scope.arn("kms", f"alias/{scope.prefix}"),
        },
    ]


def deploy_outside_the_stack(scope: Scope, *, hosted_zone_id: str | None,
                             domain_name: str | None, approver_groups: Sequence[str] = (),
                             promotes_to: Promotion | None = None) -> list[Statement]:
    """What the deploy uses that the stack does not own, so neither its name prefix nor its
    tags reach it: in a hosted zone, the records of ``domainName`` (the alias and the
    certificate's validation record); the approver groups (read, to verify an approval);
    the next stack's promotion object (written after the smoke test passed)."""
    statements: list[Statement] = []
    if hosted_zone_id and domain_name:
        statements.append({
            "Sid": "RecordsOfTheDomainName",
            "Effect": "Allow",
            "Action": "route53:ChangeResourceRecordSets",
            "Resource": scope.context.arn("route53", f"hostedzone/{hosted_zone_id}",
                                          region=False, account=False),
            # Only the name itself and names below it (ACM's _<token>.<name> record).
            "Condition": {"ForAllValues:StringLike": {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames":
                    [domain_name, f"*.{domain_name}"]}},
        })
    if approver_groups:
        statements.append({
            "Sid": "ReadTheApproverGroups",
            "Effect": "Allow",
            "Action": "iam:GetGroup",
            "Resource": list(approver_groups),
        })
    if promotes_to:
        bucket_arn = scope.s3(promotes_to.bucket)
        statements += [
            {
                "Sid": "PublishTheVerifiedRevision",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": scope.s3(f"{promotes_to.bucket}/{PROMOTED_OBJECT}"),
            },
            {
                # The next stack's key (its account's, its ID unknown here): only through S3
                # and only for that bucket (multipart uploads also decrypt).
                "Sid": "EncryptForTheNextStack",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": scope.arn_of(promotes_to.keys_arn),
                "Condition": {
                    **scope.via("s3"),
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [
                        bucket_arn, pulumi.Output.concat(bucket_arn, "/*")]},
                },
            },
        ]
    return statements


def deploy_iam(scope: Scope, boundary_arn: pulumi.Input[str],
               target: Target = Target()) -> list[Statement]:
    """The stack's service roles and service policies (under ``/<project>/<stack>/service/``),
    each role carrying the permissions boundary; nothing else in IAM."""
    return [*_service_roles_and_policies(scope, boundary_arn, target),
            *_pass_service_roles(scope, target)]


def _service_roles_and_policies(scope: Scope, boundary_arn: pulumi.Input[str],
                                target: Target) -> list[Statement]:
    # Roles only under the path of a kind of service role of the target (boundary.Target).
    roles = [scope.service_roles_arn(kind) for kind in target.service_roles]
    policies = scope.service_policies_arn
    boundary = {"ArnEquals": {"iam:PermissionsBoundary": boundary_arn}}
    return [
        {
            # Creating a service role, or changing its permissions, only with the boundary
            # attached: nothing the deploy creates can exceed it.
            "Sid": "ServiceRolesOnlyWithTheBoundary",
            "Effect": "Allow",
            "Action": [a for a in ROLE_PERMISSION_ACTIONS
                       if a not in ("iam:AttachRolePolicy", "iam:DetachRolePolicy")],
            "Resource": roles,
            "Condition": boundary,
        },
        {
            # Attach only the stack's own service policies (never AdministratorAccess).
            "Sid": "AttachOnlyTheStacksServicePolicies",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": roles,
            "Condition": {**boundary, "ArnLike": {"iam:PolicyARN": policies}},
        },
        {
            # Their trust and description; the boundary keeps every other role out of reach.
            "Sid": "ManageServiceRoles",
            "Effect": "Allow",
            "Action": ["iam:DeleteRole", "iam:TagRole", "iam:UntagRole",
                       "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
                       "iam:UpdateRoleDescription"],
            "Resource": roles,
        },
        {
            "Sid": "ServicePolicies",
            "Effect": "Allow",
            # (An update is CreatePolicyVersion with SetAsDefault: no SetDefaultPolicyVersion.)
            "Action": ["iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy",
                       "iam:DeletePolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"],
            "Resource": policies,
        },
    ]


def _pass_service_roles(scope: Scope, target: Target) -> list[Statement]:
    """Each kind of service role to its service only, and the service-linked roles the
    target's services need."""
    # One statement per kind of service role (boundary.SERVICE_ROLES).
    statements: list[Statement] = [{
        "Sid": f"Pass{''.join(p.title() for p in kind.split('-'))}RolesToTheirService",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": scope.service_roles_arn(kind),
        "Condition": {"StringEquals": {"iam:PassedToService": service}},
    } for kind, service in target.service_roles.items()]
    if SERVICE_LINKED_ROLES[target.kind]:
        statements.append({
            "Sid": "ServiceLinkedRolesTheStackNeeds",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": scope.service_linked_roles_arn,
            "Condition": {"StringEquals": {
                "iam:AWSServiceName": SERVICE_LINKED_ROLES[target.kind]}},
        })
    return statements


# The service-linked roles the stack's services need (each created by AWS once per account,
# on the first use).
SERVICE_LINKED_ROLES = {
    "ecs": ["ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com",
            "ecs.application-autoscaling.amazonaws.com"],
    "sagemaker": ["sagemaker.application-autoscaling.amazonaws.com"],
    "lambda": [],
}


# The managed policies the pipeline's roles share (each holds at most 6,144 characters, so
# the deploy's permissions are split in three): key (name <prefix>-<key>) -> (description,
# statements of (scope, boundary ARN, the stack's target)).
MANAGED_POLICIES: dict[str, tuple[str, Callable[[Scope, Any, Target], list[Statement]]]] = {
    "read-stack": ("Read the stack's configuration (no data): preview and refresh",
                   lambda scope, boundary_arn, target: read_stack(scope, target)),
    "deploy-named": ("pulumi up: resources named <prefix>-*",
                     lambda scope, boundary_arn, target: deploy_by_name(scope, target)),
    "deploy-tagged": ("pulumi up: resources tagged with the project and the stack",
                      lambda scope, boundary_arn, target: deploy_by_tag(scope, target)),
    "deploy-iam": ("pulumi up: the stack's service roles, under the boundary", deploy_iam),
}
