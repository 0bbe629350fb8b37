"""The stack's names: one object, built from the configuration once, for every component.

Names are how this stack recognises its own resources, so they are decided in one place:
every physical name starts with ``<project>-<stack>`` (the deploy role's policies and the
permissions boundary grant by that prefix), every log group lives under
``/<project>/<stack>`` (the stack's KMS key serves only those), and the provider's default
tags put the stack's tag on every taggable resource (tag-scoped grants rely on it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StackNames:
    """Names, paths and tags of one stack (``StackConfig.names``)."""

    project: str
    stack: str
    owner: str
    cost_centre: str
    tag_key: str = "stack"          # the default tag that marks the stack's resources

    @property
    def prefix(self) -> str:
        """Physical-name prefix shared by every named resource of this stack."""
        return f"{self.project}-{self.stack}"

    def name(self, suffix: str) -> str:
        """A physical name of this stack: ``<prefix>-<suffix>``."""
        return f"{self.prefix}-{suffix}"

    @property
    def log_group_prefix(self) -> str:
        """Every log group of the stack lives under this path (the KMS key policy scopes to it)."""
        return f"/{self.project}/{self.stack}"

    def log_group(self, suffix: str) -> str:
        """A log group of this stack: ``/<project>/<stack>/<suffix>``."""
        return f"{self.log_group_prefix}/{suffix}"

    @property
    def tag_value(self) -> str:
        """The value of ``tag_key`` on every resource of the stack."""
        return self.stack

    @property
    def tags(self) -> dict[str, str]:
        """Default tags for every taggable resource (applied by the stack's AWS provider)."""
        return {"project": self.project, self.tag_key: self.tag_value, "owner": self.owner,
                "cost-centre": self.cost_centre, "managed-by": "pulumi"}

    @property
    def metrics_namespace(self) -> str:
        """The CloudWatch namespace of the application's metrics (EMF) and of its log metrics."""
        return f"{self.project}/{self.stack}"

    @property
    def cluster(self) -> str:
        """The ECS cluster. A fixed name, because alarms and the pipeline's smoke test must
        know it before the cluster exists (so is the service's)."""
        return self.prefix

    @property
    def service(self) -> str:
        """The ECS service (and its task definition family)."""
        return self.prefix
