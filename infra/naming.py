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
    def scope_tags(self) -> dict[str, str]:
        """The tags a resource must carry, together, to be this stack's: tag-scoped grants
        and the boundary's tag rules require both (a ``stack: dev`` tag alone could be any
        project's)."""
        return {"project": self.project, self.tag_key: self.tag_value}

    @property
    def tags(self) -> dict[str, str]:
        """Default tags for every taggable resource (applied by the stack's AWS provider)."""
        return {"project": self.project, self.tag_key: self.tag_value, "owner": self.owner,
                "cost-centre": self.cost_centre, "managed-by": "pulumi"}

    @property
    def metrics_namespace(self) -> str:
        """The CloudWatch namespace of the application's metrics (EMF) and of its log metrics."""
        return f"{self.project}/{self.stack}"

    # ---------------------------------------------------------------- IAM, by role kind --
    # The deploy role manages the stack's *service* roles (ECS tasks, flow logs...) and
    # nothing else in IAM: they live under their own path, by the service they are passed
    # to, so that IAM can tell them apart from the pipeline's roles by ARN alone
    # (infra/boundary.py). The pipeline's roles keep plain names <prefix>-<key>.
    @property
    def service_path(self) -> str:
        """IAM path of every service role and service policy of the stack."""
        return f"/{self.project}/{self.stack}/service/"

    def service_role_path(self, kind: str) -> str:
        """IAM path of the service roles passed to ``kind`` (``boundary.SERVICE_ROLES``)."""
        return f"{self.service_path}{kind}/"

    def pipeline_role(self, key: str) -> str:
        """A role of the delivery pipeline (managed by an administrator, never by the deploy)."""
        return self.name(key)

    @property
    def waf_log_group(self) -> str:
        """WAF requires its CloudWatch Logs destination to be named ``aws-waf-logs-...``."""
        return f"aws-waf-logs-{self.prefix}"

    def promotion_bucket(self, account: str) -> str:
        """The bucket this stack's pipeline takes its source from when it is promoted to:
        a fixed name (the upstream stack writes to it from another account), made unique
        by the account."""
        return f"{self.prefix}-promotion-{account}"

    def of(self, stack: str) -> "StackNames":
        """The names of another stack of the same project (promotion)."""
        return StackNames(self.project, stack, self.owner, self.cost_centre, self.tag_key)

    @property
    def cluster(self) -> str:
        """The ECS cluster. A fixed name, because alarms and the pipeline's smoke test must
        know it before the cluster exists (so is the service's)."""
        return self.prefix

    @property
    def service(self) -> str:
        """The ECS service (and its task definition family)."""
        return self.prefix

    # ------------------------------------------------- the other targets (infra/config.py) --
    # Fixed names for the same reason as the cluster's: the alarms that roll a deployment
    # back, the dashboard and the smoke test name them before the resources exist.
    @property
    def endpoint(self) -> str:
        """The SageMaker endpoint (SageMaker writes its ARN in lower case: so does the stack)."""
        return self.prefix

    @property
    def endpoint_variant(self) -> str:
        """The endpoint's one production variant. Stable: a blue/green update requires the
        new endpoint configuration to keep the variant's name, and the alarms name it."""
        return "live"

    @property
    def sagemaker_log_group(self) -> str:
        """Where SageMaker writes the endpoint's container logs (a name SageMaker fixes; the
        stack creates it first, with its key and retention)."""
        return f"/aws/sagemaker/Endpoints/{self.endpoint}"

    @property
    def function(self) -> str:
        """The Lambda function. ``<prefix>-function`` rather than the bare prefix: its ARN
        (``function:<name>``, ``function:<name>:live``) then falls under the
        ``<prefix>-*`` patterns the boundary and the deploy role already grant by."""
        return self.name("function")

    @property
    def function_alias(self) -> str:
        """The alias the Function URL serves: it points at the version a deploy published."""
        return "live"
