"""Run the Pulumi program offline, under Pulumi's mocks, and record the whole resource graph.

No Pulumi CLI, no AWS account: ``run_program(stack)`` loads ``Pulumi.yaml``'s declared
defaults and ``Pulumi.<stack>.yaml`` the way the CLI does, runs ``__main__.py`` against a
recording mock monitor, and returns a ``Graph``: every resource with its type, name, parent,
provider, options (protect, ignore_changes, depends_on...), inputs and mocked outputs, every
invoke, every component's registered outputs, the stack exports and the warnings logged.

Pitfalls handled here (see shared notes, pulumi-offline.md): each run gets a fresh event
loop, reset runtime options and its own config; the program is re-executed with ``runpy``
(an imported module registers nothing the second time); invokes are mocked strictly (an
unmocked one fails the run with its token); numbers arrive as floats and are normalised;
secrets arrive wrapped and are kept as ``Secret`` in ``raw_inputs``.

Also here, because several test modules need them (test modules never import each other):
queries over a graph, a role's effective statements, parliament with one allow-list
format, and validation of request parameters against botocore's API models. The API is
listed in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import runpy
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROJECT = "ml-app"
STACKS = ("dev", "staging", "prod")
MOCK_ACCOUNT = "123456789012"
MAIN = ROOT / "__main__.py"
# Component type tokens the tests look inside.
PIPELINE = "ml-app:cicd:Pipeline"
BOUNDARY = "ml-app:cicd:PermissionsBoundary"
# The other side of every pipeline configuration choice, run once on dev (the ``variant``
# fixture): approval on, the S3 state backend, an existing connection and OIDC provider.
VARIANT = {
    "requireApproval": True, "pulumiBackend": "s3", "pulumiStateBucket": "acme-pulumi-state",
    "pulumiSecretsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/"
                           "0b6e1c3a-5d2f-4e8b-9a7c-1f2e3d4c5b6a",
    "codestarConnectionArn": "arn:aws:codestar-connections:eu-west-1:123456789012:connection/"
                             "11111111-2222-4333-8444-555555555555",
    "githubOidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/"
                             "token.actions.githubusercontent.com",
    "approvers": ["arn:aws:iam::123456789012:role/release-managers"],
}

# The committed stacks run on ECS; every stack also runs on each other target (the
# ``target_graphs`` fixture), with what its stack file would add to run there. Chosen to take
# each branch of each target once: SageMaker on instances with autoscaling (dev), serverless
# (staging), production with data capture (prod); Lambda with the defaults (dev), a public
# URL outside production (staging), provisioned concurrency in production (prod).
TARGET_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "sagemaker": {
        "dev": {"target": "sagemaker"},
        "staging": {"target": "sagemaker", "sagemakerServerlessMemoryMb": 2048,
                    "sagemakerServerlessMaxConcurrency": 10},
        "prod": {"target": "sagemaker", "sagemakerInstanceCount": 2,
                 "sagemakerMaxInstanceCount": 6, "sagemakerDataCapturePercent": 10},
    },
    "lambda": {
        "dev": {"target": "lambda"},
        "staging": {"target": "lambda", "lambdaUrlAuth": "NONE"},
        "prod": {"target": "lambda", "lambdaProvisionedConcurrency": 2,
                 "lambdaReservedConcurrency": 20},
    },
}
VARIANT_IDS = tuple(f"{stack}-{target}" for target in TARGET_VARIANTS for stack in STACKS)

from policy.rules import POLICY_PROPS  # noqa: E402 (needs ROOT on sys.path)
from tests.infra.iam_eval import Principal  # noqa: E402


# ------------------------------------------------------------------------------ records --
@dataclass(frozen=True)
class Secret:
    """A value the program marked secret (kept wrapped in ``Resource.raw_inputs``)."""

    value: Any


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    parent: str                   # parent URN ("" for the stack's direct children)
    custom: bool                  # False for components
    provider: str                 # provider reference "urn::id" ("" for components)
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    depends_on: list[str]         # URNs: explicit depends_on and those implied by inputs
    explicit_depends_on: list[str]  # URNs given with the depends_on option
    raw_inputs: dict[str, Any]    # with Secret wrappers
    inputs: dict[str, Any]        # secrets unwrapped
    outputs: dict[str, Any]       # what the mocks returned, plus "id"

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}"


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str


@dataclass
class Graph:
    """One stack's recorded program run."""

    stack: str
    config: dict[str, str]
    resources: list[Resource] = field(default_factory=list)
    invokes: list[Invoke] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def by_urn(self, urn: str) -> Resource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: Resource) -> list[Resource]:
        return [r for r in self.resources if r.parent == parent.urn]

    def ancestors(self, resource: Resource) -> list[Resource]:
        """Parent, grandparent... (the stack itself is not recorded)."""
        index = {r.urn: r for r in self.resources}
        chain, urn = [], resource.parent
        while urn in index:
            chain.append(index[urn])
            urn = index[urn].parent
        return chain


