"""A private S3 bucket with every control this project requires of a bucket.

Versioned (an overwritten or deleted object can be recovered), encrypted with the stack's
KMS key (with an S3 Bucket Key, so reads are not one KMS call each), closed to the public and
to ACLs (owner-enforced), refusing plain HTTP and TLS below 1.2, expiring old noncurrent
versions and abandoned multipart uploads. Every bucket of the stack is one of these, so the
controls cannot drift apart between buckets; the audit-log buckets (infra/audit_logs.py),
whose encryption and lifecycle AWS's log delivery dictates, take the rest from here
(``private_and_versioned``, ``bucket_policy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.iam import deny_insecure_transport, policy_document

s3 = aws.s3


@dataclass
class SecureBucketArgs:
    kms_key_arn: pulumi.Input[str]
    noncurrent_days: int                  # how long a replaced or deleted object is recoverable
    keep_noncurrent: int | None = None    # ... and how many older versions survive regardless
    expire_days: int | None = None        # expire current objects too (build artifacts)
    protect: bool = True
    # More statements for the bucket policy (grants to other accounts or services).
    policy_statements: list[dict[str, Any]] = field(default_factory=list)
    bucket_name: pulumi.Input[str] | None = None  # a fixed physical name (else auto-named)
    # S3 server access logs of this bucket go to this bucket (infra/audit_logs.py), under
    # the prefix "<this bucket's logical name>/".
    access_log_bucket: pulumi.Input[str] | None = None


class SecureBucket(pulumi.ComponentResource):
    """Bucket, ownership controls, public access block, versioning, SSE-KMS, TLS-only policy
    and lifecycle. Objects should depend on ``ready`` (encryption and versioning in place)."""

    bucket: s3.Bucket
    bucket_name: pulumi.Output[str]
    arn: pulumi.Output[str]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: SecureBucketArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = s3.Bucket(
            name, bucket=args.bucket_name,
            # force_destroy empties the bucket on destroy: only where data is not protected.
            force_destroy=not args.protect,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        bucket_id = self.bucket.id
        if args.access_log_bucket is not None:
            s3.BucketLogging(f"{name}-access-logs", bucket=bucket_id,
                             target_bucket=args.access_log_bucket, target_prefix=f"{name}/",
                             opts=child)

        access_block, versioning = private_and_versioned(name, bucket_id, child)
        encryption = s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id,
            rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn),
                bucket_key_enabled=True)],
            opts=child)
        s3.BucketPolicy(
            f"{name}-policy", bucket=bucket_id,
            policy=policy_document(bucket_policy(self.bucket.arn, args.policy_statements)),
            # S3 rejects a bucket policy while the public access block is being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access_block]))
        s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket_id, rules=lifecycle_rules(args),
            # Lifecycle rules on noncurrent versions need versioning first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))

        self.bucket_name = self.bucket.bucket
        self.arn = self.bucket.arn
        self.ready = [encryption, versioning]
        self.register_outputs({"bucket": self.bucket_name, "arn": self.arn})


def private_and_versioned(name: str, bucket_id: pulumi.Input[str], opts: pulumi.ResourceOptions
                          ) -> tuple[s3.BucketPublicAccessBlock, s3.BucketVersioning]:
    """Owner-enforced (no ACLs), closed to the public, versioned: what every bucket of the
    stack has, SecureBucket's and the audit logs' (infra/audit_logs.py). Returns the public
    access block (a bucket policy waits for it) and the versioning (lifecycle rules and
    Object Lock wait for it)."""
    s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket_id,
        rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts)
    access_block = s3.BucketPublicAccessBlock(
        f"{name}-public-access", bucket=bucket_id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=opts)
    versioning = s3.BucketVersioning(
        f"{name}-versioning", bucket=bucket_id,
        versioning_configuration=s3.BucketVersioningVersioningConfigurationArgs(
            status="Enabled"),
        opts=opts)
    return access_block, versioning


def bucket_policy(bucket_arn: pulumi.Output[str],
                  more: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """TLS only, and TLS 1.2 at least, for the bucket and its objects; then ``more``."""
    everything = [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")]
    return [
        deny_insecure_transport(everything, actions="s3:*"),
        {
            "Sid": "DenyOutdatedTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": everything,
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
        *more,
    ]


def lifecycle_rules(args: SecureBucketArgs) -> list[s3.BucketLifecycleConfigurationRuleArgs]:
    """Old versions (and with ``expire_days`` current objects) expire; abandoned multipart
    uploads are aborted after a week."""
    everything = s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="")
    return [
        s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-old-versions", status="Enabled", filter=everything,
            expiration=(s3.BucketLifecycleConfigurationRuleExpirationArgs(
                days=args.expire_days) if args.expire_days else None),
            noncurrent_version_expiration=s3.
            BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=args.noncurrent_days,
                newer_noncurrent_versions=args.keep_noncurrent)),
        s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-uploads", status="Enabled", filter=everything,
            abort_incomplete_multipart_upload=s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7)),
    ]
