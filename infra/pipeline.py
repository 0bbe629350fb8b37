"""The delivery pipeline of one stack: a push on the stack's branch to a verified deploy.

Source (GitHub through a CodeStar connection) -> Test (``make test``, privileged for Docker)
-> Preview (``pulumi preview --diff``, kept as an artifact) -> Approval (manual, with an SNS
notification; required in prod) -> Deploy (``pulumi up`` then the smoke test; the stage rolls
back on failure). Pulumi is the only deployer (design.md 1): the pipeline runs ``pulumi up``
of the same program, there is no ECS deploy action.

Also here: the artifact bucket (the model bucket's protections), one CodeBuild project and
one encrypted log group per build, the IAM roles (read-only for Test and Preview, stack
scoped for Deploy, all under a permissions boundary this component defines), the GitHub OIDC
provider and the read-only role GitHub pull requests use for their previews, and pipeline
notifications to the stack's alarm topic. See docs/pipeline.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra import pipeline_iam as piam
from infra.iam import policy_document, service_trust_policy
from infra.provider import AwsContext
from infra.storage import SecureBucket, SecureBucketArgs

BUILDSPEC_DIR = "ci/buildspecs"
BUILD_IMAGE = "aws/codebuild/standard:7.0"       # Ubuntu 22.04, Docker, Python 3.11
# Minutes. A build's timeout is its pipeline action's timeout (CodePipeline's own timeout
# only exists for manual approvals): short enough that a failed ECS deployment fails the
# stage within the hour instead of hanging (ECS's circuit breaker decides in minutes).
BUILD_TIMEOUTS = {"test": 45, "preview": 20, "deploy": 40}
QUEUED_TIMEOUT = 30
ARTIFACT_EXPIRY_DAYS = 30          # artifacts are inputs of one execution; 30 days to debug
NONCURRENT_DAYS = 7
NOTIFICATION_EVENTS = (
    "codepipeline-pipeline-pipeline-execution-failed",
    "codepipeline-pipeline-pipeline-execution-succeeded",
    "codepipeline-pipeline-manual-approval-needed",
)
CODESTAR_NOTIFICATIONS = "codestar-notifications.amazonaws.com"


def key_statements() -> list[dict[str, Any]]:
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
class PermissionsBoundaryArgs:
    """Where the boundary applies: the stack's names, log groups and tag."""

    context: AwsContext
    prefix: str                                # <project>-<stack>
    log_group_prefix: str                      # /<project>/<stack>
    stack: str
    tag_key: str = "stack"


class PermissionsBoundary(pulumi.ComponentResource):
    """The managed policy every role of the stack carries (``<prefix>-permissions-boundary``).

    Built before any other component: ``every_role_carries(boundary.arn)`` then puts it on
    every ``aws.iam.Role`` the program creates (and the deploy role may create no role
    without it, pipeline_iam.deploy_iam), so nothing the pipeline deploys can exceed it.
    """

    policy: aws.iam.Policy
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: PermissionsBoundaryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:cicd:PermissionsBoundary", name, None, opts)
        policy_name = f"{args.prefix}-permissions-boundary"
        own_arn = args.context.arn("iam", f"policy/{policy_name}", region=False)
        scope = piam.Scope(args.context, args.prefix, args.log_group_prefix, args.tag_key,
                           args.stack)
        self.policy = aws.iam.Policy(
            f"{name}-permissions-boundary", name=policy_name,
            description="Ceiling of every role of this stack: its services only, no way out",
            policy=policy_document(piam.boundary(scope, own_arn)),
            opts=pulumi.ResourceOptions(parent=self))
        self.arn = self.policy.arn
        self.register_outputs({"arn": self.arn})


def every_role_carries(boundary_arn: pulumi.Input[str]) -> None:
    """Register a stack transformation that sets ``permissions_boundary`` on every IAM role
    created after this call (a role that already sets one keeps it)."""
    def transformation(args: pulumi.ResourceTransformationArgs):
        if args.type_ != "aws:iam/role:Role" or args.props.get("permissions_boundary"):
            return None
        return pulumi.ResourceTransformationResult(
            props={**args.props, "permissions_boundary": boundary_arn}, opts=args.opts)

    # The SDK-side transformation (not register_resource_transform): it runs in this
    # process, so the offline tests under mocks see its effect too.
    pulumi.runtime.register_stack_transformation(transformation)


