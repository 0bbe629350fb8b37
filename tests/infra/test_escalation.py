"""No role of any stack can gain a permission it does not already have.

Over each stack's rendered graph (dev, staging, prod), every role, pipeline and service
alike, is evaluated as AWS evaluates IAM (tests/infra/iam_eval.py: explicit deny wins,
identity AND boundary, resource policies, conditions with IAM's missing-key rules) against
the known escalation paths (PROBES): self-attaching a managed policy, an inline "*", a new or
default policy version, removing or replacing the boundary, a role without it, trust
changes, PassRole with CodeBuild/Lambda/ECS, users and access keys, AssumeRole outside the
stack, data outside the stack, tag-scoped grants met by one tag, approving, feeding the
pipeline, deleting audit logs, pushing images. Then the two-step paths: a role that can
rewrite another role's policies (or create one) and make it run code (PassRole to ECS,
Lambda, CodeBuild; or re-trust and assume it) gets everything the other role's boundary
allows, so that is evaluated against the same probes.

The test can fail: WEAKENINGS each open one path in a copy of the policies (most restore
what the stacks had before issue 8), and the same walk must report it.
"""

from __future__ import annotations

import fnmatch
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Any, Callable

import pytest

from infra import boundary as boundary_module
from tests.infra.harness import (STACKS, VARIANT_IDS, Graph, Resource, boundary_arn, prefix,
                                 principals, resource_policies, resources_of_type, target_of)
from tests.infra.iam_eval import Principal, Request, evaluate

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
# Services that run code with a role passed to them, and the call that starts it (on the
# name the stack's own resource has, where the deploy role may call it: the walk must try
# the path the deploy really has, to find it capped).
CODE_RUNNERS = {
    "ecs-tasks.amazonaws.com": ("ecs:RegisterTaskDefinition", "task-definition/{prefix}:9"),
    "lambda.amazonaws.com": ("lambda:CreateFunction", "function:{prefix}-function"),
    "codebuild.amazonaws.com": ("codebuild:CreateProject", "project/{prefix}-x"),
    "sagemaker.amazonaws.com": ("sagemaker:CreateModel", "model/{prefix}-model-x"),
}


# The suffix Application Auto Scaling gives a target-tracking alarm (a UUID).
ALARM_ID = "d4f0770c-b46e-434a-a60f-3b36d653feca"


@dataclass(frozen=True)
class Probe:
    path: str                      # the escalation path, as the issue names it
    request: Request


@dataclass
class Stack:
    """One stack's roles and resource policies, as the walk sees them (copied to weaken)."""

    graph: Graph
    roles: dict[str, Principal]
    policies: list[tuple[str, list[dict[str, Any]]]]
    account: str = ""
    region: str = ""
    boundary: str = ""
    prefix: str = ""

    @classmethod
    def of(cls, graph: Graph) -> "Stack":
        arn = boundary_arn(graph)
        return cls(graph, principals(graph), resource_policies(graph), arn.split(":")[4],
                   graph.config["aws:region"], arn, prefix(graph))

    def copy(self) -> "Stack":
        """A copy whose roles and resource policies can be weakened."""
        return replace(self, roles=deepcopy(self.roles), policies=deepcopy(self.policies))

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account}:{resource}"

    def policy_for(self, resource: str):
        for pattern, statements in self.policies:
            if fnmatch.fnmatchcase(resource, pattern):
                return statements
        return None

    def allowed(self, principal: Principal, request: Request) -> bool:
        return bool(evaluate(principal, request, self.policy_for(request.resource),
                             self.account))

    @property
    def deploy(self) -> Principal:
        return self.roles[self.arn("iam", f"role/{self.prefix}-deploy-build", region=False)]

    @property
    def pipeline_roles(self) -> list[str]:
        return [a for a in self.roles if f":role/{self.prefix}-" in a]

    @property
    def service_roles(self) -> list[str]:
        return [a for a in self.roles if "/service/" in a]


