"""The S3 model registry: the released model versions the service loads at start-up.

A ``SecureBucket`` (versioned, SSE-KMS, private, TLS-only; see infra/storage.py) holding
every version the stack's ``ml-app:models`` lists, each uploaded from
``model/artifacts/<name>/<version>/`` exactly as committed, under
``models/<name>/<version>/``. Old versions stay in the bucket (a model rollback is a config
change, not a re-upload); replaced objects stay recoverable for ``NONCURRENT_DAYS``.

The objects are encrypted without an S3 Bucket Key, so that each one's KMS encryption context
is its own ARN (with a Bucket Key it is the bucket's): the application role's key grant can
then name exactly the deployed versions' prefixes (infra/iam.py). A task decrypts a handful
of objects at start-up, so the KMS requests a Bucket Key would save are a few per task.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.releases import ModelVersion
from infra.storage import SecureBucket, SecureBucketArgs

NONCURRENT_DAYS = 90          # how long a replaced or deleted object stays recoverable
NONCURRENT_KEEP = 3           # ... and how many older versions are kept regardless of age


@dataclass(frozen=True)
class ModelDeployment:
    """What any compute target needs to serve the registry's deployed model versions: the
    environment that names and pins them (``MODEL_URI``, ``MODEL_SHA256``: comma-separated,
    the default model first, read by app/config.py) and the S3 objects its role must read.
    ECS, SageMaker and Lambda take it whole, so what is deployed is decided here once."""

    environment: Mapping[str, pulumi.Input[str]]
    object_arns: tuple[pulumi.Input[str], ...]     # s3:GetObject on exactly these

    def app_environment(self, metrics_namespace: str) -> dict[str, pulumi.Input[str]]:
        """The environment every target gives the app (app/config.py): its log level, the
        stack's metrics namespace (the dashboard's), and the deployed model versions."""
        return {"LOG_LEVEL": "INFO", "METRICS_NAMESPACE": metrics_namespace,
                **self.environment}


@dataclass
class ModelRegistryArgs:
    kms_key_arn: pulumi.Input[str]
    models: Sequence[ModelVersion]   # the committed versions to upload, the default first
    protect: bool = True
    access_log_bucket: pulumi.Input[str] | None = None   # S3 server access logs go there


class ModelRegistry(pulumi.ComponentResource):
    """The model bucket and the deployed model versions' objects."""

    bucket: aws.s3.Bucket
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    models: tuple[ModelVersion, ...]
    model_uris: list[pulumi.Output[str]]     # s3://<bucket>/models/<name>/<version>, in order
    deployment: ModelDeployment

    def __init__(self, name: str, args: ModelRegistryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ModelRegistry", name, None, opts)
        storage = SecureBucket(f"{name}-models", SecureBucketArgs(
            kms_key_arn=args.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
            keep_noncurrent=NONCURRENT_KEEP, protect=args.protect,
            access_log_bucket=args.access_log_bucket),
            opts=pulumi.ResourceOptions(parent=self))

        for model in args.models:
            for file_name in model.files:
                self._upload(name, model, file_name, storage, args.kms_key_arn)

        self.bucket = storage.bucket
        self.bucket_name = storage.bucket_name
        self.bucket_arn = storage.arn
        self.models = tuple(args.models)
        self.model_uris = [pulumi.Output.concat("s3://", self.bucket_name, f"/{m.prefix}")
                           for m in self.models]
        self.deployment = ModelDeployment(
            environment={
                "MODEL_URI": pulumi.Output.all(*self.model_uris).apply(",".join),
                "MODEL_SHA256": ",".join(m.manifest_sha256 for m in self.models)},
            # Only the deployed versions' objects; the app never lists the bucket.
            object_arns=tuple(pulumi.Output.concat(self.bucket_arn, f"/{m.prefix}/*")
                              for m in self.models))
        self.register_outputs({"bucket": self.bucket_name, "model_uris": self.model_uris})

    def _upload(self, name: str, model: ModelVersion, file_name: str, storage: SecureBucket,
                kms_key_arn: pulumi.Input[str]) -> aws.s3.BucketObjectv2:
        path = model.folder / file_name
        return aws.s3.BucketObjectv2(
            f"{name}-{model.prefix.replace('/', '-')}-{file_name}",
            bucket=storage.bucket.id, key=f"{model.prefix}/{file_name}",
            source=pulumi.FileAsset(str(path)),
            # ETags of KMS-encrypted objects are not MD5s: the content hash drives updates.
            source_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
            content_type=mimetypes.guess_type(file_name)[0] or "application/octet-stream",
            server_side_encryption="aws:kms", kms_key_id=kms_key_arn,
            # The object's own ARN as its encryption context (see the module docstring).
            bucket_key_enabled=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=storage.ready))
