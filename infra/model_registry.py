"""The S3 model registry: the released model versions the service loads at start-up.

The bucket is versioned (an overwritten or deleted object can be recovered), encrypted with
the stack's KMS key (with an S3 Bucket Key, so each object read is not a KMS call), closed to
the public and to ACLs, refuses plain HTTP and TLS below 1.2, and expires old noncurrent
versions. The stack's configured version is uploaded from ``model/artifacts/<name>/<version>/``
exactly as committed, under ``models/<name>/<version>/``.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.iam import deny_insecure_transport, policy_document

NONCURRENT_DAYS = 90          # how long a replaced or deleted object stays recoverable
NONCURRENT_KEEP = 3           # ... and how many older versions are kept regardless of age


@dataclass
class ModelRegistryArgs:
    kms_key_arn: pulumi.Input[str]
    model_dir: Path                  # the committed version folder
    model_prefix: str                # models/<name>/<version>
    files: tuple[str, ...]           # file names in model_dir to upload
    protect: bool = True


class ModelRegistry(pulumi.ComponentResource):
    """Bucket with its security settings, and the deployed model version's objects."""

    bucket: aws.s3.Bucket
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    model_uri: pulumi.Output[str]

    def __init__(self, name: str, args: ModelRegistryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ModelRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            f"{name}-models",
            # force_destroy empties the bucket on destroy: only where data is not protected.
            force_destroy=not args.protect,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        bucket_id = self.bucket.id

        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child)
        access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket_id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=child)
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"),
            opts=child)
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn),
                bucket_key_enabled=True)],
            opts=child)
        aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket_id,
            policy=policy_document([
                deny_insecure_transport([self.bucket.arn,
                                         pulumi.Output.concat(self.bucket.arn, "/*")],
                                        actions="s3:*"),
                {
                    "Sid": "DenyOutdatedTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
                    "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
                },
            ]),
            # S3 rejects a bucket policy while the public access block is being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access_block]))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket_id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions", status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.
                    BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=NONCURRENT_DAYS,
                        newer_noncurrent_versions=NONCURRENT_KEEP)),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-uploads", status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.
                    BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7)),
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))

        for file_name in args.files:
            path = args.model_dir / file_name
            aws.s3.BucketObjectv2(
                f"{name}-{args.model_prefix.replace('/', '-')}-{file_name}",
                bucket=bucket_id, key=f"{args.model_prefix}/{file_name}",
                source=pulumi.FileAsset(str(path)),
                # ETags of KMS-encrypted objects are not MD5s: the content hash drives updates.
                source_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                content_type=mimetypes.guess_type(file_name)[0] or "application/octet-stream",
                server_side_encryption="aws:kms", kms_key_id=args.kms_key_arn,
                bucket_key_enabled=True,
                # Uploads wait for the bucket's encryption and versioning to be in place.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[encryption, versioning]))

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.model_uri = pulumi.Output.concat("s3://", self.bucket.bucket, f"/{args.model_prefix}")
        self.register_outputs({"bucket": self.bucket_name, "model_uri": self.model_uri})
