"""The stack's one AWS provider, and the account facts every ARN is built from.

Every AWS resource of the program uses this explicit provider (the stack files disable the
default one): its ``default_tags`` put project, stack, owner and cost centre on every
resource that accepts tags, and ``allowed_account_ids`` (when configured) stops a deploy that
runs with the wrong credentials before it changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import StackConfig


def tagged_provider(cfg: StackConfig) -> aws.Provider:
    """The provider every resource and invoke of the stack uses (its default tags mark them)."""
    return aws.Provider(
        cfg.names.prefix,
        region=cfg.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.names.tags),
        allowed_account_ids=[cfg.aws_account_id] if cfg.aws_account_id else None,
    )


@dataclass(frozen=True)
class AwsContext:
    """Where the stack runs: used to write exact ARNs into policies."""

    region: str
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]
    dns_suffix: pulumi.Output[str]

    def arn(self, service: str, resource: str, *, region: bool = True,
            account: bool = True) -> pulumi.Output[str]:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return pulumi.Output.all(self.partition, self.account_id).apply(
            lambda pa: f"arn:{pa[0]}:{service}:{self.region if region else ''}:"
                       f"{pa[1] if account else ''}:{resource}")

    def service_principal(self, service: str) -> pulumi.Output[str]:
        """A regional service principal such as ``logs.eu-west-1.amazonaws.com``."""
        return self.dns_suffix.apply(lambda suffix: f"{service}.{self.region}.{suffix}")


def aws_context(cfg: StackConfig, provider: aws.Provider) -> AwsContext:
    opts = pulumi.InvokeOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=opts)
    partition = aws.get_partition_output(opts=opts)
    return AwsContext(region=cfg.region, account_id=identity.account_id,
                      partition=partition.partition, dns_suffix=partition.dns_suffix)