# ------------------------------------------------------------------------- graph queries --
def resources_of_type(graph: Graph, *types: str) -> list[Resource]:
    """Resources whose type token is one of ``types`` (e.g. "aws:ecs/service:Service")."""
    return [r for r in graph.resources if r.type in types]


def within(graph: Graph, component_type: str, *types: str) -> list[Resource]:
    """Resources of ``types`` built inside a component of ``component_type`` (at any depth),
    e.g. within(graph, "ml-app:infra:ModelRegistry", "aws:s3/bucket:Bucket")."""
    return [r for r in resources_of_type(graph, *types)
            if any(a.type == component_type for a in graph.ancestors(r))]


def one(graph: Graph, type_: str, component_type: str | None = None) -> Resource:
    """The single resource of ``type_`` (inside ``component_type`` if given)."""
    found = (within(graph, component_type, type_) if component_type
             else resources_of_type(graph, type_))
    assert len(found) == 1, f"expected exactly one {type_}, found {[r.name for r in found]}"
    return found[0]


def unwrap(value: Any) -> Any:
    """Remove Secret wrappers recursively."""
    if isinstance(value, Secret):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def json_input(resource: Resource, key: str) -> Any:
    """A JSON-string input (policy, container definitions...) parsed."""
    value = resource.inputs.get(key)
    assert isinstance(value, str), f"{resource.label}: {key} is not a JSON string: {value!r}"
    return json.loads(value)


# Where policy documents live, by resource type: (input key, kind). One table, shared with
# the policy pack's rules.
POLICY_INPUTS = POLICY_PROPS


@dataclass
class PolicyDoc:
    resource: Resource
    kind: str                    # identity | trust | key | resource
    text: str
    document: dict[str, Any]

    @property
    def statements(self) -> list[dict[str, Any]]:
        statements = self.document.get("Statement", [])
        return statements if isinstance(statements, list) else [statements]


def policy_documents(graph: Graph, *kinds: str) -> list[PolicyDoc]:
    """Every policy document in the graph (optionally only the given kinds)."""
    docs = []
    for r in graph.resources:
        where = POLICY_INPUTS.get(r.type)
        if where is None or r.inputs.get(where[0]) in (None, ""):
            continue
        if kinds and where[1] not in kinds:
            continue
        text = r.inputs[where[0]]
        docs.append(PolicyDoc(r, where[1], text, json.loads(text)))
    return docs


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def config_value(graph: Graph, key: str) -> str:
    """The stack's value of a project key, as the CLI passes it (a string)."""
    return graph.config[f"{PROJECT}:{key}"]


def deployed_models(graph: Graph) -> list:
    """The stack's ``ml-app:models`` entries as releases (infra/releases.ModelVersion), in
    order: the default model first."""
    from infra import releases

    return [releases.pinned(entry)[0] for entry in json.loads(config_value(graph, "models"))]


def prefix(graph: Graph) -> str:
    """The physical-name prefix of the stack (infra/naming.py)."""
    return f"{PROJECT}-{graph.stack}"


def stack_key_arn(graph: Graph) -> str:
    return one(graph, "aws:kms/key:Key").outputs["arn"]


def boundary_arn(graph: Graph) -> str:
    return one(graph, "aws:iam/policy:Policy", BOUNDARY).outputs["arn"]


# ----------------------------------------------------------------------------------- IAM --
def role_named(graph: Graph, key: str) -> Resource:
    """The role whose physical name is ``<prefix>-<key>``."""
    [found] = [r for r in resources_of_type(graph, "aws:iam/role:Role")
               if r.inputs.get("name") == f"{prefix(graph)}-{key}"]
    return found


