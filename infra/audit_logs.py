"""Audit logs: where the load balancer's access logs and the buckets' server access logs go.

Two dedicated buckets, because AWS's log delivery dictates their settings (each constraint
from AWS's own documentation, each the reason for a difference from ``SecureBucket``):

* ``<prefix>-audit-logs-*``: the ALB's access logs. ALB delivers only to buckets encrypted
  with S3-managed keys (SSE-S3), so this is the one kind of bucket not under the stack's KMS
  key. In production, S3 Object Lock keeps every log for ``retention_days`` (GOVERNANCE
  mode: no role of the stack may bypass it, infra/boundary.py; an administrator with
  ``s3:BypassGovernanceRetention`` can).
* ``<prefix>-access-logs-*``: S3 server access logs of the model and artifact buckets. S3
  delivers them only to a bucket without Object Lock and with SSE-S3 default encryption, in
  the same account and region; writes come from ``logging.s3.amazonaws.com``, for this
  account's buckets of this stack only (``aws:SourceAccount``, ``aws:SourceArn``). Without
  Object Lock the boundary's ``NoDeletingAuditLogs`` is what keeps the stack's roles from
  deleting them.

Both: versioned, private, owner-enforced (the log deliveries write without ACLs), TLS-only,
kept ``retention_days`` then expired by lifecycle. WAF's logs go to CloudWatch Logs
(infra/waf.py), the stack's KMS key encrypting them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import on_behalf_of_this_account, policy_document
from infra.naming import StackNames
from infra.provider import AwsContext
from infra.storage import bucket_policy, private_and_versioned

s3 = aws.s3
ALB_LOG_PREFIX = "alb"
# ALB's log delivery (AWS's current recommendation in every region, instead of the
# per-region ELB account IDs). AWS documents no aws:SourceArn/aws:SourceAccount for it: the
# object path, which carries this account's ID, is what scopes its writes.
ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"
S3_LOG_DELIVERY = "logging.s3.amazonaws.com"


@dataclass
class AuditLogsArgs:
    context: AwsContext
    names: StackNames
    retention_days: int                 # logRetentionDays
    object_lock: bool                   # production: logs cannot be deleted before they expire
    alb_bucket_name: str | None = None  # auditLogBucket (else auto-named)
    protect: bool = True
    alb: bool = True                    # a load balancer logs here (the ECS target only)


class AuditLogs(pulumi.ComponentResource):
    """The ALB's log bucket and the buckets' access-log bucket."""

    alb_bucket: s3.Bucket | None         # None: no load balancer (SageMaker, Lambda)
    access_log_bucket: s3.Bucket
    ready: list[pulumi.Resource]         # the ALB's bucket policy: ALB checks it on enabling

    def __init__(self, name: str, args: AuditLogsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:AuditLogs", name, None, opts)
        ctx = args.context
        self.alb_bucket, self.ready = None, []
        if args.alb:
            self.alb_bucket, alb_policy = _log_bucket(
                self, f"{name}-audit-logs", args, object_lock=args.object_lock,
                bucket_name=args.alb_bucket_name, delivery=lambda arn: [{
                    "Sid": "AlbAccessLogDelivery",
                    "Effect": "Allow",
                    "Principal": {"Service": ELB_LOG_DELIVERY},
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(arn, f"/{ALB_LOG_PREFIX}/AWSLogs/",
                                                     ctx.account_id, "/*"),
                }])
            self.ready = [alb_policy]
        self.access_log_bucket, _ = _log_bucket(
            # S3 refuses to deliver server access logs to an Object Lock bucket.
            self, f"{name}-access-logs", args, object_lock=False, bucket_name=None,
            delivery=lambda arn: [{
                "Sid": "S3ServerAccessLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": S3_LOG_DELIVERY},
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(arn, "/*"),
                "Condition": on_behalf_of_this_account(
                    ctx, ctx.partition.apply(lambda p: f"arn:{p}:s3:::{args.names.prefix}-*")),
            }])
        self.register_outputs({"alb_bucket": self.alb_bucket.bucket if self.alb_bucket else None,
                               "access_log_bucket": self.access_log_bucket.bucket})


def _log_bucket(parent: pulumi.Resource, name: str, args: AuditLogsArgs, *, object_lock: bool,
                bucket_name: str | None, delivery) -> tuple[s3.Bucket, s3.BucketPolicy]:
    child = pulumi.ResourceOptions(parent=parent)
    bucket = s3.Bucket(name, bucket=bucket_name, object_lock_enabled=object_lock or None,
                       force_destroy=not args.protect,
                       opts=pulumi.ResourceOptions(parent=parent, protect=args.protect))
    access_block, versioning = private_and_versioned(name, bucket.id, child)
    s3.BucketServerSideEncryptionConfiguration(
        # SSE-S3: the only encryption ALB and S3 access-log delivery write to.
        f"{name}-encryption", bucket=bucket.id,
        rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"))],
        opts=child)
    if object_lock:
        s3.BucketObjectLockConfiguration(
            f"{name}-object-lock", bucket=bucket.id,
            object_lock_enabled="Enabled",
            rule=s3.BucketObjectLockConfigurationRuleArgs(
                default_retention=s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                    mode="GOVERNANCE", days=args.retention_days)),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]))
    s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle", bucket=bucket.id, rules=_expire_after(args.retention_days),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]))
    policy = s3.BucketPolicy(
        f"{name}-policy", bucket=bucket.id,
        policy=policy_document(bucket_policy(bucket.arn, delivery(bucket.arn))),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[access_block]))
    return bucket, policy


def _expire_after(days: int) -> list[Any]:
    everything = s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="")
    return [s3.BucketLifecycleConfigurationRuleArgs(
        id="expire-logs", status="Enabled", filter=everything,
        expiration=s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
        # A locked version stays until its retention ends, whatever this says.
        noncurrent_version_expiration=s3.
        BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=1),
        abort_incomplete_multipart_upload=s3.
        BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=7))]
