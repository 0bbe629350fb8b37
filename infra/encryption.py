"""One customer-managed KMS key per stack, for S3, ECR, CloudWatch Logs, SNS and the secret.

One key per stack (not per resource) keeps the key policy readable and the cost at one key;
per-stack (not shared) means destroying dev can never touch prod's data. The key policy lets
IAM policies in this account grant use of the key (which is how the task roles and Secrets
Manager get it), and lets the two AWS services that act without an IAM principal of ours use
it: CloudWatch Logs for this stack's log groups only (the encryption context names the log
group, so the account), and CloudWatch alarms publishing to the encrypted alarm topic, for
this account's alarms of this stack only (``aws:SourceAccount`` and ``aws:SourceArn``:
the confused-deputy protection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import on_behalf_of_this_account, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext


@dataclass
class EncryptionArgs:
    context: AwsContext
    names: StackNames               # the alias, and the log groups the key serves
    protect: bool = True
    deletion_window_days: int = 30  # AWS's maximum: the longest time to notice a mistake
    # Statements other components need (e.g. the delivery pipeline's service principals).
    additional_statements: list[dict[str, Any]] = field(default_factory=list)
    # Log groups outside /<project>/<stack>/ whose name a service fixes (SageMaker's).
    more_log_groups: tuple[str, ...] = ()


class Encryption(pulumi.ComponentResource):
    """The stack's KMS key (rotated yearly) and its alias."""

    key: aws.kms.Key
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: EncryptionArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Encryption", name, None, opts)
        ctx, names = args.context, args.names
        statements: list[dict[str, Any]] = [
            {
                # Without this statement no IAM policy could grant the key, and the account
                # could lock itself out of it. Key policies always use Resource "*" (this key).
                "Sid": "EnableIamPoliciesOfThisAccount",
                "Effect": "Allow",
                "Principal": {"AWS": ctx.arn("iam", "root", region=False)},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                # The encryption context is the log group's ARN: this account's, this
                # stack's groups (and WAF's, which must be named aws-waf-logs-...).
                "Sid": "CloudWatchLogsForThisStacksLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": ctx.service_principal("logs")},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*",
                           "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
                    ctx.arn("logs", f"log-group:{names.log_group_prefix}/*"),
                    ctx.arn("logs", f"log-group:{names.waf_log_group}"),
                    *[ctx.arn("logs", f"log-group:{group}") for group in args.more_log_groups]]}},
            },
            {
                # CloudWatch alarms publish to the KMS-encrypted alarm topic as the service
                # itself, so the service needs the key (AWS's documented statement), for
                # this stack's alarms only.
                "Sid": "CloudWatchAlarmsPublishToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": on_behalf_of_this_account(
                    ctx, ctx.arn("cloudwatch", f"alarm:{names.prefix}-*")),
            },
            *args.additional_statements,
        ]
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{names.prefix}: model bucket, images, logs, alarms, API key",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=args.deletion_window_days,
            policy=policy_document(statements),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.kms.Alias(f"{name}-alias", name=f"alias/{names.prefix}", target_key_id=self.key.key_id,
                      opts=pulumi.ResourceOptions(parent=self))
        self.key_arn = self.key.arn
        self.register_outputs({"key_arn": self.key.arn})
