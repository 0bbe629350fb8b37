"""The delivery pipeline of one stack: a push on the stack's branch to a verified deploy.

Source (GitHub through a CodeStar connection; or, for a stack promoted from another, the
revision that stack deployed and smoke-tested) -> Test (``make test``, privileged for
Docker) -> Preview (``pulumi preview --diff``, kept as an artifact) -> Approval (manual, with
an SNS notification; required in prod) -> Deploy (the approval checked against the named
approvers, ``pulumi up``, the smoke test, then the revision published to the next stack;
the stage rolls back on failure). Pulumi is the only deployer (design.md 1): the pipeline
runs ``pulumi up`` of the same program, there is no ECS deploy action.

Everything here is an administrator's to change (the first ``pulumi up`` and every change to
this component): the permissions boundary denies every role of the stack, the deploy role
included, any change to the pipeline, its roles, policies and buckets (infra/boundary.py).

The builds are a table (``BUILDS``): each row is one CodeBuild project with its buildspec,
log group, role and stage. Also here: the artifact bucket (the model bucket's protections),
the GitHub OIDC provider and the read-only role GitHub pull requests use for their previews,
and pipeline notifications to the stack's alarm topic. The roles' statements are in
infra/pipeline_iam.py, the ceiling every role carries in infra/boundary.py. See
docs/pipeline.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra import pipeline_iam as piam
from infra.boundary import PROMOTED_OBJECT, Promotion, Target
from infra.iam import (Scope, Statement, on_behalf_of_this_account, policy_document,
                       service_trust_policy)
from infra.naming import StackNames
from infra.pipeline_iam import StateBackend
from infra.provider import AwsContext
from infra.storage import SecureBucket, SecureBucketArgs

BUILDSPEC_DIR = "ci/buildspecs"
BUILD_IMAGE = "aws/codebuild/standard:7.0"       # Ubuntu 22.04, Docker, Python 3.11
QUEUED_TIMEOUT = 30
ARTIFACT_EXPIRY_DAYS = 30          # artifacts are inputs of one execution; 30 days to debug
NONCURRENT_DAYS = 7
NOTIFICATION_EVENTS = (
    "codepipeline-pipeline-pipeline-execution-failed",
    "codepipeline-pipeline-pipeline-execution-succeeded",
    "codepipeline-pipeline-manual-approval-needed",
)
CODESTAR_NOTIFICATIONS = "codestar-notifications.amazonaws.com"
codepipeline = aws.codepipeline


@dataclass(frozen=True)
class Build:
    """One CodeBuild project ``<prefix>-<kind>`` running ``ci/buildspecs/<kind>.yml``, with
    its log group and role, and the pipeline stage (of the same name) that runs it."""

    kind: str
    stage: str
    category: str                       # the stage action's CodePipeline category
    # Minutes. A build's timeout is its pipeline action's timeout (CodePipeline's own
    # timeout only exists for manual approvals): short enough that a failed ECS deployment
    # fails the stage within the hour instead of hanging.
    timeout: int
    compute: str = "BUILD_GENERAL1_MEDIUM"
    docker: bool = False                # privileged mode (container tests, image builds)
    state: str | None = None            # Pulumi state access: None, "read" or "write"
    output: str | None = None           # the artifact it writes (to the artifact bucket)
    reports: bool = False               # CodeBuild test reports (the JUnit file)
    policies: tuple[str, ...] = ()      # pipeline_iam.MANAGED_POLICIES its role gets
    after_approval: bool = False        # the manual approval stage (when required) precedes it
    rollback: bool = False              # a failure re-runs the last good source through it
    one_at_a_time: bool = False         # Pulumi's state lock is the second guard
    # The execution's ID reaches the build (the Deploy stage reads who approved it).
    execution_id: bool = False


BUILDS = (
    Build("test", "Test", "Test", timeout=45, docker=True, reports=True),
    Build("preview", "Preview", "Build", timeout=20, compute="BUILD_GENERAL1_SMALL",
          state="read", output="preview", policies=("read-stack",)),
    Build("deploy", "Deploy", "Build", timeout=40, docker=True, state="write",
          policies=("read-stack", "deploy-named", "deploy-tagged", "deploy-iam"),
          after_approval=True, rollback=True, one_at_a_time=True, execution_id=True),
)


@dataclass(frozen=True)
class Upstream:
    """The stack this one is promoted from: its deploy role alone publishes to this stack's
    promotion bucket (``promotedFrom``)."""

    stack: str
    account: str

    def deploy_role_arn(self, names: StackNames, partition: str = "aws") -> str:
        return f"arn:{partition}:iam::{self.account}:role/" \
               f"{names.of(self.stack).pipeline_role('deploy-build')}"

    def account_root(self, partition: str = "aws") -> str:
        """The upstream account as a principal (its policies then decide who acts)."""
        return f"arn:{partition}:iam::{self.account}:root"


def promotion_bucket_arn(context: AwsContext, names: StackNames) -> pulumi.Output[str]:
    """This stack's promotion bucket (a fixed name: known before the bucket exists)."""
    return pulumi.Output.all(context.partition, context.account_id).apply(
        lambda pa: f"arn:{pa[0]}:s3:::{names.promotion_bucket(pa[1])}")