def role_statements(graph: Graph, role: Resource) -> list[dict[str, Any]]:
    """Statements of the role's inline policies and of every managed policy attached to it."""
    statements = []
    for p in resources_of_type(graph, "aws:iam/rolePolicy:RolePolicy"):
        if p.inputs["role"] == role.outputs["id"]:
            statements += as_list(json_input(p, "policy")["Statement"])
    attached = {a.inputs["policyArn"] for a in resources_of_type(
        graph, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]}
    for p in resources_of_type(graph, "aws:iam/policy:Policy"):
        if p.outputs["arn"] in attached:
            statements += as_list(json_input(p, "policy")["Statement"])
            attached.discard(p.outputs["arn"])
    assert not attached, f"attached policies not found in the graph: {attached}"
    return statements


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def principals(graph: Graph) -> dict[str, Principal]:
    """Every role of the graph as the IAM evaluator sees it (tests/infra/iam_eval.py), by
    role ARN: its inline and attached policies, and its permissions boundary's document."""
    boundaries = {p.outputs["arn"]: tuple(as_list(json_input(p, "policy")["Statement"]))
                  for p in resources_of_type(graph, "aws:iam/policy:Policy")}
    found = {}
    for role in resources_of_type(graph, "aws:iam/role:Role"):
        boundary = role.inputs.get("permissionsBoundary")
        found[role.outputs["arn"]] = Principal(
            role.outputs["arn"], tuple(role_statements(graph, role)),
            boundaries[boundary] if boundary else None)
    return found


def resource_policies(graph: Graph) -> list[tuple[str, list[dict[str, Any]]]]:
    """(ARN pattern of what the policy governs, its statements) for every resource-based
    policy of the graph: buckets (and their objects), the ECR repository, the KMS key."""
    found = []
    buckets = {b.outputs["id"]: b.outputs["arn"]
               for b in resources_of_type(graph, "aws:s3/bucket:Bucket")}
    for p in resources_of_type(graph, "aws:s3/bucketPolicy:BucketPolicy"):
        arn = buckets[p.inputs["bucket"]]
        statements = as_list(json_input(p, "policy")["Statement"])
        found += [(arn, statements), (f"{arn}/*", statements)]
    repositories = {r.outputs["name"]: r.outputs["arn"]
                    for r in resources_of_type(graph, "aws:ecr/repository:Repository")}
    for p in resources_of_type(graph, "aws:ecr/repositoryPolicy:RepositoryPolicy"):
        found.append((repositories[p.inputs["repository"]],
                      as_list(json_input(p, "policy")["Statement"])))
    for key in resources_of_type(graph, "aws:kms/key:Key"):
        found.append((key.outputs["arn"], as_list(json_input(key, "policy")["Statement"])))
    return found


# ----------------------------------------------------------------------------- linters --
# Parliament findings a test accepts, in one format: (policy name without the stack prefix,
# e.g. "deploy-named" or "roles-execution"; parliament's issue) -> (the actions, lower case,
# the finding may name, or None for any; the reason, said once here).
AllowList = Mapping[tuple[str, str], tuple["set[str] | None", str]]


def policy_key(graph: Graph, doc: PolicyDoc) -> str:
    """The allow-list name of a policy document: its resource name without the prefix."""
    return doc.resource.name.removeprefix(prefix(graph) + "-")


@lru_cache(maxsize=None)
def lint(text: str) -> tuple[tuple[str, Any], ...]:
    """Parliament's findings on a policy document: (issue, detail) pairs."""
    import parliament

    return tuple(
        (f.issue, f.detail if f.detail else {"actions": (f.location or {}).get("actions", [])})
        for f in parliament.analyze_policy_string(text, include_community_auditors=True).findings)


def finding_actions(detail: Any) -> set[str]:
    """Parliament puts the actions in the detail (a list) or in the location (a dict)."""
    if isinstance(detail, dict):
        return {a.lower() for a in detail.get("actions", [])}
    if isinstance(detail, list):
        return {(d["action"] if isinstance(d, dict) else d).lower() for d in detail}
    return set()


def unexpected_findings(key: str, text: str, allowed: AllowList) -> list[tuple[str, Any]]:
    """Findings the allow-list does not cover, for the policy ``key``."""
    problems = []
    for issue, detail in lint(text):
        entry = allowed.get((key, issue))
        if entry is None:
            problems.append((issue, detail))
            continue
        actions = finding_actions(detail)
        if entry[0] is not None and (not actions or not actions <= entry[0]):
            problems.append((issue, sorted(actions - entry[0]) or detail))
    return problems