def _name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def probes(stack: Stack, me: Principal) -> list[Probe]:
    """Requests no role of the stack may make (``me`` is the caller)."""
    p, b = stack.prefix, stack.boundary
    iam = lambda r: stack.arn("iam", r, region=False)  # noqa: E731
    bounded = {"iam:PermissionsBoundary": b}
    found: list[Probe] = []
    # A pipeline role's own IAM, and every pipeline role's. (A service role's IAM is what
    # the deploy role manages by design: a service role the deploy takes over is assumed to
    # hold everything its boundary allows already, see takeovers().)
    for target in dict.fromkeys([*([me.arn] if me.arn in stack.pipeline_roles else []),
                                 *stack.pipeline_roles]):
        who = "itself" if target == me.arn else _name(target)
        found += [
            Probe(f"attach AdministratorAccess to {who}", Request(
                "iam:AttachRolePolicy", target, {**bounded, "iam:PolicyARN": ADMIN})),
            Probe(f"inline * on {who}", Request("iam:PutRolePolicy", target, bounded)),
            Probe(f"remove the boundary of {who}", Request(
                "iam:DeleteRolePermissionsBoundary", target, bounded)),
            Probe(f"replace the boundary of {who}", Request(
                "iam:PutRolePermissionsBoundary", target, {"iam:PermissionsBoundary": ADMIN})),
            Probe(f"change the trust of {who}", Request("iam:UpdateAssumeRolePolicy", target)),
        ]
        for service in (*CODE_RUNNERS, "codepipeline.amazonaws.com", "ec2.amazonaws.com"):
            if target != me.arn:
                found.append(Probe(f"pass {who} to {service}", Request(
                    "iam:PassRole", target, {"iam:PassedToService": service})))
    for policy in [b, *{iam(f"policy/{p}-{k}") for k in
                        ("read-stack", "deploy-named", "deploy-tagged", "deploy-iam")}]:
        found += [Probe("new version of a managed policy", Request(
                      "iam:CreatePolicyVersion", policy)),
                  Probe("default version of a managed policy", Request(
                      "iam:SetDefaultPolicyVersion", policy))]
    found += [
        Probe("role without the boundary", Request(
            "iam:CreateRole", iam(f"role/ml-app/{stack.graph.stack}/service/ecs-tasks/x"))),
        Probe("role without the boundary", Request("iam:CreateRole", iam(f"role/{p}-x"))),
        Probe("attach AdministratorAccess to a service role", Request(
            "iam:AttachRolePolicy", iam(f"role/ml-app/{stack.graph.stack}/service/ecs-tasks/x"),
            {**bounded, "iam:PolicyARN": ADMIN})),
        Probe("a user", Request("iam:CreateUser", iam("user/x"))),
        Probe("an access key", Request("iam:CreateAccessKey", iam("user/admin"))),
        Probe("a console password", Request("iam:CreateLoginProfile", iam("user/admin"))),
        Probe("a user's policy", Request("iam:AttachUserPolicy", iam("user/admin"),
                                         {"iam:PolicyARN": ADMIN})),
        Probe("a group member", Request("iam:AddUserToGroup", iam("group/admins"))),
        Probe("AssumeRole outside the stack", Request(
            "sts:AssumeRole", iam("role/OrganizationAccountAccessRole"))),
        Probe("AssumeRole outside the stack", Request(
            "sts:AssumeRole", iam("role/ml-app-other-deploy-build"))),
        Probe("CodeBuild with another role", Request(
            "codebuild:UpdateProject", stack.arn("codebuild", f"project/{p}-deploy"))),
        Probe("CodeBuild with another role", Request(
            "codebuild:CreateProject", stack.arn("codebuild", f"project/{p}-x"))),
        Probe("Lambda with another role", Request(
            "lambda:CreateFunction", stack.arn("lambda", f"function:{p}-x"))),
        Probe("Lambda with another role", Request(
            "lambda:UpdateFunctionConfiguration", stack.arn("lambda", f"function:{p}-x"))),
        Probe("SageMaker with another role", Request(
            "sagemaker:CreateTrainingJob", stack.arn("sagemaker", f"training-job/{p}-x"))),
        Probe("SageMaker with another role", Request(
            "sagemaker:CreateNotebookInstance",
            stack.arn("sagemaker", f"notebook-instance/{p}-x"))),
        Probe("data outside the stack", Request("s3:GetObject", "arn:aws:s3:::other-bucket/k")),
        Probe("data outside the stack", Request("s3:PutBucketPolicy", "arn:aws:s3:::other")),
        Probe("data outside the stack", Request(
            "secretsmanager:GetSecretValue", stack.arn("secretsmanager", "secret:other-AbCdEf"))),
        Probe("data outside the stack", Request(
            "kms:Decrypt", stack.arn("kms", "key/other"))),
        Probe("data outside the stack", Request(
            "ec2:CreateSnapshot", stack.arn("ec2", "volume/vol-other"))),
        Probe("another stack's resources", Request(
            "ecs:UpdateService", stack.arn("ecs", "service/ml-app-other/ml-app-other"))),
        *(Probe("another stack's target-tracking alarms", Request(action, stack.arn(
            "cloudwatch", f"alarm:TargetTracking-{resource}-AlarmHigh-{ALARM_ID}")))
          for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms")
          for resource in ("service/ml-app-other/ml-app-other",
                           "endpoint/ml-app-other/variant/live")),
        Probe("tag alone: another project's key", Request(
            "kms:PutKeyPolicy", stack.arn("kms", "key/other"),
            {"aws:ResourceTag/stack": stack.graph.stack, "aws:ResourceTag/project": "other"})),
        Probe("tag alone: another project's key", Request(
            "kms:ScheduleKeyDeletion", stack.arn("kms", "key/other"),
            {"aws:ResourceTag/stack": stack.graph.stack})),
        Probe("tag alone: another project's security group", Request(
            "ec2:AuthorizeSecurityGroupIngress", stack.arn("ec2", "security-group/sg-1"),
            {"aws:ResourceTag/stack": stack.graph.stack})),
        Probe("tag alone: another project's VPC", Request(
            "ec2:DeleteVpc", stack.arn("ec2", "vpc/vpc-1"),
            {"aws:ResourceTag/stack": stack.graph.stack, "aws:ResourceTag/project": "x"})),
        Probe("tagging a foreign resource into the stack", Request(
            "ec2:CreateTags", stack.arn("ec2", "security-group/sg-1"),
            {"aws:RequestTag/stack": stack.graph.stack,
             "aws:RequestTag/project": "ml-app"})),
        Probe("approving the deploy", Request(
            "codepipeline:PutApprovalResult", stack.arn("codepipeline", f"{p}/Approval/Approve"))),
        Probe("changing the pipeline", Request(
            "codepipeline:UpdatePipeline", stack.arn("codepipeline", p))),
        Probe("feeding the pipeline a revision", Request(
            "codepipeline:PutActionRevision", stack.arn("codepipeline", p))),
        Probe("deleting audit logs", Request(
            "s3:DeleteObjectVersion", f"arn:aws:s3:::{p}-audit-logs-abc/alb/x")),
        Probe("deleting audit logs", Request(
            "s3:BypassGovernanceRetention", f"arn:aws:s3:::{p}-audit-logs-abc/alb/x")),
        Probe("deleting audit logs", Request(
            "s3:DeleteObject", f"arn:aws:s3:::{p}-access-logs-abc/x")),
    ]
    if not me.arn.endswith(f":role/{p}-promotion-trigger"):
        found.append(Probe("starting the pipeline with other revisions", Request(
            "codepipeline:StartPipelineExecution", stack.arn("codepipeline", p))))
    for bucket in {pattern.split(":::")[1].split("/")[0] for pattern, _ in stack.policies
                   if "-promotion-" in pattern}:
        found.append(Probe("writing the promoted revision", Request(
            "s3:PutObject", f"arn:aws:s3:::{bucket}/source.zip")))
    # The stack's own repository (its policy lets the deploy role alone push).
    for pattern, _ in stack.policies:
        if ":repository/" in pattern and not me.arn.endswith(f":role/{p}-deploy-build"):
            found += [Probe("pushing an image", Request(action, pattern))
                      for action in ("ecr:PutImage", "ecr:InitiateLayerUpload")]
    return found