def key_statements(context: AwsContext, names: StackNames,
                   upstream: Upstream | None = None) -> list[Statement]:
    """Statements the stack's KMS key policy needs for the pipeline (pass them to
    ``EncryptionArgs.additional_statements``): CodeStar Notifications publishes to the
    KMS-encrypted alarm topic as the service itself, through SNS and for this account's
    notification rules only; a promoted stack's upstream deploy role encrypts the revision
    it publishes, through S3 and into the promotion bucket only."""
    statements: list[Statement] = [{
        "Sid": "CodeStarNotificationsPublishToEncryptedTopic",
        "Effect": "Allow",
        "Principal": {"Service": CODESTAR_NOTIFICATIONS},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",            # in a key policy, "*" is this key
        "Condition": {
            **on_behalf_of_this_account(context, _notification_rules(context)),
            # The key is used through SNS (the encrypted topic); IfExists: if the service
            # calls KMS itself no ViaService is sent, and the source conditions still hold.
            "StringEqualsIfExists": {"kms:ViaService": context.service_principal("sns")},
        },
    }]
    if upstream:
        bucket = promotion_bucket_arn(context, names)
        statements.append({
            # The other account is the principal; the condition names its deploy role.
            "Sid": "UpstreamDeployRoleEncryptsThePromotedRevision",
            "Effect": "Allow",
            "Principal": {"AWS": context.partition.apply(upstream.account_root)},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",        # in a key policy, "*" is this key
            "Condition": {
                "ArnEquals": {"aws:PrincipalArn": context.partition.apply(
                    lambda p: upstream.deploy_role_arn(names, p))},
                "StringEquals": {"kms:ViaService": context.service_principal("s3")},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [
                    bucket, pulumi.Output.concat(bucket, "/*")]},
            },
        })
    return statements


def _notification_rules(context: AwsContext) -> pulumi.Output[str]:
    return context.arn("codestar-notifications", "notificationrule/*")


def topic_publishers(context: AwsContext) -> dict[str, pulumi.Output[str]]:
    """Service principals the alarm topic's policy must let publish, with their sources
    (``MonitoringArgs.extra_topic_publishers``)."""
    return {CODESTAR_NOTIFICATIONS: _notification_rules(context)}


