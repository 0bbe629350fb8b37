"""The delivery pipeline of one stack: a push on the stack's branch to a verified deploy.

Source (GitHub through a CodeStar connection) -> Test (``make test``, privileged for Docker)
-> Preview (``pulumi preview --diff``, kept as an artifact) -> Approval (manual, with an SNS
notification; required in prod) -> Deploy (``pulumi up`` then the smoke test; the stage rolls
back on failure). Pulumi is the only deployer (design.md 1): the pipeline runs ``pulumi up``
of the same program, there is no ECS deploy action.

The builds are a table (``BUILDS``): each row is one CodeBuild project with its buildspec,
log group, role and stage. Also here: the artifact bucket (the model bucket's protections),
the GitHub OIDC provider and the read-only role GitHub pull requests use for their previews,
and pipeline notifications to the stack's alarm topic. The roles' statements are in
infra/pipeline_iam.py, the ceiling every role carries in infra/boundary.py. See
docs/pipeline.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra import pipeline_iam as piam
from infra.iam import Scope, Statement, policy_document, service_trust_policy
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


BUILDS = (
    Build("test", "Test", "Test", timeout=45, docker=True, reports=True),
    Build("preview", "Preview", "Build", timeout=20, compute="BUILD_GENERAL1_SMALL",
          state="read", output="preview", policies=("read-stack",)),
    Build("deploy", "Deploy", "Build", timeout=40, docker=True, state="write",
          policies=("read-stack", "deploy-named", "deploy-tagged", "deploy-iam"),
          after_approval=True, rollback=True, one_at_a_time=True),
)


def key_statements() -> list[Statement]:
    """Statements the stack's KMS key policy needs for the pipeline (pass them to
    ``EncryptionArgs.additional_statements``): CodeStar Notifications publishes to the
    KMS-encrypted alarm topic as the service itself."""
    return [{
        "Sid": "CodeStarNotificationsPublishToEncryptedTopic",
        "Effect": "Allow",
        "Principal": {"Service": CODESTAR_NOTIFICATIONS},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",            # in a key policy, "*" is this key
    }]


TOPIC_PUBLISHERS = (CODESTAR_NOTIFICATIONS,)
"""Service principals the alarm topic's policy must let publish (``MonitoringArgs``)."""


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
    repository: str                            # GitHub owner/repo
    branch: str                                # the branch this stack deploys
    approval_required: bool
    backend: StateBackend
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
    """One stack's CodePipeline V2 with its builds, roles, bucket and notifications."""

    pipeline: codepipeline.Pipeline
    artifact_bucket: aws.s3.Bucket
    connection_arn: pulumi.Output[str]
    github_preview_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PipelineArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:cicd:Pipeline", name, None, opts)
        args.validate()
        make = _Children(name, args.names, args.boundary_arn, self)
        scope = Scope(args.context, args.names)

        self.connection_arn = _connection(make, args)
        self.artifact_bucket = SecureBucket(f"{name}-artifacts", SecureBucketArgs(
            kms_key_arn=args.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
            expire_days=ARTIFACT_EXPIRY_DAYS, protect=args.protect), opts=make.opts()).bucket
        policies = {key: make.policy(key, description, statements(scope, args.boundary_arn))
                    for key, (description, statements) in piam.MANAGED_POLICIES.items()}
        projects = {build.kind: _project(make, scope, args, build, self.artifact_bucket.arn,
                                         policies) for build in BUILDS}
        self.pipeline = _pipeline(make, args, projects, self.artifact_bucket,
                                  self.connection_arn)
        aws.codestarnotifications.NotificationRule(
            # Failed, succeeded and approval-needed events to the alarm topic (its policy
            # and the key policy let the service publish: TOPIC_PUBLISHERS, key_statements).
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


def _variables(args: PipelineArgs, build: Build) -> list[Any]:
    """The build's environment: the stack, and for builds that run Pulumi, its backend."""
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
            scope, connection_arn=args.connection_arn, hosted_zone_id=args.hosted_zone_id,
            domain_name=args.domain_name)
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


