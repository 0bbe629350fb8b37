"""The S3 model registry: the released model versions the service loads at start-up.

A ``SecureBucket`` (versioned, SSE-KMS, private, TLS-only; see infra/storage.py) holding
the stack's configured version, uploaded from ``model/artifacts/<name>/<version>/`` exactly
as committed, under ``models/<name>/<version>/``. Old versions stay in the bucket (a model
rollback is a config change, not a re-upload); replaced objects stay recoverable for
``NONCURRENT_DAYS``.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.releases import ModelVersion
from infra.storage import SecureBucket, SecureBucketArgs

NONCURRENT_DAYS = 90          # how long a replaced or deleted object stays recoverable
NONCURRENT_KEEP = 3           # ... and how many older versions are kept regardless of age


@dataclass(frozen=True)
class ModelDeployment:
    """What any compute target needs to serve the registry's deployed model version: the
    environment that names and pins it (``MODEL_URI``, ``MODEL_SHA256``, read by app/config.py)
    and the S3 objects its role must read. ECS, SageMaker and Lambda take it whole, so what is
    deployed is decided here once."""

    environment: Mapping[str, pulumi.Input[str]]
    object_arns: tuple[pulumi.Input[str], ...]     # s3:GetObject on exactly these


@dataclass
class ModelRegistryArgs:
    kms_key_arn: pulumi.Input[str]
    model: ModelVersion              # the committed version to upload
    protect: bool = True
    access_log_bucket: pulumi.Input[str] | None = None   # S3 server access logs go there


class ModelRegistry(pulumi.ComponentResource):
    """The model bucket and the deployed model version's objects."""

    bucket: aws.s3.Bucket
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    model: ModelVersion
    model_uri: pulumi.Output[str]
    deployment: ModelDeployment

    def __init__(self, name: str, args: ModelRegistryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ModelRegistry", name, None, opts)
        storage = SecureBucket(f"{name}-models", SecureBucketArgs(
            kms_key_arn=args.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
            keep_noncurrent=NONCURRENT_KEEP, protect=args.protect,
            access_log_bucket=args.access_log_bucket),
            opts=pulumi.ResourceOptions(parent=self))

        model = args.model
        for file_name in model.files:
            path = model.folder / file_name
            aws.s3.BucketObjectv2(
                f"{name}-{model.prefix.replace('/', '-')}-{file_name}",
                bucket=storage.bucket.id, key=f"{model.prefix}/{file_name}",
                source=pulumi.FileAsset(str(path)),
                # ETags of KMS-encrypted objects are not MD5s: the content hash drives updates.
                source_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                content_type=mimetypes.guess_type(file_name)[0] or "application/octet-stream",
                server_side_encryption="aws:kms", kms_key_id=args.kms_key_arn,
                bucket_key_enabled=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=storage.ready))

        self.bucket = storage.bucket
        self.bucket_name = storage.bucket_name
        self.bucket_arn = storage.arn
        self.model = model
        self.model_uri = pulumi.Output.concat("s3://", self.bucket_name, f"/{model.prefix}")
        self.deployment = ModelDeployment(
            environment={"MODEL_URI": self.model_uri, "MODEL_SHA256": model.manifest_sha256},
            # Only the deployed version's objects; the app never lists the bucket.
            object_arns=(pulumi.Output.concat(self.bucket_arn, f"/{model.prefix}/*"),))
        self.register_outputs({"bucket": self.bucket_name, "model_uri": self.model_uri})