@dataclass
class PipelineArgs:
    """What the pipeline needs from configuration and from the other components.

    Plain ``str``/``bool`` fields shape the resource graph (names, stages, which backend);
    ``pulumi.Input`` fields are other resources' outputs.
    """

    context: AwsContext
    names: StackNames
    kms_key_arn: pulumi.Input[str]             # artifacts, build logs
    alarm_topic_arn: pulumi.Input[str]         # approvals and notifications
    boundary_arn: pulumi.Input[str]            # PermissionsBoundary.arn
    target: Target                             # where the image runs: what the deploy manages
    repository: str                            # GitHub owner/repo
    branch: str                                # the branch this stack deploys
    approval_required: bool
    backend: StateBackend
    approvers: tuple[str, ...] = ()            # role/group ARNs whose approval counts
    upstream: Upstream | None = None           # promoted from: source is its published revision
    promotes_to: Promotion | None = None       # publishes its verified revision there
    access_log_bucket: pulumi.Input[str] | None = None  # S3 server access logs of its buckets
    connection_arn: str | None = None          # existing CodeStar connection, else created
    github_oidc_provider_arn: str | None = None  # existing provider (one per account)
    domain_name: str | None = None             # with hosted_zone_id: the deploy writes its
    hosted_zone_id: str | None = None          # records (alias, certificate validation)
    log_retention_days: int = 30
    approval_timeout_minutes: int = 24 * 60
    protect: bool = False

    def validate(self) -> None:
        """What only this component decides (the config keys are checked by infra/config.py
        before any component exists, naming the key and the stack file)."""
        if not 5 <= self.approval_timeout_minutes <= 7 * 24 * 60:
            raise ValueError(f"PipelineArgs: approval_timeout_minutes="
                             f"{self.approval_timeout_minutes}: CodePipeline accepts 5 to 10080")


@dataclass(frozen=True)
class _Children:
    """Makes the component's children: logical names ``<name>-<key>``, physical names
    ``<prefix>-<key>``, every role under the boundary."""

    name: str
    names: StackNames
    boundary_arn: pulumi.Input[str]
    parent: pulumi.Resource

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, **kwargs)

    def role(self, key: str, description: str, trust: pulumi.Input[str],
             statements: Sequence[Statement] = (),
             managed: Sequence[pulumi.Input[str]] = ()) -> pulumi.Output[str]:
        """A role with the boundary, one inline policy and the given managed policies.
        Returns its ARN, resolved only once the policies are attached: a project or
        pipeline given it waits for them on create (its first run must not race them), and
        a destroy removes it before them."""
        role = aws.iam.Role(
            f"{self.name}-{key}", name=self.names.name(key), description=description,
            assume_role_policy=trust, permissions_boundary=self.boundary_arn,
            max_session_duration=3600, opts=self.opts())
        attached: list[pulumi.Resource] = []
        if statements:
            attached.append(aws.iam.RolePolicy(
                f"{self.name}-{key}", role=role.id, policy=policy_document(statements),
                opts=self.opts()))
        for i, policy_arn in enumerate(managed):
            attached.append(aws.iam.RolePolicyAttachment(
                f"{self.name}-{key}-{i}", role=role.name, policy_arn=policy_arn,
                opts=self.opts()))
        return pulumi.Output.all(role.arn, *[r.id for r in attached]).apply(lambda v: v[0])

    def policy(self, key: str, description: str,
               statements: Sequence[Statement]) -> pulumi.Output[str]:
        return aws.iam.Policy(f"{self.name}-{key}", name=self.names.name(key),
                              description=description, policy=policy_document(statements),
                              opts=self.opts()).arn