def _stages(args: PipelineArgs, projects: dict[str, aws.codebuild.Project],
            connection_arn: pulumi.Output[str]) -> list[codepipeline.PipelineStageArgs]:
    """Source, then one stage per row of BUILDS (the approval, where required, before the
    build that asks for it)."""
    action = codepipeline.PipelineStageActionArgs
    stages = [codepipeline.PipelineStageArgs(name="Source", actions=[action(
        name="Source", category="Source", owner="AWS", provider="CodeStarSourceConnection",
        version="1", output_artifacts=["source"], run_order=1,
        configuration={"ConnectionArn": connection_arn, "FullRepositoryId": args.repository,
                       "BranchName": args.branch, "OutputArtifactFormat": "CODE_ZIP"})])]
    for build in BUILDS:
        if build.after_approval and args.approval_required:
            stages.append(codepipeline.PipelineStageArgs(name="Approval", actions=[action(
                name="Approve", category="Approval", owner="AWS", provider="Manual",
                version="1", run_order=1, timeout_in_minutes=args.approval_timeout_minutes,
                configuration={
                    "NotificationArn": args.alarm_topic_arn,
                    "CustomData": f"Deploy to {args.names.stack}? Read the Preview stage's "
                                  f"artifact (preview-{args.names.stack}.txt) first.",
                })]))
        stages.append(codepipeline.PipelineStageArgs(
            name=build.stage, actions=[action(
                name=build.stage, category=build.category, owner="AWS", provider="CodeBuild",
                version="1", input_artifacts=["source"],
                output_artifacts=[build.output] if build.output else None, run_order=1,
                configuration={"ProjectName": projects[build.kind].name})],
            # A failed pulumi up or smoke test re-runs the last successful execution's
            # source through this stage (the previous version comes back).
            on_failure=codepipeline.PipelineStageOnFailureArgs(result="ROLLBACK")
            if build.rollback else None))
    return stages


def _pipeline(make: _Children, args: PipelineArgs, projects: dict[str, aws.codebuild.Project],
              bucket: aws.s3.Bucket, connection_arn: pulumi.Output[str]) -> codepipeline.Pipeline:
    pipeline_name = args.names.prefix
    trust = service_trust_policy("codepipeline.amazonaws.com", args.context,
                                 args.context.arn("codepipeline", pipeline_name))
    role_arn = make.role("pipeline", f"CodePipeline {pipeline_name}", trust,
                         piam.pipeline_service(
                             artifact_bucket_arn=bucket.arn, kms_key_arn=args.kms_key_arn,
                             connection_arn=connection_arn,
                             configured_connection=args.connection_arn,
                             project_arns=[p.arn for p in projects.values()],
                             alarm_topic_arn=args.alarm_topic_arn))
    push = codepipeline.PipelineTriggerGitConfigurationPushArgs(
        branches=codepipeline.PipelineTriggerGitConfigurationPushBranchesArgs(
            includes=[args.branch]))
    return codepipeline.Pipeline(
        f"{make.name}-pipeline", name=pipeline_name, pipeline_type="V2",
        # A newer commit replaces one still waiting (e.g. for approval): latest wins.
        execution_mode="SUPERSEDED", role_arn=role_arn,
        artifact_stores=[codepipeline.PipelineArtifactStoreArgs(
            location=bucket.bucket, type="S3",
            encryption_key=codepipeline.PipelineArtifactStoreEncryptionKeyArgs(
                id=args.kms_key_arn, type="KMS"))],
        triggers=[codepipeline.PipelineTriggerArgs(
            provider_type="CodeStarSourceConnection",
            git_configuration=codepipeline.PipelineTriggerGitConfigurationArgs(
                source_action_name="Source", pushes=[push]))],
        stages=_stages(args, projects, connection_arn), opts=make.opts())


def _github_preview_role(make: _Children, scope: Scope, args: PipelineArgs,
                         read_policy_arn: pulumi.Output[str]) -> pulumi.Output[str]:
    """OIDC provider for GitHub Actions (unless one exists in the account) and the
    read-only role only this repository's pull requests can assume."""
    if args.github_oidc_provider_arn:
        provider_arn = pulumi.Output.from_input(args.github_oidc_provider_arn)
    else:
        provider_arn = aws.iam.OpenIdConnectProvider(
            f"{make.name}-github-oidc", url=f"https://{piam.GITHUB_OIDC_HOST}",
            client_id_lists=["sts.amazonaws.com"], opts=make.opts()).arn
    trust = policy_document(piam.github_pull_requests_trust(provider_arn, args.repository))
    # The Pulumi Cloud token lives in GitHub's secrets for the workflow; only the S3
    # backend needs AWS access to the state.
    statements = piam.state_backend(scope, args.backend, write=False) \
        if args.backend.kind == "s3" else []
    return make.role("github-preview", "GitHub pull requests: read-only pulumi preview",
                     trust, statements, [read_policy_arn])
