"""The API key clients send in ``x-api-key``, kept in Secrets Manager.

The value is generated once by Secrets Manager itself and then left alone by Pulumi
(``ignore_changes``): nobody types it into a config file, and rotating it is one
``aws secretsmanager put-secret-value`` followed by a new deployment (ECS reads secrets when
a task starts). ECS injects it into the container as ``API_KEY``; the task definition holds
only the secret's ARN.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

KEY_LENGTH = 48


@dataclass
class ApiKeyArgs:
    kms_key_arn: pulumi.Input[str]
    # Days a deleted secret stays recoverable (7 to 30); 0 would delete it at once.
    recovery_window_days: int = 30


class ApiKey(pulumi.ComponentResource):
    """A KMS-encrypted secret holding a generated API key."""

    secret_arn: pulumi.Output[str]
    secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: ApiKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:ApiKey", name, None, opts)
        secret = aws.secretsmanager.Secret(
            f"{name}-api-key", description="x-api-key for the prediction routes",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=args.recovery_window_days,
            opts=pulumi.ResourceOptions(parent=self))
        # Letters and digits only: the key travels in an HTTP header and in shell commands.
        generated = aws.secretsmanager.get_random_password_output(
            password_length=KEY_LENGTH, exclude_punctuation=True, include_space=False,
            opts=pulumi.InvokeOptions(parent=self))
        aws.secretsmanager.SecretVersion(
            f"{name}-api-key", secret_id=secret.id,
            secret_string=pulumi.Output.secret(generated.random_password),
            # The invoke returns a new value on every run: keep the first one.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretString"]))
        self.secret_arn = secret.arn
        self.secret_name = secret.name
        self.register_outputs({"secret_arn": self.secret_arn})