class Pipeline(pulumi.ComponentResource):
    """One stack's CodePipeline V2 with its builds, roles, buckets and notifications."""

    pipeline: codepipeline.Pipeline
    artifact_bucket: aws.s3.Bucket
    connection_arn: pulumi.Output[str] | None
    promotion_bucket: aws.s3.Bucket | None
    github_preview_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PipelineArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:cicd:Pipeline", name, None, opts)
        args.validate()
        make = _Children(name, args.names, args.boundary_arn, self)
        scope = Scope(args.context, args.names)

        self.artifact_bucket = SecureBucket(f"{name}-artifacts", SecureBucketArgs(
            kms_key_arn=args.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
            expire_days=ARTIFACT_EXPIRY_DAYS, protect=args.protect,
            access_log_bucket=args.access_log_bucket), opts=make.opts()).bucket
        # The source: the branch through a GitHub connection, or (promoted) the revision the
        # previous stack deployed and smoke-tested, in a bucket only its deploy role writes.
        self.connection_arn = None if args.upstream else _connection(make, args)
        self.promotion_bucket = _promotion_bucket(make, args) if args.upstream else None
        policies = {key: make.policy(key, description,
                                     statements(scope, args.boundary_arn, args.target))
                    for key, (description, statements) in piam.MANAGED_POLICIES.items()}
        projects = {build.kind: _project(make, scope, args, build, self.artifact_bucket.arn,
                                         policies) for build in BUILDS}
        self.pipeline = _pipeline(make, scope, args, projects, self.artifact_bucket,
                                  self.connection_arn, self.promotion_bucket)
        if self.promotion_bucket is not None:
            _promotion_trigger(make, args, self.promotion_bucket, self.pipeline)
        if args.approval_required:
            # For the named approvers (an administrator attaches it to their roles or
            # groups): this pipeline's approval, nothing else.
            make.policy("approve", "Approve or reject this stack's deploy, read its preview",
                        piam.approver_statements(scope, self.pipeline.arn,
                                                 self.artifact_bucket.arn, args.kms_key_arn))
        aws.codestarnotifications.NotificationRule(
            # Failed, succeeded and approval-needed events to the alarm topic (its policy
            # and the key policy let the service publish: topic_publishers, key_statements).
            f"{name}-notifications", name=args.names.name("pipeline"),
            resource=self.pipeline.arn, detail_type="FULL",
            event_type_ids=list(NOTIFICATION_EVENTS),
            targets=[aws.codestarnotifications.NotificationRuleTargetArgs(
                address=args.alarm_topic_arn, type="SNS")],
            opts=make.opts())
        self.github_preview_role_arn = _github_preview_role(make, scope, args,
                                                            policies["read-stack"])
        self.register_outputs({
            "pipeline_name": self.pipeline.name,
            "artifact_bucket": self.artifact_bucket.bucket,
            "connection_arn": self.connection_arn,
            "promotion_bucket": self.promotion_bucket.bucket if self.promotion_bucket else None,
            "github_preview_role_arn": self.github_preview_role_arn,
        })


def _connection(make: _Children, args: PipelineArgs) -> pulumi.Output[str]:
    """GitHub connection. A created one starts PENDING: a person confirms it once in the
    console (Developer Tools > Settings > Connections), see docs/pipeline.md."""
    if args.connection_arn:
        return pulumi.Output.from_input(args.connection_arn)
    return aws.codestarconnections.Connection(
        f"{make.name}-github", name=args.names.name("github")[:32], provider_type="GitHub",
        opts=make.opts()).arn


def _promotion_bucket(make: _Children, args: PipelineArgs) -> aws.s3.Bucket:
    """``<prefix>-promotion-<account>``: versioned (CodePipeline's S3 source needs it), the
    stack's key, and a policy under which only the upstream stack's deploy role may write
    (from its account; this account's administrators can still rewrite the policy)."""
    upstream = args.upstream
    assert upstream is not None
    writer = args.context.partition.apply(lambda p: upstream.deploy_role_arn(args.names, p))
    account_root = args.context.partition.apply(upstream.account_root)
    name = f"{make.name}-promotion"
    bucket_name = args.context.account_id.apply(args.names.promotion_bucket)
    # The policy refers to the bucket by name: its ARN is known before the bucket exists.
    arn = promotion_bucket_arn(args.context, args.names)
    objects = pulumi.Output.concat(arn, "/*")
    storage = SecureBucket(name, SecureBucketArgs(
        kms_key_arn=args.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
        keep_noncurrent=10, protect=args.protect, access_log_bucket=args.access_log_bucket,
        # A fixed name: the upstream stack writes to it by name, from its own account.
        bucket_name=bucket_name, policy_statements=[
            {
                "Sid": "TheUpstreamDeployRolePublishes",
                "Effect": "Allow",
                "Principal": {"AWS": account_root},
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(arn, f"/{PROMOTED_OBJECT}"),
                "Condition": {"ArnEquals": {"aws:PrincipalArn": writer}},
            },
            {
                # Everyone else, this account's roles and administrators included.
                "Sid": "NobodyElseWritesOrDeletes",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": objects,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": writer}},
            },
        ]), opts=make.opts())
    return storage.bucket