def takeovers(stack: Stack, me: Principal) -> list[tuple[str, Principal]]:
    """Roles ``me`` can rewrite (or create) and then run code as, or assume: each with the
    most it could then do (any identity policy me could write, under its boundary)."""
    bounded = {"iam:PermissionsBoundary": stack.boundary}
    candidates = {arn: role for arn, role in stack.roles.items() if arn != me.arn}
    for kind in boundary_module.SERVICE_ROLES:
        arn = stack.arn("iam", f"role/ml-app/{stack.graph.stack}/service/{kind}/new",
                        region=False)
        candidates[arn] = Principal(arn, (), stack.roles[stack.pipeline_roles[0]].boundary)
    found = []
    for arn, target in candidates.items():
        create = arn not in stack.roles and stack.allowed(me, Request("iam:CreateRole", arn,
                                                                      bounded))
        write = create or stack.allowed(me, Request("iam:PutRolePolicy", arn, bounded))
        if not write:
            continue
        worst = Principal(arn, (ALLOW_ALL,), target.boundary)
        how = [f"{'create' if create else 'rewrite'} and pass to {service}"
               for service, (action, resource) in CODE_RUNNERS.items()
               if stack.allowed(me, Request("iam:PassRole", arn,
                                            {"iam:PassedToService": service}))
               and stack.allowed(me, Request(action, stack.arn(
                   action.split(":")[0], resource.format(prefix=stack.prefix))))]
        if stack.allowed(me, Request("iam:UpdateAssumeRolePolicy", arn)) and \
                stack.allowed(me, Request("sts:AssumeRole", arn)):
            how.append("re-trust and assume")
        found += [(h, worst) for h in how]
    return found


def walk(stack: Stack) -> list[str]:
    """Every escalation path the stack's roles have (empty: none)."""
    found = []
    for arn, me in stack.roles.items():
        for probe in probes(stack, me):
            if stack.allowed(me, probe.request):
                found.append(f"{_name(arn)}: {probe.path} "
                             f"({probe.request.action} {probe.request.resource})")
        for how, other in takeovers(stack, me):
            for probe in probes(stack, other):
                if stack.allowed(other, probe.request):
                    found.append(f"{_name(arn)} -> {_name(other.arn)} ({how}): {probe.path} "
                                 f"({probe.request.action} {probe.request.resource})")
    return sorted(set(found))