@dataclass
class PipelineArgs:
    """What the pipeline needs from configuration and from the other components.

    Plain ``str``/``bool`` fields shape the resource graph (names, stages, which backend);
    ``pulumi.Input`` fields are other resources' outputs.
    """

    context: AwsContext
    stack: str                                 # dev | staging | prod
    prefix: str                                # <project>-<stack>: physical names
    log_group_prefix: str                      # /<project>/<stack> (the key policy covers it)
    kms_key_arn: pulumi.Input[str]             # artifacts, build logs
    alarm_topic_arn: pulumi.Input[str]         # approvals and notifications
    boundary_arn: pulumi.Input[str]            # PermissionsBoundary.arn
    repository: str                            # GitHub owner/repo
    branch: str                                # the branch this stack deploys
    approval_required: bool
    tag_key: str = "stack"                     # the stack tag the provider puts everywhere
    connection_arn: str | None = None          # existing CodeStar connection, else created
    github_oidc_provider_arn: str | None = None  # existing provider (one per account)
    backend: str = "cloud"                     # cloud | s3
    pulumi_token_secret: str | None = None     # cloud: Secrets Manager name or ARN
    state_bucket: str | None = None            # s3: bucket of the self-managed backend
    secrets_key_arn: str | None = None         # s3: KMS key of the awskms secrets provider
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