def _promotion_trigger(make: _Children, args: PipelineArgs, bucket: aws.s3.Bucket,
                       pipeline: codepipeline.Pipeline) -> None:
    """A new promoted revision starts the pipeline: S3 sends the bucket's events to
    EventBridge, a rule matches the object, and its role may start this pipeline only."""
    aws.s3.BucketNotification(f"{make.name}-promotion-events", bucket=bucket.id,
                              eventbridge=True, opts=make.opts())
    rule = aws.cloudwatch.EventRule(
        f"{make.name}-promotion", name=args.names.name("promotion"),
        description="A revision published by the upstream stack starts this pipeline",
        event_pattern=pulumi.Output.json_dumps({
            "source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket.bucket]},
                       "object": {"key": [PROMOTED_OBJECT]}}}),
        opts=make.opts())
    trust = service_trust_policy("events.amazonaws.com", args.context, rule.arn)
    role_arn = make.role("promotion-trigger", "EventBridge starts the promoted pipeline",
                         trust, [{
                             "Sid": "StartThisPipeline",
                             "Effect": "Allow",
                             "Action": "codepipeline:StartPipelineExecution",
                             "Resource": pipeline.arn,
                         }])
    aws.cloudwatch.EventTarget(f"{make.name}-promotion", rule=rule.name, arn=pipeline.arn,
                               role_arn=role_arn, opts=make.opts())


def _variables(args: PipelineArgs, build: Build) -> list[Any]:
    """The build's environment: the stack, for builds that run Pulumi its backend, and for
    the deploy whom to accept as approver and where to publish the verified revision."""
    env = aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs
    variables = [env(name="STACK", type="PLAINTEXT", value=args.names.stack)]
    if build.state and args.backend.kind == "cloud":
        # Resolved by CodeBuild at build start; never in the project definition or logs.
        variables.append(env(name="PULUMI_ACCESS_TOKEN", type="SECRETS_MANAGER",
                             value=str(args.backend.token_secret)))
    elif build.state:
        variables.append(env(name="PULUMI_BACKEND_URL", type="PLAINTEXT",
                             value=f"s3://{args.backend.state_bucket}"
                                   f"?region={args.context.region}"))
    if build.execution_id and args.approval_required:
        variables.append(env(name="APPROVERS", type="PLAINTEXT",
                             value=json.dumps(list(args.approvers))))
    if build.state == "write" and args.promotes_to:
        variables.append(env(name="PROMOTE_TO", type="PLAINTEXT",
                             value=f"s3://{args.promotes_to.bucket}/{PROMOTED_OBJECT}"))
    return variables


def _build_role(make: _Children, scope: Scope, args: PipelineArgs, build: Build,
                project_name: str, log_group_arn: pulumi.Input[str],
                bucket_arn: pulumi.Input[str],
                policies: dict[str, pulumi.Output[str]]) -> pulumi.Output[str]:
    """The project's role: its logs and artifacts, then what its row of BUILDS asks for."""
    statements = piam.build_basics(scope, log_group_arn, bucket_arn, args.kms_key_arn,
                                   write_artifacts=build.output is not None)
    if build.reports:
        statements.append(piam.test_reports(scope, project_name))
    if build.state:
        statements += piam.state_backend(scope, args.backend, write=build.state == "write")
    if build.state == "write":
        statements += piam.deploy_outside_the_stack(
            scope, hosted_zone_id=args.hosted_zone_id, domain_name=args.domain_name,
            approver_groups=[a for a in args.approvers if ":group/" in a],
            promotes_to=args.promotes_to)
    trust = service_trust_policy("codebuild.amazonaws.com", args.context,
                                 args.context.arn("codebuild", f"project/{project_name}"))
    return make.role(f"{build.kind}-build", f"CodeBuild {project_name}: {build.kind} stage",
                     trust, statements, [policies[key] for key in build.policies])