def used_entries(key: str, text: str, allowed: AllowList) -> set[tuple[str, str]]:
    """The allow-list entries the policy ``key`` needs (for the no-stale-entries tests)."""
    return {(key, issue) for issue, _ in lint(text)} & set(allowed)


@lru_cache(maxsize=None)
def input_shape(service: str, operation: str):
    """The input shape of an AWS API operation, from the models botocore ships."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service) \
        .operation_model(operation).input_shape


@lru_cache(maxsize=None)
def _pattern(pattern: str | None) -> re.Pattern[str] | None:
    """A model's pattern as a Python regex; None when absent or not Python syntax (some
    models use Java classes such as \\p{Print}, which cannot be checked here)."""
    try:
        return re.compile(pattern) if pattern else None
    except re.error:
        return None


def check_enums(value: Any, shape, path: str = "") -> list[str]:
    """What botocore's ParamValidator skips: enum values, string lengths and patterns,
    numeric ranges."""
    problems = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                problems += check_enums(value[key], member, f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            problems += check_enums(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for k, v in value.items():
            problems += check_enums(v, shape.value, f"{path}.{k}")
    elif shape.type_name == "string" and isinstance(value, str):
        if getattr(shape, "enum", None) and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.enum}")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
            problems.append(f"{path}: length {len(value)} outside [{lo}, {hi}]")
        pattern = _pattern(shape.metadata.get("pattern"))
        if pattern and not pattern.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match {pattern.pattern}")
    elif shape.type_name in ("integer", "long", "double", "float"):
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            problems.append(f"{path}: {value} outside [{lo}, {hi}]")
    return problems


def api_problems(service: str, operation: str, params: dict) -> list[str]:
    """Why ``params`` is not a valid request of the operation (empty: it is)."""
    from botocore.validate import ParamValidator

    shape = input_shape(service, operation)
    report = ParamValidator().validate(params, shape)
    return ([report.generate_report()] if report.has_errors() else []) + \
        check_enums(params, shape)


def validate(service: str, operation: str, params: dict) -> None:
    """Assert that ``params`` is a valid request of the AWS API operation."""
    problems = api_problems(service, operation, params)
    assert not problems, problems


# ------------------------------------------------------------------------------- config --
def _to_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, str], list[str]]:
    """The config map the CLI would pass: project defaults from Pulumi.yaml, then the stack
    file, then ``overrides`` (keys without a namespace are the project's; None removes)."""
    project_doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    values: dict[str, Any] = {}
    for key, spec in (project_doc.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(spec, dict) and "type" in spec:
            if "default" in spec:
                values[full] = spec["default"]
        elif isinstance(spec, dict) and "value" in spec:
            values[full] = spec["value"]
        else:
            values[full] = spec
    stack_doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    secret_keys = []
    for key, value in (stack_doc.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            value = f"mock-secret-for-{key}"
            secret_keys.append(key)
        values[key] = value
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            values.pop(full, None)
        else:
            values[full] = value
    return {k: _to_config_string(v) for k, v in values.items()}, secret_keys


# -------------------------------------------------------------------------------- mocks --
def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


ELB = "arn:aws:elasticloadbalancing:{region}:{account}"
# What AWS computes for a resource, by type: the ARN format first, then the other outputs the
# program reads. Templates over {name} (the physical name: the "name" input, else Pulumi's
# auto-name), {region}, {account}, {id} (a hash of the logical name; {id:.8} keeps 8 hex
# digits), {name_id} (the same of the physical name) and {inputs[key]}; non-strings are
# copied. Any other AWS type gets arn:aws:<service>:<region>:<account>:<kind>/<name> unless
# its inputs carry an "arn".
MOCK_OUTPUTS: dict[str, dict[str, Any]] = {
    "aws:acm/certificate:Certificate": {
        "arn": "arn:aws:acm:{region}:{account}:certificate/{id:.8}-0000-4000-8000-000000000000"},
    "aws:cloudwatch/logGroup:LogGroup": {"arn": "arn:aws:logs:{region}:{account}:log-group:{name}"},
    "aws:cloudwatch/metricAlarm:MetricAlarm": {
        "arn": "arn:aws:cloudwatch:{region}:{account}:alarm:{name}"},
    "aws:codebuild/project:Project": {"arn": "arn:aws:codebuild:{region}:{account}:project/{name}"},
    "aws:codepipeline/pipeline:Pipeline": {"arn": "arn:aws:codepipeline:{region}:{account}:{name}"},
    "aws:codestarconnections/connection:Connection": {
        "arn": "arn:aws:codestar-connections:{region}:{account}:connection/"
               "{id:.8}-0000-4000-8000-000000000000", "connectionStatus": "PENDING"},
    "aws:ec2/eip:Eip": {"allocationId": "eipalloc-{id:.8}", "publicIp": "192.0.2.10"},
    "aws:ec2/vpcEndpoint:VpcEndpoint": {"prefixListId": "pl-{id:.8}"},
    "aws:cloudwatch/eventRule:EventRule": {
        "arn": "arn:aws:events:{region}:{account}:rule/{name}"},
    "aws:ecr/repository:Repository": {
        "arn": "arn:aws:ecr:{region}:{account}:repository/{name}", "name": "{name}",
        "registryId": "{account}",
        "repositoryUrl": "{account}.dkr.ecr.{region}.amazonaws.com/{name}"},
    "aws:ecs/cluster:Cluster": {"arn": "arn:aws:ecs:{region}:{account}:cluster/{name}"},
    "aws:ecs/taskDefinition:TaskDefinition": {
        "arn": "arn:aws:ecs:{region}:{account}:task-definition/{inputs[family]}:1",
        "arnWithoutRevision": "arn:aws:ecs:{region}:{account}:task-definition/{inputs[family]}",
        "revision": 1},
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": {
        "arn": "arn:aws:iam::{account}:oidc-provider/{url_host}"},
    "aws:iam/policy:Policy": {"arn": "arn:aws:iam::{account}:policy{path}{name}",
                              "name": "{name}"},
    "aws:iam/role:Role": {"arn": "arn:aws:iam::{account}:role{path}{name}", "name": "{name}"},
    "aws:kms/key:Key": {"arn": "arn:aws:kms:{region}:{account}:key/mrk-{id:.32}",
                        "keyId": "mrk-{id:.32}"},
    "aws:lambda/alias:Alias": {
        "arn": "arn:aws:lambda:{region}:{account}:function:{inputs[functionName]}:{name}"},
    "aws:lambda/function:Function": {
        "arn": "arn:aws:lambda:{region}:{account}:function:{name}", "version": "7",
        "qualifiedArn": "arn:aws:lambda:{region}:{account}:function:{name}:7"},
    "aws:lambda/functionUrl:FunctionUrl": {
        "functionUrl": "https://{id:.32}.lambda-url.{region}.on.aws/", "urlId": "{id:.32}"},
    "aws:lb/loadBalancer:LoadBalancer": {
        "arn": ELB + ":loadbalancer/app/{name}/{name_id:.16}",
        "arnSuffix": "app/{name}/{name_id:.16}", "zoneId": "Z32O12XQLNTSW2",
        "dnsName": "{name}-1234567890.{region}.elb.amazonaws.com"},
    "aws:lb/targetGroup:TargetGroup": {
        "arn": ELB + ":targetgroup/{name}/{name_id:.16}",
        "arnSuffix": "targetgroup/{name}/{name_id:.16}", "name": "{name}"},
    "aws:route53/record:Record": {"fqdn": "{name}"},
    "aws:sagemaker/endpoint:Endpoint": {"arn": "arn:aws:sagemaker:{region}:{account}:endpoint/{name}"},
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": {
        "arn": "arn:aws:sagemaker:{region}:{account}:endpoint-config/{name}"},
    "aws:sagemaker/model:Model": {"arn": "arn:aws:sagemaker:{region}:{account}:model/{name}"},
    "aws:s3/bucket:Bucket": {"arn": "arn:aws:s3:::{name}", "bucket": "{name}",
                             "bucketRegionalDomainName": "{name}.s3.{region}.amazonaws.com"},
    "aws:secretsmanager/secret:Secret": {
        "arn": "arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf", "name": "{name}"},
    "aws:sns/topic:Topic": {"arn": "arn:aws:sns:{region}:{account}:{name}", "name": "{name}"},
}


# The input that holds a resource's physical name, where it is not "name".
NAME_INPUTS = {"aws:s3/bucket:Bucket": "bucket"}


def _mock_id(type_: str, logical: str, physical: str, fields: Mapping[str, Any]) -> str:
    """The ID AWS would return, where the program or the tests read it."""
    if type_ == "aws:s3/bucket:Bucket":
        return physical
    if type_ == "aws:ecs/service:Service":
        return "arn:aws:ecs:{region}:{account}:service/{name}/{name}".format(**fields)
    if type_.startswith("aws:ec2/"):                       # vpc-..., subn-..., rout-...
        return f"{type_.rsplit(':', 1)[1][:4].lower()}-{_hash(logical)[:12]}"
    return f"{logical}-id"


def _special_outputs(type_: str, logical: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs shaped in ways a template cannot express."""
    if type_ == "docker:index/image:Image":
        repo = str(inputs.get("imageName", "")).rsplit(":", 1)[0]
        return {"repoDigest": f"{repo}@sha256:{_hash(logical)}"}
    if type_ == "aws:acm/certificate:Certificate":
        domain = inputs.get("domainName")
        return {"domainValidationOptions": [{
            "domainName": domain, "resourceRecordName": f"_mock.{domain}.",
            "resourceRecordType": "CNAME", "resourceRecordValue": "_mock.acm-validations.aws."}]}
    return {}


class AwsMocks(pulumi_mocks.Mocks):
    """Deterministic outputs shaped like AWS's (MOCK_OUTPUTS), and strict invokes."""

    def __init__(self, region: str, account: str, ecr_images: Mapping[str, str] | None = None):
        self.region = region
        self.account = account
        self.ecr_images = dict(ecr_images or {})   # tag -> digest already in the repository

    def call(self, args: pulumi_mocks.MockCallArgs):
        region, account = self.region, self.account
        results = {
            "aws:index/getCallerIdentity:getCallerIdentity": lambda: {
                "accountId": account, "arn": f"arn:aws:iam::{account}:role/deployer",
                "userId": "AROAMOCK", "id": account},
            "aws:index/getPartition:getPartition": lambda: {
                "partition": "aws", "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws", "id": "aws"},
            "aws:index/getAvailabilityZones:getAvailabilityZones": lambda: {
                "names": [f"{region}{z}" for z in "abc"],
                "zoneIds": [f"euw1-az{i}" for i in (1, 2, 3)], "id": region},
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": lambda: {
                "userName": "AWS", "password": "mock-ecr-password",
                "authorizationToken": "QVdTOm1vY2s=", "expiresAt": "2030-01-01T00:00:00Z",
                "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com",
                "id": region},
            "aws:ecr/getImages:getImages": lambda: {
                "imageIds": [{"imageTag": t, "imageDigest": d} for t, d in self.ecr_images.items()],
                "repositoryName": args.args.get("repositoryName"), "id": "images"},
            "aws:secretsmanager/getRandomPassword:getRandomPassword": lambda: {
                "randomPassword": "MockApiKey" + "0" * 38, "id": "mock"},
        }
        if args.token not in results:
            raise AssertionError(f"unmocked invoke {args.token}: add it to AwsMocks.call")
        return results[args.token](), []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        t, inputs = args.typ, dict(args.inputs)
        if t.startswith("pulumi:providers:"):
            return f"{args.name}-id", inputs
        given = inputs.get(NAME_INPUTS.get(t, "name"))
        physical = given if isinstance(given, str) else f"{args.name}-{_hash(args.name)[:7]}"
        fields = {"name": physical, "region": self.region, "account": self.account,
                  "id": _hash(args.name), "name_id": _hash(physical), "inputs": inputs,
                  "url_host": str(inputs.get("url", "")).removeprefix("https://"),
                  "path": inputs.get("path") or "/"}
        service, _, kind = t.partition(":")[2].partition("/")
        outputs = {"arn": f"arn:aws:{service}:{self.region}:{self.account}:"
                          f"{kind.split(':')[0]}/{physical}", **inputs}
        outputs.update({k: v.format(**fields) if isinstance(v, str) else v
                        for k, v in MOCK_OUTPUTS.get(t, {}).items()})
        outputs.update(_special_outputs(t, args.name, inputs))
        return _mock_id(t, args.name, physical, fields), outputs


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also records options, inputs, invokes and registered outputs."""

    def __init__(self, mocks: AwsMocks, graph: Graph):
        super().__init__(mocks)
        self.graph = graph
        self.lock = threading.Lock()

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = _normalise(rpc.deserialize_properties(request.object, keep_unknowns=True))
        registration = self.resources[response.urn]
        state = {**registration.state, "id": registration.id}
        with self.lock:
            self.graph.resources.append(Resource(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent,
                custom=request.custom, provider=request.provider, protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                delete_before_replace=request.deleteBeforeReplace,
                ignore_changes=list(request.ignoreChanges),
                depends_on=list(request.dependencies),
                explicit_depends_on=_explicit_dependencies(request),
                raw_inputs=raw, inputs=unwrap(raw),
                outputs=unwrap(_normalise(state))))
        return response

    def RegisterResourceOutputs(self, request):
        outputs = unwrap(_normalise(rpc.deserialize_properties(request.outputs,
                                                                keep_unknowns=True)))
        with self.lock:
            self.graph.component_outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)

    def Invoke(self, request):
        with self.lock:
            self.graph.invokes.append(Invoke(
                request.tok, unwrap(_normalise(rpc.deserialize_properties(request.args))),
                request.provider))
        return super().Invoke(request)


def _explicit_dependencies(request) -> list[str]:
    implied = {urn for deps in request.propertyDependencies.values() for urn in deps.urns}
    return [urn for urn in request.dependencies if urn not in implied]


def _normalise(value: Any) -> Any:
    """Integral floats back to ints, secrets to Secret, nested containers recursively."""
    if rpc.is_rpc_secret(value):
        return Secret(_normalise(value["value"]))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


# --------------------------------------------------------------------------------- runs --
def run(stack: str, overrides: Mapping[str, Any] | None = None, *,
        preview: bool = False, ecr_images: Mapping[str, str] | None = None) -> Graph:
    """Run ``__main__.py`` for ``stack`` under mocks. A failure is kept in ``graph.error``
    (with whatever was registered before it). ``ecr_images`` (tag -> digest) is what the
    ECR repository already holds (default: nothing, a first deploy)."""
    values, secret_keys = stack_config(stack, overrides)
    graph = Graph(stack=stack, config=values)
    region = values.get("aws:region", "eu-west-1")
    account = values.get(f"{PROJECT}:awsAccountId") or MOCK_ACCOUNT

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    logger = logging.getLogger(f"ml-app-harness-{stack}")
    logger.handlers = [_ListHandler(graph.warnings)]
    logger.propagate = False
    try:
        pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=preview)
        pulumi.runtime.set_all_config(values, secret_keys)
        monitor = RecordingMonitor(AwsMocks(region, account, ecr_images), graph)
        pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview,
                                 logger=logger, monitor=monitor)
        try:
            _sync_await(run_pulumi_func(lambda: runpy.run_path(str(MAIN), run_name="__main__")))
            root = pulumi.runtime.settings.get_root_resource()
            for key, value in root.outputs.items():
                output = pulumi.Output.from_input(value)
                graph.exports[key] = unwrap(_normalise(_sync_await(output.future())))
                if _sync_await(output.is_secret()):
                    graph.secret_exports.add(key)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller to assert on
            graph.error = exc
    finally:
        pulumi.runtime.set_all_config({}, [])
        loop.close()
        asyncio.set_event_loop(None)
    return graph


def run_program(stack: str, overrides: Mapping[str, Any] | None = None, *,
                preview: bool = False, ecr_images: Mapping[str, str] | None = None) -> Graph:
    """Like ``run`` but raises the program's error."""
    graph = run(stack, overrides, preview=preview, ecr_images=ecr_images)
    if graph.error is not None:
        raise graph.error
    return graph


def all_graphs(stacks: Iterable[str] = STACKS) -> dict[str, Graph]:
    return {stack: run_program(stack) for stack in stacks}


def target_variant(variant_id: str) -> tuple[str, dict[str, Any]]:
    """``"dev-lambda"`` -> ("dev", the overrides that run dev on Lambda)."""
    stack, target = variant_id.split("-", 1)
    return stack, TARGET_VARIANTS[target][stack]


def target_of(graph: Graph) -> str:
    """Where the graph's image runs (its stack's ``target``)."""
    return graph.config[f"{PROJECT}:target"]