@pytest.fixture(scope="module")
def stacks(graphs, target_graphs) -> dict[str, Stack]:
    """The committed stacks (ECS) and each stack on the other targets ("dev-lambda"...)."""
    return {name: Stack.of(graph) for name, graph in {**graphs, **target_graphs}.items()}


def assert_no_escalation(stack: Stack) -> None:
    """The walk over the stack's roles finds no path, and it had roles to walk: the
    pipeline's five (and the promotion trigger in a promoted stack) and the service's."""
    assert len(stack.pipeline_roles) >= 5 and stack.service_roles, list(stack.roles)
    assert walk(stack) == []


@pytest.mark.parametrize("name", (*STACKS, *VARIANT_IDS))
def test_no_role_of_the_stack_can_gain_a_permission(stacks, name):
    assert_no_escalation(stacks[name])


@pytest.mark.parametrize("name", STACKS)
def test_the_deploy_role_can_still_do_its_job(stacks, name):
    """The walk is not vacuous: the deploy role keeps what `pulumi up` needs, and the
    two-step path it has (rewrite a service role, pass it to ECS) is real, only capped."""
    stack = stacks[name]
    name = stack.graph.stack
    deploy = stack.deploy
    task_role = next(a for a in stack.service_roles if "/ecs-tasks/" in a)
    assert stack.allowed(deploy, Request("iam:PutRolePolicy", task_role,
                                         {"iam:PermissionsBoundary": stack.boundary}))
    assert stack.allowed(deploy, Request("iam:PassRole", task_role,
                                         {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
    assert not stack.allowed(deploy, Request("iam:PassRole", task_role,
                                             {"iam:PassedToService": "lambda.amazonaws.com"}))
    assert stack.allowed(deploy, Request("s3:PutObject",
                                         f"arn:aws:s3:::{stack.prefix}-models-abc/m/1"))
    assert stack.allowed(deploy, Request(
        "ec2:AuthorizeSecurityGroupIngress", stack.arn("ec2", "security-group/sg-1"),
        {"aws:ResourceTag/stack": name, "aws:ResourceTag/project": "ml-app"}))
    assert [how for how, _ in takeovers(stack, deploy)], "the deploy manages service roles"
    for pattern, _ in stack.policies:
        if ":repository/" in pattern:
            assert stack.allowed(deploy, Request("ecr:PutImage", pattern))


# Each other target's own two-step path (rewrite its service role, start code with it), and
# its resources by name; what the deploy role must not reach (another target's services).
TARGET_JOBS = {
    "sagemaker": ("sagemaker", "sagemaker.amazonaws.com",
                  [("sagemaker:CreateModel", "model/{prefix}-model-1234abcd"),
                   ("sagemaker:CreateEndpointConfig", "endpoint-config/{prefix}-config-1234abcd"),
                   ("sagemaker:UpdateEndpoint", "endpoint/{prefix}"),
                   ("sagemaker:InvokeEndpoint", "endpoint/{prefix}")]),
    "lambda": ("lambda", "lambda.amazonaws.com",
               [("lambda:CreateFunction", "function:{prefix}-function"),
                ("lambda:UpdateFunctionCode", "function:{prefix}-function"),
                ("lambda:UpdateAlias", "function:{prefix}-function:live"),
                ("lambda:InvokeFunctionUrl", "function:{prefix}-function:live")]),
}
# Compute of every target, and what the deploy role of another target must not start.
COMPUTE = [("ecs:CreateService", "service/{prefix}/{prefix}"),
           ("ecs:RegisterTaskDefinition", "task-definition/{prefix}:9"),
           ("sagemaker:CreateModel", "model/{prefix}-model-1234abcd"),
           ("sagemaker:CreateEndpoint", "endpoint/{prefix}"),
           ("lambda:CreateFunction", "function:{prefix}-function"),
           ("lambda:CreateFunctionUrlConfig", "function:{prefix}-function:live")]


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_the_deploy_role_does_its_targets_job_and_no_other_targets(stacks, name):
    stack = stacks[name]
    target = target_of(stack.graph)
    kind, service, calls = TARGET_JOBS[target]
    deploy = stack.deploy
    [role] = [a for a in stack.service_roles if f"/service/{kind}/" in a]
    bounded = {"iam:PermissionsBoundary": stack.boundary}
    assert stack.allowed(deploy, Request("iam:PutRolePolicy", role, bounded))
    for to, allowed in ((service, True), ("ecs-tasks.amazonaws.com", False),
                        ({"lambda": "sagemaker.amazonaws.com",
                          "sagemaker": "lambda.amazonaws.com"}[target], False)):
        assert stack.allowed(deploy, Request("iam:PassRole", role,
                                             {"iam:PassedToService": to})) is allowed, to
    for action, resource in calls:
        request = Request(action, stack.arn(action.split(":")[0],
                                            resource.format(prefix=stack.prefix)),
                          {"lambda:FunctionUrlAuthType": "AWS_IAM"})
        assert stack.allowed(deploy, request), request
    assert [how for how, _ in takeovers(stack, deploy) if service in how], \
        "the deploy manages its target's service role and runs code with it (capped)"
    # No other target's compute, no network, no roles of another kind.
    for action, resource in COMPUTE:
        if not action.startswith(f"{target}:"):
            request = Request(action, stack.arn(action.split(":")[0],
                                                resource.format(prefix=stack.prefix)))
            assert not stack.allowed(deploy, request), request
    assert not stack.allowed(deploy, Request(
        "ec2:CreateVpc", stack.arn("ec2", "vpc/*"),
        {"aws:RequestTag/stack": stack.graph.stack, "aws:RequestTag/project": "ml-app"}))
    for other in ("ecs-tasks", "vpc-flow-logs", "lambda" if kind == "sagemaker" else "sagemaker"):
        assert not stack.allowed(deploy, Request(
            "iam:CreateRole", stack.arn("iam", f"role/ml-app/{stack.graph.stack}/service/"
                                               f"{other}/x", region=False), bounded)), other


def autoscaling_calls(stack: Stack, target: Resource) -> dict[str, list[Request]]:
    """Every API call `pulumi up` of the autoscaling component makes for one scalable target
    and its policies (pulumi-aws's appautoscaling Target and Policy: create, read, update,
    tags, delete), each with the requests AWS authorises for it: the call's own action, and
    the dependent actions Application Auto Scaling checks with the caller's permissions
    (User Guide, "Permissions required for actions on target services and CloudWatch": the
    scaled resource's describe and update, the policy's alarms; the target's service-linked
    role on an account's first RegisterScalableTarget)."""
    resource_id, namespace = target.inputs["resourceId"], target.inputs["serviceNamespace"]
    scalable = stack.arn("application-autoscaling",
                         "scalable-target/0123456789abcdef0123456789abcdef0123")
    keys = {"application-autoscaling:service-namespace": namespace,
            "application-autoscaling:scalable-dimension": target.inputs["scalableDimension"]}
    tags = {"project": "ml-app", "stack": stack.graph.stack}
    requested = {**keys, **{f"aws:RequestTag/{k}": v for k, v in tags.items()}}
    carried = {**keys, **{f"aws:ResourceTag/{k}": v for k, v in tags.items()}}
    alarms = [stack.arn("cloudwatch", f"alarm:TargetTracking-{resource_id}-Alarm{level}-"
                                      f"{ALARM_ID}") for level in ("High", "Low")]
    put_alarms = [Request(a, alarm) for alarm in alarms
                  for a in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm")]
    delete_alarms = [Request(a, alarm) for alarm in alarms
                     for a in ("cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms")]
    if namespace == "ecs":
        service = stack.arn("ecs", resource_id)
        scaled = [Request("ecs:DescribeServices", service), Request("ecs:UpdateService", service)]
        role = "ecs.application-autoscaling.amazonaws.com/" \
               "AWSServiceRoleForApplicationAutoScaling_ECSService"
    else:
        endpoint = stack.arn("sagemaker", "/".join(resource_id.split("/")[:2]))
        [config] = resources_of_type(
            stack.graph, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
        scaled = [Request("sagemaker:DescribeEndpoint", endpoint),
                  Request("sagemaker:DescribeEndpointConfig", config.outputs["arn"]),
                  Request("sagemaker:UpdateEndpointWeightsAndCapacities", endpoint)]
        role = "sagemaker.application-autoscaling.amazonaws.com/" \
               "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    linked_role = Request("iam:CreateServiceLinkedRole",
                          stack.arn("iam", f"role/aws-service-role/{role}", region=False),
                          {"iam:AWSServiceName": role.split("/")[0]})
    return {
        "RegisterScalableTarget (create, tagged)": [
            Request("application-autoscaling:RegisterScalableTarget", scalable, requested),
            *scaled, linked_role],
        "RegisterScalableTarget (update: min or max capacity)": [
            Request("application-autoscaling:RegisterScalableTarget", scalable, carried),
            *scaled],
        "DescribeScalableTargets": [
            Request("application-autoscaling:DescribeScalableTargets", "*")],
        "ListTagsForResource": [Request("application-autoscaling:ListTagsForResource", scalable,
                                        carried)],
        "TagResource": [Request("application-autoscaling:TagResource", scalable,
                                {**carried, **requested})],
        "UntagResource": [Request("application-autoscaling:UntagResource", scalable, carried)],
        "PutScalingPolicy (create or update)": [
            Request("application-autoscaling:PutScalingPolicy", scalable, carried),
            *scaled, *put_alarms],
        "DescribeScalingPolicies": [
            Request("application-autoscaling:DescribeScalingPolicies", "*")],
        "DeleteScalingPolicy": [
            Request("application-autoscaling:DeleteScalingPolicy", scalable, carried),
            *delete_alarms],
        "DeregisterScalableTarget": [
            Request("application-autoscaling:DeregisterScalableTarget", scalable, carried),
            *delete_alarms],
    }


@pytest.mark.parametrize("name", (*STACKS, *VARIANT_IDS))
def test_the_deploy_role_makes_every_call_of_the_autoscaling_component(stacks, name):
    """Every call of `pulumi up` of the ECS service's or the endpoint variant's autoscaling,
    with its dependent actions, is allowed (identity AND boundary) for the stack's own
    scalable target; a target on which the stack has none (Lambda) has nothing to check."""
    stack = stacks[name]
    targets = resources_of_type(stack.graph, "aws:appautoscaling/target:Target")
    # (A serverless endpoint scales itself: staging-sagemaker has no scalable target.)
    serverless = stack.graph.config.get("ml-app:sagemakerServerlessMemoryMb", "0") != "0"
    assert len(targets) == (target_of(stack.graph) != "lambda" and not serverless), targets
    for target in targets:
        for call, requests in autoscaling_calls(stack, target).items():
            denied = [(r.action, r.resource, evaluate(stack.deploy, r).reason)
                      for r in requests if not stack.allowed(stack.deploy, r)]
            assert not denied, (call, denied)


@pytest.mark.parametrize("name", (*STACKS, *VARIANT_IDS))
def test_the_deploy_role_writes_the_tracking_alarms_of_its_own_target_only(stacks, name):
    """The alarms target tracking creates, for the stack's own scalable target: the ECS
    service in its cluster, or the endpoint's variant; not another stack's, not another
    service's of the cluster, not the other target's form, not its other alarms by name
    (on Lambda, none: Application Auto Scaling scales nothing there). The same for the
    service-linked role Application Auto Scaling creates on its first use."""
    stack = stacks[name]
    target, p = target_of(stack.graph), stack.prefix
    own = {"ecs": f"service/{p}/{p}", "sagemaker": f"endpoint/{p}/variant/live"}
    others = ["service/ml-app-other/ml-app-other", f"service/{p}/other",
              f"service/ml-app-other/{p}", "endpoint/ml-app-other/variant/live",
              f"endpoint/{p}/variant/other", *[r for t, r in own.items() if t != target]]
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
        for resource, allowed in ([(own[target], True)] if target in own else []) + \
                [(r, False) for r in others]:
            for level in ("High", "Low"):
                alarm = stack.arn("cloudwatch",
                                  f"alarm:TargetTracking-{resource}-Alarm{level}-{ALARM_ID}")
                assert stack.allowed(stack.deploy, Request(action, alarm)) is allowed, alarm
        if target in own:
            lookalike = stack.arn("cloudwatch", f"alarm:TargetTracking-{own[target]}-AlarmX")
            assert not stack.allowed(stack.deploy, Request(action, lookalike))
    # Its target's Application Auto Scaling service-linked role, and not the other's.
    for kind, role in (("ecs", "ECSService"), ("sagemaker", "SageMakerEndpoint")):
        principal = f"{kind}.application-autoscaling.amazonaws.com"
        request = Request("iam:CreateServiceLinkedRole", stack.arn(
            "iam", f"role/aws-service-role/{principal}/AWSServiceRoleForApplicationAutoScaling_"
                   f"{role}", region=False), {"iam:AWSServiceName": principal})
        assert stack.allowed(stack.deploy, request) is (kind == target), principal


@pytest.mark.parametrize("name", STACKS)
def test_an_ecs_stacks_deploy_role_starts_no_other_targets_compute(stacks, name):
    stack = stacks[name]
    deploy = stack.deploy
    for action, resource in COMPUTE:
        request = Request(action, stack.arn(action.split(":")[0],
                                            resource.format(prefix=stack.prefix)))
        assert stack.allowed(deploy, request) is action.startswith("ecs:"), request


@pytest.mark.parametrize("name", ["staging-lambda", "staging-sagemaker", "prod-lambda"])
def test_a_lambda_url_takes_only_the_configured_auth(stacks, name):
    """The deploy role creates the Function URL with the auth lambdaUrlAuth names, no other
    (condition key lambda:FunctionUrlAuthType): prod's cannot open a public URL."""
    stack = stacks[name]
    deploy = stack.deploy
    url = stack.arn("lambda", f"function:{stack.prefix}-function:live")
    configured = stack.graph.config["ml-app:lambdaUrlAuth"]
    for auth in ("AWS_IAM", "NONE"):
        request = Request("lambda:CreateFunctionUrlConfig", url,
                          {"lambda:FunctionUrlAuthType": auth})
        assert stack.allowed(deploy, request) is (
            target_of(stack.graph) == "lambda" and auth == configured), auth
    public = Request("lambda:AddPermission", url)
    assert stack.allowed(deploy, public) is (configured == "NONE"
                                             and target_of(stack.graph) == "lambda")


def test_only_stagings_deploy_role_writes_prods_source(stacks):
    """Across accounts: prod's promotion bucket takes writes from staging's deploy role
    only (its policy and staging's roles' own policies must both allow)."""
    prod, staging = stacks["prod"], stacks["staging"]
    [bucket] = {pattern.split(":::")[1].split("/")[0] for pattern, _ in prod.policies
                if "-promotion-" in pattern}
    request = Request("s3:PutObject", f"arn:aws:s3:::{bucket}/source.zip")
    policy = prod.policy_for(request.resource)
    writers = [_name(arn) for arn, role in staging.roles.items()
               if evaluate(role, request, policy, prod.account)]
    assert writers == ["ml-app-staging-deploy-build"]
    for arn, role in prod.roles.items():
        assert not evaluate(role, request, policy, prod.account), arn


# ---------------------------------------------------------------- the test can fail --
def _grant(stack: Stack, role: str, *statements: dict) -> None:
    [arn] = [a for a in stack.roles if a.endswith(f":role/{stack.prefix}-{role}")]
    stack.roles[arn] = replace(stack.roles[arn],
                               identity=stack.roles[arn].identity + tuple(statements))


def _boundary_without(stack: Stack, *sids: str, add: tuple[dict, ...] = ()) -> None:
    for arn, role in stack.roles.items():
        if role.boundary is not None:
            stack.roles[arn] = replace(role, boundary=tuple(
                s for s in role.boundary if s.get("Sid") not in sids) + add)


def _allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


IAM_OLD = ("iam:*",)    # the boundary before issue 8 allowed iam:* (and s3:*, kms:*...) on *
PIPELINE_ROLES = "arn:aws:iam::{account}:role/{prefix}-*"
PIPELINE_POLICIES = "arn:aws:iam::{account}:policy/{prefix}-*"


def _old_iam(action: str, resource: str = "*", *also_without: str) -> Callable[[Stack], None]:
    """What the stacks had before issue 8: a boundary allowing iam:* with no invariant
    outside the stack's service roles (and without ``also_without``), and the deploy role
    granted ``action`` on ``resource``."""
    def weaken(s: Stack) -> None:
        _boundary_without(s, "NoIamOutsideServiceRoles", *also_without, add=(_allow(IAM_OLD),))
        _grant(s, "deploy-build", _allow(action, resource.format(account=s.account,
                                                                 prefix=s.prefix)))
    return weaken


WEAKENINGS: dict[str, tuple[Callable[[Stack], None], str]] = {
    "self-attach a managed policy": (
        _old_iam("iam:AttachRolePolicy", PIPELINE_ROLES, "AttachOnlyServicePolicies"),
        "deploy-build: attach AdministratorAccess to itself"),
    "inline * on itself": (_old_iam("iam:PutRolePolicy", PIPELINE_ROLES),
                           "deploy-build: inline * on itself"),
    "inline * on another pipeline role": (
        _old_iam("iam:PutRolePolicy", PIPELINE_ROLES),
        "deploy-build: inline * on ml-app-{stack}-preview-build"),
    "new policy version": (_old_iam("iam:CreatePolicyVersion", PIPELINE_POLICIES),
                           "deploy-build: new version of a managed policy"),
    "default policy version": (_old_iam("iam:SetDefaultPolicyVersion"),
                               "deploy-build: default version of a managed policy"),
    "boundary removal": (_old_iam("iam:DeleteRolePermissionsBoundary", "*",
                                  "NoRemovingBoundaries"),
                         "deploy-build: remove the boundary of itself"),
    "boundary replacement": (_old_iam("iam:PutRolePermissionsBoundary", "*",
                                      "NoRoleWithoutThisBoundary"),
                             "deploy-build: replace the boundary of itself"),
    "role without the boundary": (lambda s: (
        _boundary_without(s, "NoRoleWithoutThisBoundary"),
        _grant(s, "deploy-build", _allow("iam:CreateRole", f"arn:aws:iam::{s.account}:"
                                         f"role/ml-app/{s.graph.stack}/service/*"))),
        "deploy-build: role without the boundary"),
    "trust change": (_old_iam("iam:UpdateAssumeRolePolicy", PIPELINE_ROLES),
                     "deploy-build: change the trust of ml-app-{stack}-pipeline"),
    "PassRole of a pipeline role to CodeBuild": (
        _old_iam("iam:PassRole", PIPELINE_ROLES),
        "deploy-build: pass ml-app-{stack}-pipeline to codebuild.amazonaws.com"),
    "CodeBuild project changed": (lambda s: (
        _boundary_without(s, "NoChangingThePipeline"),
        _grant(s, "deploy-build", _allow("codebuild:UpdateProject", "*"))),
        "deploy-build: CodeBuild with another role"),
    "Lambda with another role": (lambda s: (
        _boundary_without(s, add=(_allow("lambda:*"),)),
        _grant(s, "deploy-build", _allow("lambda:CreateFunction"))),
        "deploy-build: Lambda with another role"),
    "users and access keys": (_old_iam("iam:CreateAccessKey"),
                              "deploy-build: an access key"),
    "AssumeRole outside the stack": (lambda s: (
        _boundary_without(s, add=(_allow("sts:AssumeRole"),)),
        _grant(s, "deploy-build", _allow("sts:AssumeRole"))),
        "deploy-build: AssumeRole outside the stack"),
    # Two steps: the deploy rewrites a service role it may pass to ECS; with the old,
    # service-wide ceiling that role reaches every bucket, key and secret of the account.
    "two steps through a service role": (lambda s: _boundary_without(
        s, add=(_allow(["s3:*", "kms:*", "secretsmanager:*"]),)),
        "deploy-build -> "),
    "tag alone": (lambda s: (
        _boundary_without(s, add=(_allow("kms:*", "*", Condition={"StringEquals": {
            "aws:ResourceTag/stack": s.graph.stack}}),)),
        _grant(s, "deploy-build", _allow("kms:PutKeyPolicy", "*", Condition={"StringEquals": {
            "aws:ResourceTag/stack": s.graph.stack}}))),
        "deploy-build: tag alone: another project's key"),
    # (The ceiling names the pipeline and not its actions: the weakened copy adds them back.)
    "approving": (lambda s: (
        _boundary_without(s, "NoRoleApproves", add=(_allow(
            "codepipeline:*", s.arn("codepipeline", f"{s.prefix}/*")),)),
        _grant(s, "deploy-build", _allow("codepipeline:PutApprovalResult"))),
        "deploy-build: approving the deploy"),
    "starting the pipeline on other revisions": (lambda s: (
        _boundary_without(s, "NoStartWithOtherRevisions"),
        _grant(s, "deploy-build", _allow("codepipeline:StartPipelineExecution"))),
        "deploy-build: starting the pipeline with other revisions"),
    "deleting audit logs": (lambda s: (
        _boundary_without(s, "NoDeletingAuditLogs"),
        _grant(s, "deploy-build", _allow("s3:DeleteObjectVersion",
                                         f"arn:aws:s3:::{s.prefix}-*"))),
        "deploy-build: deleting audit logs"),
    "pushing an image as another role": (lambda s: (
        s.policies.__setitem__(slice(None), [(p, [] if ":repository/" in p else st)
                                             for p, st in s.policies]),
        _grant(s, "test-build", _allow("ecr:PutImage", f"arn:aws:ecr:*:*:repository/"
                                       f"{s.prefix}-*"))),
        "test-build: pushing an image"),
}


@pytest.mark.parametrize("name, runner", [("staging-lambda", "lambda.amazonaws.com"),
                                          ("staging-sagemaker", "sagemaker.amazonaws.com")])
def test_the_walk_takes_each_targets_own_two_step_path(stacks, name, runner):
    """The old, service-wide ceiling on a Lambda or SageMaker stack: the walk finds the
    deploy role rewriting the target's execution role and running code with it."""
    weakened = stacks[name].copy()
    WEAKENINGS["two steps through a service role"][0](weakened)
    found = walk(weakened)
    assert any(f"pass to {runner})" in f for f in found), found


@pytest.mark.parametrize("weakness", list(WEAKENINGS))
def test_the_walk_finds_each_path_in_a_weakened_copy(stacks, weakness):
    weaken, expected = WEAKENINGS[weakness]
    weakened = stacks["staging"].copy()
    weaken(weakened)
    found = walk(weakened)
    expected = "ml-app-staging-" + expected.format(stack="staging")
    assert any(f.startswith(expected) for f in found), (expected, found)


def test_the_walk_finds_writes_to_prods_source_when_its_bucket_policy_is_weakened(stacks):
    weakened = stacks["prod"].copy()
    weakened.policies = [
        (pattern, [s for s in statements if s.get("Sid") != "NobodyElseWritesOrDeletes"])
        for pattern, statements in weakened.policies]
    _boundary_without(weakened, "NoWritingPromotionBucket")
    assert any("ml-app-prod-deploy-build: writing the promoted revision" in f
               for f in walk(weakened))


def test_the_other_side_of_every_pipeline_choice_holds_too(variant):
    """dev with an approval and approvers, the S3 state backend and its KMS key, an
    existing connection and OIDC provider (harness.VARIANT)."""
    assert_no_escalation(Stack.of(variant))