def _project(make: _Children, scope: Scope, args: PipelineArgs, build: Build,
             bucket_arn: pulumi.Input[str],
             policies: dict[str, pulumi.Output[str]]) -> aws.codebuild.Project:
    """CodeBuild project ``<prefix>-<kind>``, its encrypted log group and its role."""
    project_name = args.names.name(build.kind)
    buildspec = f"{BUILDSPEC_DIR}/{build.kind}.yml"
    log_group = aws.cloudwatch.LogGroup(
        f"{make.name}-{build.kind}-build-logs",
        name=args.names.log_group(f"codebuild/{build.kind}"),
        retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
        opts=make.opts())
    return aws.codebuild.Project(
        f"{make.name}-{build.kind}", name=project_name,
        description=f"{args.names.stack}: `make` via {buildspec}",
        service_role=_build_role(make, scope, args, build, project_name, log_group.arn,
                                 bucket_arn, policies),
        build_timeout=build.timeout, queued_timeout=QUEUED_TIMEOUT,
        concurrent_build_limit=1 if build.one_at_a_time else None,
        encryption_key=args.kms_key_arn,
        source=aws.codebuild.ProjectSourceArgs(type="CODEPIPELINE", buildspec=buildspec),
        artifacts=aws.codebuild.ProjectArtifactsArgs(type="CODEPIPELINE"),
        environment=aws.codebuild.ProjectEnvironmentArgs(
            compute_type=build.compute, image=BUILD_IMAGE, type="LINUX_CONTAINER",
            image_pull_credentials_type="CODEBUILD", privileged_mode=build.docker,
            environment_variables=_variables(args, build)),
        logs_config=aws.codebuild.ProjectLogsConfigArgs(
            cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                status="ENABLED", group_name=log_group.name),
            s3_logs=aws.codebuild.ProjectLogsConfigS3LogsArgs(status="DISABLED")),
        opts=make.opts(depends_on=[log_group]))


def _source(args: PipelineArgs, connection_arn: pulumi.Output[str] | None,
            promotion_bucket: aws.s3.Bucket | None) -> codepipeline.PipelineStageArgs:
    """The branch through the GitHub connection, or the promoted revision in S3 (started by
    the EventBridge rule, so no polling)."""
    action = codepipeline.PipelineStageActionArgs
    if promotion_bucket is not None:
        return codepipeline.PipelineStageArgs(name="Source", actions=[action(
            name="Source", category="Source", owner="AWS", provider="S3", version="1",
            output_artifacts=["source"], run_order=1,
            configuration={"S3Bucket": promotion_bucket.bucket,
                           "S3ObjectKey": PROMOTED_OBJECT,
                           "PollForSourceChanges": "false"})])
    return codepipeline.PipelineStageArgs(name="Source", actions=[action(
        name="Source", category="Source", owner="AWS", provider="CodeStarSourceConnection",
        version="1", output_artifacts=["source"], run_order=1,
        configuration={"ConnectionArn": connection_arn, "FullRepositoryId": args.repository,
                       "BranchName": args.branch, "OutputArtifactFormat": "CODE_ZIP"})])


def _stages(args: PipelineArgs, projects: dict[str, aws.codebuild.Project],
            source: codepipeline.PipelineStageArgs) -> list[codepipeline.PipelineStageArgs]:
    """Source, then one stage per row of BUILDS (the approval, where required, before the
    build that asks for it)."""
    action = codepipeline.PipelineStageActionArgs
    stages = [source]
    for build in BUILDS:
        if build.after_approval and args.approval_required:
            stages.append(codepipeline.PipelineStageArgs(name="Approval", actions=[action(
                name="Approve", category="Approval", owner="AWS", provider="Manual",
                version="1", run_order=1, timeout_in_minutes=args.approval_timeout_minutes,
                configuration={
                    "NotificationArn": args.alarm_topic_arn,
                    "CustomData": f"Deploy to {args.names.stack}? Read the Preview stage's "
                                  f"artifact (preview-{args.names.stack}.txt) first. Only "
                                  "the named approvers count (docs/pipeline.md).",
                })]))
        configuration: dict[str, Any] = {"ProjectName": projects[build.kind].name}
        if build.execution_id:
            configuration["EnvironmentVariables"] = json.dumps([{
                "name": "PIPELINE_EXECUTION_ID", "type": "PLAINTEXT",
                "value": "#{codepipeline.PipelineExecutionId}"}])
        stages.append(codepipeline.PipelineStageArgs(
            name=build.stage, actions=[action(
                name=build.stage, category=build.category, owner="AWS", provider="CodeBuild",
                version="1", input_artifacts=["source"],
                output_artifacts=[build.output] if build.output else None, run_order=1,
                configuration=configuration)],
            # A failed pulumi up or smoke test re-runs the last successful execution's
            # source through this stage (the previous version comes back).
            on_failure=codepipeline.PipelineStageOnFailureArgs(result="ROLLBACK")
            if build.rollback else None))
    return stages