class Pipeline(pulumi.ComponentResource):
    """One stack's CodePipeline V2 with its builds, roles, bucket and notifications."""

    pipeline: aws.codepipeline.Pipeline
    artifact_bucket: aws.s3.Bucket
    connection_arn: pulumi.Output[str]
    github_preview_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PipelineArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:cicd:Pipeline", name, None, opts)
        args.validate()
        self._args = args
        self._name = name
        ctx = args.context
        self._scope = piam.Scope(ctx, args.prefix, args.log_group_prefix, args.tag_key,
                                 args.stack)
        self._pipeline_name = args.prefix
        self._pipeline_arn = ctx.arn("codepipeline", self._pipeline_name)

        self.connection_arn = self._connection()
        self.artifact_bucket = self._artifact_bucket()
        self._token_secret_arn = self._secret_arn(args.pulumi_token_secret)

        projects = {kind: self._build(kind) for kind in ("test", "preview", "deploy")}
        self.pipeline = self._pipeline(projects)
        self._notifications()
        self.github_preview_role_arn = self._github_preview_role()

        self.register_outputs({
            "pipeline_name": self.pipeline.name,
            "artifact_bucket": self.artifact_bucket.bucket,
            "connection_arn": self.connection_arn,
            "github_preview_role_arn": self.github_preview_role_arn,
        })

    # ------------------------------------------------------------------------ helpers --
    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _secret_arn(self, name_or_arn: str | None) -> pulumi.Output[str] | None:
        """IAM needs an ARN; Secrets Manager appends 6 random characters to a name."""
        if not name_or_arn:
            return None
        if name_or_arn.startswith("arn:"):
            return pulumi.Output.from_input(name_or_arn)
        return self._args.context.arn("secretsmanager", f"secret:{name_or_arn}-??????")

    def _role(self, key: str, description: str, trust: pulumi.Input[str],
              statements: Sequence[dict[str, Any]] = (),
              managed: Sequence[pulumi.Input[str]] = ()) -> pulumi.Output[str]:
        """A role named ``<prefix>-<key>`` with the boundary, one inline policy and the
        given managed policies. Returns its ARN, resolved only once the policies are
        attached: a project or pipeline given it waits for them on create (its first run
        must not race them), and a destroy removes it before them."""
        role = aws.iam.Role(
            f"{self._name}-{key}", name=f"{self._args.prefix}-{key}", description=description,
            assume_role_policy=trust, permissions_boundary=self._args.boundary_arn,
            max_session_duration=3600, opts=self._opts())
        attached: list[pulumi.Resource] = []
        if statements:
            attached.append(aws.iam.RolePolicy(
                f"{self._name}-{key}", role=role.id, policy=policy_document(statements),
                opts=self._opts()))
        for i, policy_arn in enumerate(managed):
            attached.append(aws.iam.RolePolicyAttachment(
                f"{self._name}-{key}-{i}", role=role.name, policy_arn=policy_arn,
                opts=self._opts()))
        return pulumi.Output.all(role.arn, *[r.id for r in attached]).apply(lambda v: v[0])

    def _managed_policy(self, key: str, description: str,
                        statements: Sequence[dict[str, Any]]) -> aws.iam.Policy:
        return aws.iam.Policy(f"{self._name}-{key}", name=f"{self._args.prefix}-{key}",
                              description=description, policy=policy_document(statements),
                              opts=self._opts())

    # ----------------------------------------------------------------------- resources --
    def _connection(self) -> pulumi.Output[str]:
        """GitHub connection. A created one starts PENDING: a person confirms it once in the
        console (Developer Tools > Settings > Connections), see docs/pipeline.md."""
        if self._args.connection_arn:
            return pulumi.Output.from_input(self._args.connection_arn)
        connection = aws.codestarconnections.Connection(
            f"{self._name}-github", name=f"{self._args.prefix}-github"[:32],
            provider_type="GitHub", opts=self._opts())
        return connection.arn

    def _artifact_bucket(self) -> aws.s3.Bucket:
        """A ``SecureBucket`` like the model bucket (versioned, SSE-KMS with the stack key,
        private, TLS 1.2+ only); artifacts also expire: each is one execution's input."""
        a = self._args
        return SecureBucket(f"{self._name}-artifacts", SecureBucketArgs(
            kms_key_arn=a.kms_key_arn, noncurrent_days=NONCURRENT_DAYS,
            expire_days=ARTIFACT_EXPIRY_DAYS, protect=a.protect), opts=self._opts()).bucket

    def _backend_env(self) -> list[aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs]:
        a = self._args
        env = aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs
        if a.backend == "cloud":
            # Resolved by CodeBuild at build start; never in the project definition or logs.
            return [env(name="PULUMI_ACCESS_TOKEN", type="SECRETS_MANAGER",
                        value=str(a.pulumi_token_secret))]
        return [env(name="PULUMI_BACKEND_URL", type="PLAINTEXT",
                    value=f"s3://{a.state_bucket}?region={a.context.region}")]

    def _build(self, kind: str) -> aws.codebuild.Project:
        """CodeBuild project ``<prefix>-<kind>`` running ``ci/buildspecs/<kind>.yml``, its
        encrypted log group and its role."""
        a, s = self._args, self._scope
        project_name = f"{a.prefix}-{kind}"
        log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-{kind}-build-logs", name=f"{a.log_group_prefix}/codebuild/{kind}",
            retention_in_days=a.log_retention_days, kms_key_id=a.kms_key_arn,
            opts=self._opts())
        project_arn = a.context.arn("codebuild", f"project/{project_name}")
        trust = service_trust_policy("codebuild.amazonaws.com", a.context, project_arn)
        statements = piam.build_basics(s, log_group.arn, self.artifact_bucket.arn,
                                       a.kms_key_arn, write_artifacts=kind == "preview")
        managed: list[pulumi.Input[str]] = []
        if kind == "test":
            statements.append(piam.test_reports(s, project_name))
        backend = dict(token_secret_arn=self._token_secret_arn, state_bucket=a.state_bucket,
                       secrets_key_arn=a.secrets_key_arn)
        if kind == "preview":
            statements += piam.state_backend(s, a.backend, write=False, **backend)
            managed.append(self._read_policy().arn)
        if kind == "deploy":
            statements += piam.state_backend(s, a.backend, write=True, **backend)
            statements += piam.deploy_outside_the_stack(
                s, connection_arn=a.connection_arn, hosted_zone_id=a.hosted_zone_id,
                domain_name=a.domain_name)
            managed += [self._read_policy().arn] + [p.arn for p in self._deploy_policies()]
        role_arn = self._role(f"{kind}-build", f"CodeBuild {project_name}: {kind} stage",
                              trust, statements, managed)

        env = aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs
        variables = [env(name="STACK", type="PLAINTEXT", value=a.stack)]
        if kind != "test":
            variables += self._backend_env()
        return aws.codebuild.Project(
            f"{self._name}-{kind}", name=project_name,
            description=f"{a.stack}: `make` via {BUILDSPEC_DIR}/{kind}.yml",
            service_role=role_arn,
            build_timeout=BUILD_TIMEOUTS[kind], queued_timeout=QUEUED_TIMEOUT,
            # One deploy at a time; Pulumi's state lock is the second guard.
            concurrent_build_limit=1 if kind == "deploy" else None,
            encryption_key=a.kms_key_arn,
            source=aws.codebuild.ProjectSourceArgs(
                type="CODEPIPELINE", buildspec=f"{BUILDSPEC_DIR}/{kind}.yml"),
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="CODEPIPELINE"),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                compute_type="BUILD_GENERAL1_MEDIUM" if kind != "preview"
                else "BUILD_GENERAL1_SMALL",
                image=BUILD_IMAGE, type="LINUX_CONTAINER",
                image_pull_credentials_type="CODEBUILD",
                # Test runs the container tests, Deploy builds the image: both need Docker.
                privileged_mode=kind in ("test", "deploy"),
                environment_variables=variables),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                    status="ENABLED", group_name=log_group.name),
                s3_logs=aws.codebuild.ProjectLogsConfigS3LogsArgs(status="DISABLED")),
            opts=self._opts(depends_on=[log_group]))

    def _read_policy(self) -> aws.iam.Policy:
        if not hasattr(self, "_read"):
            self._read = self._managed_policy(
                "read-stack", "Read the stack's configuration (no data): preview and refresh",
                piam.read_stack(self._scope))
        return self._read

    def _deploy_policies(self) -> list[aws.iam.Policy]:
        """Split in three: a managed policy holds at most 6,144 characters."""
        s = self._scope
        return [
            self._managed_policy("deploy-named", "pulumi up: resources named <prefix>-*",
                                 piam.deploy_by_name(s)),
            self._managed_policy("deploy-tagged", "pulumi up: resources tagged with the stack",
                                 piam.deploy_by_tag(s)),
            self._managed_policy("deploy-iam", "pulumi up: roles under the boundary",
                                 piam.deploy_iam(s, self._args.boundary_arn)),
        ]

    def _pipeline(self, projects: dict[str, aws.codebuild.Project]) -> aws.codepipeline.Pipeline:
        a = self._args
        trust = service_trust_policy("codepipeline.amazonaws.com", a.context, self._pipeline_arn)
        role_arn = self._role("pipeline", f"CodePipeline {self._pipeline_name}", trust, [
            {
                "Sid": "Artifacts",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                "Resource": pulumi.Output.concat(self.artifact_bucket.arn, "/*"),
            },
            {
                # CodePipeline checks the artifact store's versioning before a run.
                "Sid": "ArtifactBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketVersioning", "s3:GetBucketLocation"],
                "Resource": self.artifact_bucket.arn,
            },
            {
                "Sid": "ArtifactKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": a.kms_key_arn,
            },
            {
                "Sid": "GithubSource",
                "Effect": "Allow",
                # Connections made in the console since 2024 are AWS CodeConnections ARNs.
                "Action": "codeconnections:UseConnection"
                if ":codeconnections:" in (a.connection_arn or "")
                else "codestar-connections:UseConnection",
                "Resource": self.connection_arn,
            },
            {
                "Sid": "RunTheStageBuilds",
                "Effect": "Allow",
                "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
                "Resource": [p.arn for p in projects.values()],
            },
            {
                "Sid": "ApprovalNotifications",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": a.alarm_topic_arn,
            },
        ])

        def build(stage: str, kind: str, inputs: list[str], outputs: list[str] | None = None):
            return aws.codepipeline.PipelineStageActionArgs(
                name=stage, category="Build" if kind != "test" else "Test", owner="AWS",
                provider="CodeBuild", version="1", input_artifacts=inputs,
                output_artifacts=outputs, run_order=1,
                configuration={"ProjectName": projects[kind].name})

        stages = [
            aws.codepipeline.PipelineStageArgs(name="Source", actions=[
                aws.codepipeline.PipelineStageActionArgs(
                    name="Source", category="Source", owner="AWS",
                    provider="CodeStarSourceConnection", version="1",
                    output_artifacts=["source"], run_order=1,
                    configuration={"ConnectionArn": self.connection_arn,
                                   "FullRepositoryId": a.repository,
                                   "BranchName": a.branch,
                                   "OutputArtifactFormat": "CODE_ZIP"})]),
            aws.codepipeline.PipelineStageArgs(
                name="Test", actions=[build("Test", "test", ["source"])]),
            aws.codepipeline.PipelineStageArgs(
                name="Preview", actions=[build("Preview", "preview", ["source"], ["preview"])]),
        ]
        if a.approval_required:
            stages.append(aws.codepipeline.PipelineStageArgs(name="Approval", actions=[
                aws.codepipeline.PipelineStageActionArgs(
                    name="Approve", category="Approval", owner="AWS", provider="Manual",
                    version="1", run_order=1, timeout_in_minutes=a.approval_timeout_minutes,
                    configuration={
                        "NotificationArn": a.alarm_topic_arn,
                        "CustomData": f"Deploy to {a.stack}? Read the Preview stage's "
                                      f"artifact (preview-{a.stack}.txt) first.",
                    })]))
        stages.append(aws.codepipeline.PipelineStageArgs(
            name="Deploy", actions=[build("Deploy", "deploy", ["source"])],
            # A failed pulumi up or smoke test re-runs the last successful execution's
            # source through this stage (the previous version comes back).
            on_failure=aws.codepipeline.PipelineStageOnFailureArgs(result="ROLLBACK")))

        return aws.codepipeline.Pipeline(
            f"{self._name}-pipeline", name=self._pipeline_name, pipeline_type="V2",
            # A newer commit replaces one still waiting (e.g. for approval): latest wins.
            execution_mode="SUPERSEDED", role_arn=role_arn,
            artifact_stores=[aws.codepipeline.PipelineArtifactStoreArgs(
                location=self.artifact_bucket.bucket, type="S3",
                encryption_key=aws.codepipeline.PipelineArtifactStoreEncryptionKeyArgs(
                    id=a.kms_key_arn, type="KMS"))],
            triggers=[aws.codepipeline.PipelineTriggerArgs(
                provider_type="CodeStarSourceConnection",
                git_configuration=aws.codepipeline.PipelineTriggerGitConfigurationArgs(
                    source_action_name="Source",
                    pushes=[aws.codepipeline.PipelineTriggerGitConfigurationPushArgs(
                        branches=aws.codepipeline.PipelineTriggerGitConfigurationPushBranchesArgs(
                            includes=[a.branch]))]))],
            stages=stages, opts=self._opts())

    def _notifications(self) -> aws.codestarnotifications.NotificationRule:
        """Failed, succeeded and approval-needed events to the stack's alarm topic (its
        policy and the key policy let CodeStar Notifications publish: TOPIC_PUBLISHERS and
        key_statements())."""
        return aws.codestarnotifications.NotificationRule(
            f"{self._name}-notifications", name=f"{self._args.prefix}-pipeline",
            resource=self.pipeline.arn, detail_type="FULL",
            event_type_ids=list(NOTIFICATION_EVENTS),
            targets=[aws.codestarnotifications.NotificationRuleTargetArgs(
                address=self._args.alarm_topic_arn, type="SNS")],
            opts=self._opts())

    def _github_preview_role(self) -> pulumi.Output[str]:
        """OIDC provider for GitHub Actions (unless one exists in the account) and the
        read-only role only this repository's pull requests can assume."""
        a = self._args
        if a.github_oidc_provider_arn:
            provider_arn = pulumi.Output.from_input(a.github_oidc_provider_arn)
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{self._name}-github-oidc", url=f"https://{piam.GITHUB_OIDC_HOST}",
                client_id_lists=["sts.amazonaws.com"], opts=self._opts())
            provider_arn = provider.arn
        host = piam.GITHUB_OIDC_HOST
        trust = policy_document([{
            "Sid": "ThisRepositorysPullRequests",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{host}:aud": "sts.amazonaws.com",
                f"{host}:sub": f"repo:{a.repository}:pull_request",
            }},
        }])
        backend = piam.state_backend(self._scope, a.backend, write=False,
                                     token_secret_arn=self._token_secret_arn,
                                     state_bucket=a.state_bucket,
                                     secrets_key_arn=a.secrets_key_arn)
        # The Pulumi Cloud token lives in GitHub's secrets for the workflow; only the S3
        # backend needs AWS access to the state.
        statements = backend if a.backend == "s3" else []
        return self._role("github-preview", "GitHub pull requests: read-only pulumi preview",
                          trust, statements, [self._read_policy().arn])