def _pipeline(make: _Children, scope: Scope, args: PipelineArgs,
              projects: dict[str, aws.codebuild.Project], bucket: aws.s3.Bucket,
              connection_arn: pulumi.Output[str] | None,
              promotion_bucket: aws.s3.Bucket | None) -> codepipeline.Pipeline:
    pipeline_name = args.names.prefix
    trust = service_trust_policy("codepipeline.amazonaws.com", args.context,
                                 args.context.arn("codepipeline", pipeline_name))
    source_statements = piam.promotion_source(promotion_bucket.arn) if promotion_bucket \
        else piam.github_source(connection_arn, args.connection_arn)
    role_arn = make.role("pipeline", f"CodePipeline {pipeline_name}", trust,
                         piam.pipeline_service(
                             scope, artifact_bucket_arn=bucket.arn,
                             kms_key_arn=args.kms_key_arn, source=source_statements,
                             project_arns=[p.arn for p in projects.values()],
                             alarm_topic_arn=args.alarm_topic_arn))
    triggers = None
    if promotion_bucket is None:
        push = codepipeline.PipelineTriggerGitConfigurationPushArgs(
            branches=codepipeline.PipelineTriggerGitConfigurationPushBranchesArgs(
                includes=[args.branch]))
        triggers = [codepipeline.PipelineTriggerArgs(
            provider_type="CodeStarSourceConnection",
            git_configuration=codepipeline.PipelineTriggerGitConfigurationArgs(
                source_action_name="Source", pushes=[push]))]
    return codepipeline.Pipeline(
        f"{make.name}-pipeline", name=pipeline_name, pipeline_type="V2",
        # A newer revision replaces one still waiting (e.g. for approval): latest wins.
        execution_mode="SUPERSEDED", role_arn=role_arn,
        artifact_stores=[codepipeline.PipelineArtifactStoreArgs(
            location=bucket.bucket, type="S3",
            encryption_key=codepipeline.PipelineArtifactStoreEncryptionKeyArgs(
                id=args.kms_key_arn, type="KMS"))],
        triggers=triggers,
        stages=_stages(args, projects, _source(args, connection_arn, promotion_bucket)),
        opts=make.opts())


def _github_preview_role(make: _Children, scope: Scope, args: PipelineArgs,
                         read_policy_arn: pulumi.Output[str]) -> pulumi.Output[str]:
    """OIDC provider for GitHub Actions (unless one exists in the account) and the
    read-only role that only this repository's jobs in the GitHub environment named after
    the stack can assume (.github/workflows, docs/pipeline.md "threat model")."""
    if args.github_oidc_provider_arn:
        provider_arn = pulumi.Output.from_input(args.github_oidc_provider_arn)
    else:
        provider_arn = aws.iam.OpenIdConnectProvider(
            f"{make.name}-github-oidc", url=f"https://{piam.GITHUB_OIDC_HOST}",
            client_id_lists=["sts.amazonaws.com"], opts=make.opts()).arn
    trust = policy_document(piam.github_environment_trust(provider_arn, args.repository,
                                                          args.names.stack))
    # The Pulumi Cloud token is the GitHub environment's secret; only the S3 backend needs
    # AWS access to the state.
    statements = piam.state_backend(scope, args.backend, write=False) \
        if args.backend.kind == "s3" else []
    return make.role("github-preview", "GitHub environment: read-only pulumi preview",
                     trust, statements, [read_policy_arn])
