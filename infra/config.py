"""The stack's configuration as one frozen, typed object, validated before any resource exists.

``Pulumi.yaml`` is the single declaration of every key (type, default, description): this
module reads those declarations, so a key cannot exist in one place and not the other, and a
key set in ``Pulumi.<stack>.yaml`` that is not declared is reported as a typo. ``parse`` is a
pure function (the tests call it with plain dictionaries); ``load`` feeds it from the running
Pulumi program. Every problem is reported at once, each naming the key, the bad value, the
rule and the stack file to edit: a deploy that fails on its first typo, then its second, wastes
a CI round trip each time.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import pulumi
import yaml

from infra import releases
from infra.naming import StackNames
from infra.releases import ModelVersion

PROJECT = "ml-app"
ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILE = ROOT / "Pulumi.yaml"

# Fargate's valid task sizes: cpu units -> allowed memory (MiB).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# The values CloudWatch Logs accepts for a retention policy (0, "never expire", is refused on
# purpose: logs that are never deleted are a cost and a data-protection liability).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
NAT_STRATEGIES = ("one-per-az", "single", "none")
MAX_TASKS = 100
# Where the image runs (design.md 10): one component per target (infra/service.py,
# infra/sagemaker.py, infra/function.py).
TARGETS = ("ecs", "sagemaker", "lambda")
# Serverless SageMaker endpoints: memory in 1 GB steps (0: the endpoint runs on instances).
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
LAMBDA_URL_AUTH = ("AWS_IAM", "NONE")
# Physical names SageMaker and Lambda accept: the endpoint is named <project>-<stack>, its
# models and configurations <project>-<stack>-model-<8 hex> and -config-<8 hex> (content
# hashes, infra/sagemaker.py), the function <project>-<stack>-function. SageMaker writes
# ARNs in lower case and IAM compares ARNs case-sensitively: a lower-case stack name keeps
# the grants matching.
SAGEMAKER_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
SAGEMAKER_PREFIX_MAX = 63 - len("-config-12345678")
LAMBDA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; ``problems`` holds one line per problem."""

    def __init__(self, stack: str, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"invalid configuration for stack '{stack}' ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}; edit Pulumi.{stack}.yaml, keys are declared "
            "in Pulumi.yaml and documented in docs/configuration.md):\n  - "
            + "\n  - ".join(problems))


@dataclass(frozen=True)
class Declaration:
    """One key of ``Pulumi.yaml``'s ``config:`` block."""

    key: str
    type: str                # string | integer | boolean | array
    default: Any
    description: str
    secret: bool = False

    @property
    def field(self) -> str:
        """The StackConfig field this key fills (``costCentre`` -> ``cost_centre``)."""
        return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", self.key).lower()


@lru_cache(maxsize=None)
def declarations(project_file: Path = PROJECT_FILE) -> dict[str, Declaration]:
    """The project's own config keys as Pulumi.yaml declares them (other namespaces skipped)."""
    doc = yaml.safe_load(project_file.read_text())
    found: dict[str, Declaration] = {}
    for key, spec in (doc.get("config") or {}).items():
        if ":" in key and not key.startswith(f"{PROJECT}:"):
            continue  # provider or engine settings such as aws:region
        name = key.split(":", 1)[-1]
        if not isinstance(spec, dict) or "type" not in spec:
            raise ValueError(f"Pulumi.yaml: config key {key!r} needs a structured declaration "
                             "with a type, a default and a description")
        if spec["type"] not in CONVERTERS:
            raise ValueError(f"Pulumi.yaml: unsupported type {spec['type']!r} for {key}")
        found[name] = Declaration(name, spec["type"], spec.get("default"),
                                  spec.get("description", ""), bool(spec.get("secret", False)))
    return found


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs, typed and validated. Field names mirror the keys."""

    # Identity (from the engine, not from config keys).
    project: str
    stack: str
    region: str
    # Ownership, tags and guard rails.
    owner: str
    cost_centre: str
    aws_account_id: str | None
    production: bool
    protect_data: bool
    # Network.
    vpc_cidr: str
    availability_zones: int
    nat_gateways: str
    vpc_endpoints: bool
    flow_logs: bool
    # Load balancer.
    allowed_cidrs: tuple[str, ...]
    certificate_arn: str | None
    domain_name: str | None
    hosted_zone_id: str | None
    waf_enabled: bool
    waf_rate_limit: int
    # Service and scaling.
    cpu: int
    memory: int
    desired_count: int
    min_count: int
    max_count: int
    fargate_base: int
    fargate_weight: int
    fargate_spot_weight: int
    scale_requests_per_target: int
    api_key_enabled: bool
    # Where the image runs, and each target's settings (ignored by the other targets).
    target: str
    sagemaker_instance_type: str
    sagemaker_instance_count: int
    sagemaker_max_instance_count: int
    sagemaker_serverless_memory_mb: int
    sagemaker_serverless_max_concurrency: int
    sagemaker_data_capture_percent: int
    lambda_memory_mb: int
    lambda_timeout_seconds: int
    lambda_ephemeral_storage_mb: int
    lambda_reserved_concurrency: int
    lambda_provisioned_concurrency: int
    lambda_url_auth: str
    # The model versions to deploy, the default model first: ml-app:models's pinned entries,
    # each checked against its committed release (infra/releases.py).
    models: tuple[ModelVersion, ...]
    # Monitoring.
    log_retention_days: int
    alarm_email: str | None
    alarm_error_rate_percent: int
    alarm_latency_p99_ms: int
    audit_logs: bool
    audit_log_bucket: str | None
    # Delivery pipeline (infra/pipeline.py).
    github_repository: str
    pipeline_branch: str
    require_approval: bool
    approvers: tuple[str, ...]
    promoted_from: str | None
    promotes_to: str | None
    codestar_connection_arn: str | None
    github_oidc_provider_arn: str | None
    pulumi_backend: str
    pulumi_access_token_secret: str | None
    pulumi_state_bucket: str | None
    pulumi_secrets_key_arn: str | None
    # Derived while validating (not config keys): the accounts of the stacks this one is
    # promoted from and to (their stack files).
    upstream_account_id: str | None = None
    downstream_account_id: str | None = None

    DERIVED = ("project", "stack", "region", "upstream_account_id", "downstream_account_id")

    @property
    def names(self) -> StackNames:
        """The stack's names, paths and tags, for every component (infra/naming.py)."""
        return StackNames(self.project, self.stack, self.owner, self.cost_centre)

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn or (self.domain_name and self.hosted_zone_id))


class _Problems:
    """Collects problems as ``ml-app:key = value: rule; edit Pulumi.<stack>.yaml`` lines."""

    def __init__(self, stack: str, secret_keys: frozenset[str]):
        self.stack = stack
        self.secret_keys = secret_keys
        self.lines: list[str] = []

    def show(self, key: str, value: Any) -> str:
        if key in self.secret_keys:
            return "[secret]"
        return json.dumps(list(value)) if isinstance(value, tuple) else repr(value)

    def add(self, key: str, value: Any, rule: str) -> None:
        name = key if ":" in key else f"{PROJECT}:{key}"
        self.lines.append(f"{name} = {self.show(key, value)}: {rule}; "
                          f"edit Pulumi.{self.stack}.yaml")

    def add_many(self, values: Mapping[str, Any], rule: str) -> None:
        shown = ", ".join(f"{PROJECT}:{k} = {self.show(k, v)}" for k, v in values.items())
        self.lines.append(f"{shown}: {rule}; edit Pulumi.{self.stack}.yaml")


# ------------------------------------------------------------------- types, then rules --
def _integer(raw: Any) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    return {"true": True, "false": False}.get(str(raw).strip().lower())


def _strings(raw: Any) -> tuple[str, ...] | None:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else None


# Declared type -> (converter of a raw value, a string from the engine or a typed YAML
# default, returning None when it does not fit; the rule that then fails).
CONVERTERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "string": (str, ""),
    "integer": (_integer, "must be a whole number"),
    "boolean": (_boolean, "must be true or false"),
    "array": (_strings, "must be a list of strings"),
}

# Whole numbers: key -> (lowest, highest, what the number counts or why the range).
RANGES: dict[str, tuple[int, int, str]] = {
    "availabilityZones": (2, 3, " (an ALB needs two zones)"),
    "wafRateLimit": (10, 2_000_000_000, " requests per 5 minutes per IP (WAF's range)"),
    "minCount": (1, MAX_TASKS, ""),
    "desiredCount": (1, MAX_TASKS, ""),
    "maxCount": (1, MAX_TASKS, ""),
    "fargateBase": (0, 100_000, " (ECS's range)"),
    "fargateWeight": (0, 1000, " (ECS's range)"),
    "fargateSpotWeight": (0, 1000, " (ECS's range)"),
    "scaleRequestsPerTarget": (1, 1_000_000, " requests per target per minute"),
    "alarmErrorRatePercent": (1, 100, ""),
    "alarmLatencyP99Ms": (10, 60_000, " milliseconds (the ALB idle timeout is 60 s)"),
    "sagemakerInstanceCount": (1, MAX_TASKS, " instances"),
    "sagemakerMaxInstanceCount": (1, MAX_TASKS, " instances"),
    "sagemakerServerlessMaxConcurrency": (1, 200, " concurrent invocations (SageMaker's "
                                          "range for one serverless endpoint)"),
    "sagemakerDataCapturePercent": (0, 100, " percent of requests (0: no data capture)"),
    "lambdaMemoryMb": (128, 10_240, " MB (Lambda's range)"),
    "lambdaTimeoutSeconds": (1, 900, " seconds (Lambda's range)"),
    "lambdaEphemeralStorageMb": (512, 10_240, " MB of /tmp (Lambda's range)"),
    "lambdaReservedConcurrency": (1, 10_000, " concurrent executions (the account's quota, "
                                  "1,000 by default, must keep 100 unreserved)"),
    "lambdaProvisionedConcurrency": (0, 10_000, " concurrent executions (0: none)"),
}
# A value from a fixed list: key -> (the values, the rule).
CHOICES: dict[str, tuple[tuple[Any, ...], str]] = {
    "natGateways": (NAT_STRATEGIES, f"must be one of {', '.join(NAT_STRATEGIES)}"),
    "logRetentionDays": (LOG_RETENTION_DAYS, "must be a retention CloudWatch Logs accepts: "
                         + ", ".join(map(str, LOG_RETENTION_DAYS))),
    "target": (TARGETS, f"must be one of {', '.join(TARGETS)}: where the image runs "
               "(docs/targets.md)"),
    "sagemakerServerlessMemoryMb": (
        (0, *SERVERLESS_MEMORY_MB), "must be 0 (the endpoint runs on instances) or a "
        "serverless memory size from 1024 to 6144 MB in steps of 1024: "
        + ", ".join(map(str, SERVERLESS_MEMORY_MB))),
    "lambdaUrlAuth": (LAMBDA_URL_AUTH, "must be AWS_IAM (callers sign with SigV4) or NONE "
                      "(a public URL; never in production)"),
}


@dataclass(frozen=True)
class Text:
    """The rule of a string key: its shape and, for an ARN, whose region and account."""

    rule: str                                   # what a value that does not match is told
    pattern: re.Pattern[str] | None = None      # the shape (full match from ^ to $)
    check: Callable[[str], str | None] | None = None  # or a function: why not, or None
    required: str | None = None                 # the problem when missing or blank
    region: str | None = None                   # ARN: must be in the stack's region, because
    account: bool = False                       # ARN: must be in awsAccountId (when set)
    when: tuple[str, str] | None = None         # only while another key has this value
    # "" or blanks mean unset (Pulumi's require() would accept ""); False: kept as given
    strip: bool = True


@lru_cache(maxsize=1)
def sagemaker_instance_types() -> frozenset[str]:
    """The instance types a SageMaker endpoint accepts, from the API model botocore ships
    (the same list CreateEndpointConfig validates against; kept current by botocore's pin)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProductionVariantInstanceType").enum)


def sagemaker_instance_problem(instance_type: str) -> str | None:
    """Why ``instance_type`` cannot host this image on SageMaker, or None."""
    if instance_type not in sagemaker_instance_types():
        near = difflib.get_close_matches(instance_type, sorted(sagemaker_instance_types()), n=1)
        return ("is not a SageMaker endpoint instance type (ml.<family>.<size>, e.g. "
                "ml.c6i.large)" + (f"; did you mean {near[0]}?" if near else ""))
    family = instance_type.split(".")[1]
    if re.fullmatch(r"[a-z]+\d+g[a-z]*", family):
        return ("is a Graviton (arm64) type, and the image is built for linux/amd64 (it would "
                "fail with exec format error): choose an x86 type such as ml.c6i.large")
    return None


def branch_problem(branch: str) -> str | None:
    """Why ``branch`` is not a plain git branch name the pipeline can watch, or None.

    The rules of ``git check-ref-format --branch``, plus no wildcards: CodePipeline's
    trigger would read ``*`` or ``?`` as a glob and deploy other branches too."""
    if not branch:
        return "is required (the branch whose pushes start this stack's pipeline)"
    bad = [c for c in " ~^:\\*?[" if c in branch]
    if bad or any(ord(c) < 32 or ord(c) == 127 for c in branch):
        return ("must be a plain git branch name without spaces, wildcards or any of "
                "~ ^ : \\ * ? [" + (f" (found {' '.join(repr(c) for c in bad)})" if bad else ""))
    if branch.startswith(("-", "/")) or branch.endswith(("/", ".", ".lock")) \
            or ".." in branch or "//" in branch or "@{" in branch or branch == "@" \
            or any(part.startswith(".") for part in branch.split("/")):
        return ("is not a valid git branch name (git check-ref-format: no leading - or /, "
                "no trailing / . or .lock, no '..', '//' or '@{', no part starting with .)")
    if len(branch) > 255:
        return "must be at most 255 characters"
    return None


_ARN = r"^arn:aws[a-z-]*:"
_BUCKET_NAME = ("must be an S3 bucket name (3 to 63 lower-case letters, digits, . and -)",
                re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))
TEXTS: dict[str, Text] = {
    "owner": Text(
        "must be 1 to 256 characters of letters, digits, spaces and _ . : / = + - @ (it "
        "becomes a tag on every resource)", re.compile(r"^[\w .:/=+\-@]{1,256}$"),
        required="is required: it becomes a tag on every resource (who owns it, who pays "
                 "for it)", strip=False),
    "awsAccountId": Text("must be a 12-digit AWS account ID", re.compile(r"^\d{12}$")),
    "certificateArn": Text(
        "must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)",
        re.compile(_ARN + r"acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}$"),
        region="(an ALB only uses certificates from its own region)"),
    "domainName": Text("must be a lower-case DNS name such as api.example.com", re.compile(
        r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")),
    "hostedZoneId": Text("must be a Route 53 hosted zone ID (Z...)",
                         re.compile(r"^Z[A-Z0-9]{1,31}$")),
    "alarmEmail": Text("must be an e-mail address", re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")),
    "githubRepository": Text(
        "must be <owner>/<repo> as on GitHub (owner: letters, digits, -; repo: letters, "
        "digits, . _ -), e.g. acme/ml-app",
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/(?!\.\.?$)[A-Za-z0-9._-]{1,100}$"),
        required="is required: the GitHub repository the pipeline builds, as <owner>/<repo> "
                 "(its pull requests alone may assume the preview role)"),
    "pipelineBranch": Text("", check=branch_problem, required=branch_problem("")),
    "codestarConnectionArn": Text(
        "must be a connection ARN "
        "(arn:aws:codestar-connections:<region>:<account>:connection/<id>)",
        re.compile(_ARN + r"(codestar-connections|codeconnections):(?P<region>[a-z0-9-]+):"
                   r"(?P<account>\d{12}):connection/[0-9a-f-]{36}$"),
        region="(CodePipeline uses connections of its own region)", account=True),
    "githubOidcProviderArn": Text(
        "must be the ARN of the IAM OIDC provider for token.actions.githubusercontent.com "
        "(arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com)",
        re.compile(_ARN + r"iam::(?P<account>\d{12}):oidc-provider/"
                   r"token\.actions\.githubusercontent\.com$"), account=True),
    "pulumiBackend": Text("must be cloud or s3", re.compile(r"^(cloud|s3)$"),
                          required="must be cloud or s3"),
    "sagemakerInstanceType": Text("", check=sagemaker_instance_problem,
                                  required="is required: the SageMaker endpoint's instance "
                                           "type, e.g. ml.c6i.large"),
    "pulumiAccessTokenSecret": Text(
        "must be a Secrets Manager secret name (letters, digits, / _ + = . @ -) or ARN",
        re.compile(_ARN + r"secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"
                   r"|^(?!arn:)[A-Za-z0-9/_+=.@-]{1,512}$"),
        required="is required when pulumiBackend is cloud: the Secrets Manager secret "
                 "holding the Pulumi access token", when=("pulumiBackend", "cloud")),
    "pulumiStateBucket": Text(
        *_BUCKET_NAME,
        required="is required when pulumiBackend is s3", when=("pulumiBackend", "s3")),
    "pulumiSecretsKeyArn": Text(
        "must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)",
        re.compile(_ARN + r"kms:[a-z0-9-]+:\d{12}:key/(mrk-)?[0-9a-f-]{32,36}$"),
        required="is required when pulumiBackend is s3 (the KMS key of the stack's awskms:// "
                 "secrets provider)", when=("pulumiBackend", "s3")),
}
TEXTS["costCentre"] = TEXTS["owner"]
# Keys a deployed stack may still set, and what replaced them (config errors say what to
# write instead; docs/configuration.md, "Model versions").
RETIRED_MODEL_KEYS = ("modelName", "modelVersion")
RETIRED_MODEL_DEFAULTS = {"modelName": "digits", "modelVersion": "1"}   # their old defaults
TEXTS["promotedFrom"] = TEXTS["promotesTo"] = Text(
    "must be the name of another stack of this project (a Pulumi.<stack>.yaml beside this "
    "one), e.g. staging", re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"))
TEXTS["auditLogBucket"] = Text(*_BUCKET_NAME)
# An approver: a role or a group of this account (users approve through their groups).
APPROVER = re.compile(_ARN + r"iam::(?P<account>\d{12}):(?P<kind>role|group)/"
                      r"(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,128}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def text_problem(value: str, text: Text, region: str | None, account: str | None) -> str | None:
    """Why ``value`` breaks ``text`` (its shape; an ARN's region and account), or None."""
    if text.check:
        return text.check(value)
    found = text.pattern.match(value) if text.pattern else None
    if not found:
        return text.rule
    if text.region and region and found.group("region") != region:
        return f"must be in the stack's region {region} {text.region}"
    if text.account and account and found.group("account") != account:
        return f"must belong to awsAccountId {account}"
    return None


def parse(raw: Mapping[str, Any], *, stack: str, region: str | None,
          project: str = PROJECT, unknown_keys: tuple[str, ...] = (),
          project_file: Path = PROJECT_FILE,
          stack_file: Callable[[str], Mapping[str, Any] | None] | None = None) -> StackConfig:
    """Validate ``raw`` (key without namespace -> value as the engine passes it) into a
    StackConfig, or raise ConfigError listing every problem. ``stack_file(name)`` reads
    another stack's settings (``Pulumi.<name>.yaml``'s config block, or None when there is
    none): promotion is checked from both ends."""
    decls = declarations(project_file)
    problems = _Problems(stack, frozenset(k for k, d in decls.items() if d.secret))

    for key in unknown_keys:
        if key in RETIRED_MODEL_KEYS:
            continue                         # _retired_model_keys says what replaced them
        hint = difflib.get_close_matches(key, sorted(decls), n=1)
        problems.add(key, raw.get(key), "not a key of this project (declared in Pulumi.yaml)"
                     + (f"; did you mean {project}:{hint[0]}?" if hint else ""))

    # Values by config key; a key whose value does not fit its type is left out, so that
    # the rules below judge only what parsed (and each problem is reported once).
    values: dict[str, Any] = {}
    for key, decl in decls.items():
        given = raw.get(key)
        given = decl.default if given is None else given
        if given is None:
            problems.add(key, None, "is required and has no default")
            continue
        convert, rule = CONVERTERS[decl.type]
        value = convert(given)
        if value is None:
            problems.add(key, given, rule)
        else:
            values[key] = value

    if not region:
        problems.add("aws:region", region, "is required (the AWS region to deploy into)")
    elif not _REGION.match(region):
        problems.add("aws:region", region, "must be an AWS region name such as eu-west-1")

    derived = _check(values, stack, region, problems, stack_file or _stack_file)
    _retired_model_keys(raw, problems)
    if problems.lines:
        raise ConfigError(stack, problems.lines)
    return StackConfig(project=project, stack=stack, region=region or "",
                       **{decls[k].field: v for k, v in values.items()}, **derived)


def _check(v: dict[str, Any], stack: str, region: str | None,
           problems: _Problems,
           stack_file: Callable[[str], Mapping[str, Any] | None]) -> dict[str, Any]:
    """The tables first, then rules across keys (each only when its keys parsed); the
    models' entries become their releases (``ModelVersion``). Returns what validation
    derives (the accounts of the stacks this one is promoted from and to)."""
    for key, text in TEXTS.items():
        if text.strip and isinstance(v.get(key), str):
            v[key] = v[key].strip() or None
    for key, (lo, hi, unit) in RANGES.items():
        if key in v and not lo <= v[key] <= hi:
            span = f"{lo} or {hi}" if hi == lo + 1 else f"from {lo} to {hi}"
            problems.add(key, v[key], f"must be {span}{unit}")
    for key, (allowed, rule) in CHOICES.items():
        if key in v and v[key] not in allowed:
            problems.add(key, v[key], rule)
    for key, text in TEXTS.items():
        if text.when and v.get(text.when[0]) != text.when[1]:
            continue
        value = v.get(key)
        if value is None or not value.strip():
            if text.required:
                problems.add(key, value or "", text.required)
        elif why := text_problem(value, text, region, v.get("awsAccountId")):
            problems.add(key, value, why)
    for rule in (_check_network, _check_load_balancer, _check_capacity, _check_target,
                 _check_production, _check_approvers, _check_audit_logs, _check_models):
        rule(v, stack, problems)
    return _check_promotion(v, stack, region, problems, stack_file)


def _both(v: Mapping[str, Any], *keys: str) -> bool:
    return all(v.get(k) is not None for k in keys)


def _ecs(v: Mapping[str, Any]) -> bool:
    """Whether the ECS-only rules apply (network, load balancer, Fargate capacity)."""
    return v.get("target") == "ecs"


def _check_network(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    if "vpcCidr" in v:
        try:
            net = ipaddress.ip_network(v["vpcCidr"], strict=True)
        except ValueError as exc:
            problems.add("vpcCidr", v["vpcCidr"], f"must be an IPv4 network in CIDR form ({exc})")
        else:
            if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 24:
                problems.add("vpcCidr", v["vpcCidr"], "must be a private (RFC 1918) IPv4 "
                             "network from /16 to /24")
    if _ecs(v) and v.get("natGateways") == "none" and v.get("vpcEndpoints") is False:
        problems.add_many({"natGateways": "none", "vpcEndpoints": False},
                          "without NAT gateways the tasks reach ECR, S3, CloudWatch Logs and "
                          "Secrets Manager only through VPC endpoints: set vpcEndpoints: true")


def _check_load_balancer(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    cidrs = v.get("allowedCidrs")
    if cidrs is not None and not cidrs:
        problems.add("allowedCidrs", cidrs, "must list at least one CIDR")
    for cidr in cidrs or ():
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            problems.add("allowedCidrs", cidrs, f"{cidr!r} is not a network in CIDR form ({exc})")
    domain, zone = v.get("domainName"), v.get("hostedZoneId")
    if zone and not domain:
        problems.add_many({"domainName": "", "hostedZoneId": zone},
                          "hostedZoneId needs the domainName to create in that zone")
    if domain and not zone and not v.get("certificateArn"):
        problems.add_many({"domainName": domain, "hostedZoneId": "", "certificateArn": ""},
                          "a domainName needs hostedZoneId (to create and validate its "
                          "certificate and DNS record) or a certificateArn (DNS managed "
                          "elsewhere)")


def _check_capacity(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    if _both(v, "cpu", "memory"):
        cpu, memory = v["cpu"], v["memory"]
        if cpu not in FARGATE_SIZES:
            problems.add("cpu", cpu, "must be a Fargate cpu size: "
                         + ", ".join(map(str, FARGATE_SIZES)))
        elif memory not in FARGATE_SIZES[cpu]:
            sizes = FARGATE_SIZES[cpu]
            problems.add_many({"cpu": cpu, "memory": memory},
                              f"Fargate accepts memory {sizes[0]} to {sizes[-1]} MiB for cpu "
                              f"{cpu} (one of {', '.join(map(str, sizes))})")
    counts = ("minCount", "desiredCount", "maxCount")
    if _both(v, *counts) and not v["minCount"] <= v["desiredCount"] <= v["maxCount"]:
        problems.add_many({k: v[k] for k in counts},
                          "minCount <= desiredCount <= maxCount must hold")
    if _both(v, "fargateWeight", "fargateSpotWeight") and \
            v["fargateWeight"] + v["fargateSpotWeight"] == 0:
        problems.add_many({"fargateWeight": 0, "fargateSpotWeight": 0},
                          "at least one capacity provider needs a weight above 0")


def _check_target(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """What only one target reads: names its service accepts, counts that go together."""
    names = StackNames(PROJECT, stack, owner="", cost_centre="")
    if v.get("target") == "sagemaker":
        endpoint = names.endpoint
        if not SAGEMAKER_NAME.fullmatch(endpoint) or len(endpoint) > SAGEMAKER_PREFIX_MAX:
            problems.add("target", "sagemaker", f"the SageMaker endpoint is named {endpoint!r} "
                         "after the stack: SageMaker names need lower-case letters, digits and "
                         f"-, at most {SAGEMAKER_PREFIX_MAX} characters here; rename the stack "
                         "or choose another target")
        counts = ("sagemakerInstanceCount", "sagemakerMaxInstanceCount")
        if not v.get("sagemakerServerlessMemoryMb") and _both(v, *counts) \
                and v[counts[0]] > v[counts[1]]:
            problems.add_many({k: v[k] for k in counts}, "sagemakerInstanceCount <= "
                              "sagemakerMaxInstanceCount must hold (autoscaling scales "
                              "between them)")
    if v.get("target") == "lambda" and not LAMBDA_NAME.fullmatch(names.function):
        problems.add("target", "lambda", f"the function is named {names.function} after the "
                     "stack: Lambda names need letters, digits, - and _, at most 64 "
                     "characters; rename the stack or choose another target")
    if v.get("sagemakerServerlessMemoryMb") and v.get("sagemakerDataCapturePercent"):
        problems.add_many({"sagemakerServerlessMemoryMb": v["sagemakerServerlessMemoryMb"],
                           "sagemakerDataCapturePercent": v["sagemakerDataCapturePercent"]},
                          "serverless endpoints cannot capture data: set "
                          "sagemakerDataCapturePercent: 0, or run on instances "
                          "(sagemakerServerlessMemoryMb: 0)")
    lam = ("lambdaProvisionedConcurrency", "lambdaReservedConcurrency")
    if _both(v, *lam) and v[lam[0]] > v[lam[1]]:
        problems.add_many({k: v[k] for k in lam}, "provisioned concurrency is part of the "
                          "reserved concurrency: lambdaProvisionedConcurrency <= "
                          "lambdaReservedConcurrency must hold")


# What "production: true" requires of a boolean key: key -> (its value, what it keeps).
PRODUCTION_REQUIRES = {
    "protectData": (True, "protected data (bucket, key, ALB)"),
    "requireApproval": (True, "a manual approval before deploy"),
    "auditLogs": (True, "the audit logs (ALB, WAF, S3 access logs)"),
}
# ... and on ECS, where there is a load balancer to protect.
PRODUCTION_REQUIRES_ON_ECS = {"wafEnabled": (True, "the WAF web ACL")}


def _check_production(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """What 'production' promises: HTTPS, redundancy across zones, protected data."""
    if stack.startswith("prod") and v.get("production") is False:
        problems.add("production", False, f"stack '{stack}' looks like production: set "
                     "production: true so the production rules apply")
    if not v.get("production"):
        return
    rule = "required when production is true"
    for key, (required, what) in PRODUCTION_REQUIRES.items():
        if key in v and v[key] != required:
            problems.add(key, v[key], f"{what} is {rule}")
    if v.get("lambdaUrlAuth") == "NONE":
        problems.add("lambdaUrlAuth", "NONE", "a public, unauthenticated function URL is "
                     "refused when production is true: set lambdaUrlAuth: AWS_IAM (callers "
                     "sign their requests with SigV4, docs/lambda.md)")
    if v.get("target") == "sagemaker" and not v.get("sagemakerServerlessMemoryMb") \
            and v.get("sagemakerInstanceCount") is not None and v["sagemakerInstanceCount"] < 2:
        problems.add("sagemakerInstanceCount", v["sagemakerInstanceCount"], "at least 2 "
                     f"instances (SageMaker spreads them over zones) are {rule}")
    if _ecs(v):
        _check_production_on_ecs(v, rule, problems)


def _check_production_on_ecs(v: dict[str, Any], rule: str, problems: _Problems) -> None:
    """HTTPS, tasks over zones, NAT per zone, WAF, an on-demand base: the ALB path's rules."""
    if not (v.get("certificateArn") or (v.get("domainName") and v.get("hostedZoneId"))):
        problems.add_many({"certificateArn": v.get("certificateArn") or "",
                           "domainName": v.get("domainName") or ""},
                          f"HTTPS is {rule}: set certificateArn, or domainName and hostedZoneId")
    if v.get("minCount") is not None and v["minCount"] < 2:
        problems.add("minCount", v["minCount"], f"at least 2 tasks (one per zone) are {rule}")
    if v.get("natGateways") == "single":
        problems.add("natGateways", "single", "one NAT gateway per zone (one-per-az, or none "
                     f"with VPC endpoints) is {rule}: a single NAT is a single-zone failure")
    for key, (required, what) in PRODUCTION_REQUIRES_ON_ECS.items():
        if key in v and v[key] != required:
            problems.add(key, v[key], f"{what} is {rule}")
    if _both(v, "fargateBase", "minCount") and v["fargateBase"] < v["minCount"]:
        problems.add_many({"fargateBase": v["fargateBase"], "minCount": v["minCount"]},
                          "fargateBase >= minCount is required when production is true: the "
                          "minimum capacity must not depend on Spot")


def _check_approvers(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """Approvers are IAM roles or groups of this account, named when an approval exists."""
    approvers = v.get("approvers")
    if approvers is None:
        return
    account = v.get("awsAccountId")
    for arn in approvers:
        found = APPROVER.match(arn.strip())
        if not found:
            problems.add("approvers", approvers, f"{arn!r} is not an IAM role or group ARN "
                         "(arn:aws:iam::<account>:role/<name> or ...:group/<name>)")
        elif account and found.group("account") != account:
            problems.add("approvers", approvers, f"{arn!r} must belong to awsAccountId "
                         f"{account}: approvals are given in the pipeline's account")
    if len(set(approvers)) != len(approvers):
        problems.add("approvers", approvers, "lists an approver twice")
    if v.get("requireApproval") and not approvers:
        problems.add_many({"requireApproval": True, "approvers": []},
                          "a manual approval needs approvers: list the IAM roles or groups "
                          "whose members may approve (the Deploy stage refuses anyone else)")
    if v.get("requireApproval") is False and approvers:
        problems.add("approvers", approvers, "approvers need requireApproval: true (without "
                     "an approval stage they would approve nothing)")


def _check_audit_logs(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """The ALB's log bucket name: within the stack's names, and no other bucket's."""
    bucket = v.get("auditLogBucket")
    if not bucket:
        return
    prefix = f"{PROJECT}-{stack}-audit-logs-"
    if not bucket.startswith(prefix):
        problems.add("auditLogBucket", bucket, f"must start with {prefix} (the deploy role "
                     "and the boundary recognise the stack's log bucket by that prefix)")
    if v.get("pulumiStateBucket") == bucket:
        problems.add_many({"auditLogBucket": bucket, "pulumiStateBucket": bucket},
                          "the log bucket cannot be another bucket of the stack: choose "
                          "a name of its own for auditLogBucket")
    if v.get("auditLogs") is False:
        problems.add("auditLogBucket", bucket, "names a log bucket but auditLogs is false")


def _stack_file(stack: str) -> Mapping[str, Any] | None:
    """Another stack's config block (``Pulumi.<stack>.yaml`` beside Pulumi.yaml)."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("config") or {}


def _check_promotion(v: dict[str, Any], stack: str, region: str | None, problems: _Problems,
                     stack_file: Callable[[str], Mapping[str, Any] | None]) -> dict[str, Any]:
    """Promotion is a pair: the upstream says promotesTo, the downstream promotedFrom, both
    in known accounts of one region. Returns the other stacks' accounts."""
    derived: dict[str, Any] = {}
    for key, other_key, derived_key in (("promotedFrom", "promotesTo", "upstream_account_id"),
                                        ("promotesTo", "promotedFrom",
                                         "downstream_account_id")):
        other = v.get(key)
        if not other:
            continue
        if other == stack:
            problems.add(key, other, "must name another stack, not this one")
            continue
        settings = stack_file(other)
        if settings is None:
            problems.add(key, other, f"there is no Pulumi.{other}.yaml: name an existing "
                         f"stack, or leave {key} empty")
            continue
        back = str(settings.get(f"{PROJECT}:{other_key}") or "").strip()
        if back != stack:
            problems.add(key, other, f"Pulumi.{other}.yaml must set {PROJECT}:{other_key}: "
                         f"{stack} (promotion needs both ends; without it this stack's "
                         f"pipeline would wait for a revision nobody publishes)")
        other_account = str(settings.get(f"{PROJECT}:awsAccountId") or "").strip()
        if not v.get("awsAccountId") or not other_account:
            problems.add(key, other, f"needs awsAccountId in Pulumi.{stack}.yaml and in "
                         f"Pulumi.{other}.yaml (the promotion bucket's policy names the "
                         "other account's deploy role)")
        if str(settings.get("aws:region") or region) != region:
            problems.add(key, other, f"Pulumi.{other}.yaml is in another region: promotion "
                         "works within one region")
        derived[derived_key] = other_account or None
    if v.get("promotedFrom") and v.get("promotesTo") == v.get("promotedFrom"):
        problems.add_many({"promotedFrom": v["promotedFrom"], "promotesTo": v["promotesTo"]},
                          "a stack cannot be promoted from and to the same stack")
    return derived



def _committed_entries() -> str:
    entries = []
    for manifest in sorted(releases.MODEL_ROOT.glob(f"*/*/{releases.MANIFEST_NAME}")):
        release, problems = releases.find(manifest.parent.parent.name, manifest.parent.name)
        if release is not None and not problems:
            entries.append(release.entry)
    return ", ".join(entries) or "none"


def _check_models(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """Every entry pins a committed release, each once; the first is the default model."""
    entries = v.get("models")
    if entries is None:
        return
    if not entries:
        problems.add("models", entries, "is required: the model versions this stack deploys, "
                     f"the default model first, one entry each as {releases.ENTRY_FORM} "
                     f"(committed: {_committed_entries()})")
        return
    found: list[ModelVersion] = []
    for entry in entries:
        release, why = releases.pinned(entry)
        for rule in why:
            problems.add("models", entries, rule)
        if release is None:
            continue
        if any((r.name, r.version) == (release.name, release.version) for r in found):
            problems.add("models", entries, f"lists {release.name}/{release.version} more "
                         "than once; list each model version once")
        found.append(release)
    v["models"] = tuple(found)


def _retired_model_keys(raw: Mapping[str, Any], problems: _Problems) -> None:
    """modelName/modelVersion became ml-app:models: say exactly what to write instead."""
    given = {k: raw[k] for k in RETIRED_MODEL_KEYS if raw.get(k) is not None}
    if not given:
        return
    name, version = (str(given.get(k, RETIRED_MODEL_DEFAULTS[k])) for k in RETIRED_MODEL_KEYS)
    release, _ = releases.find(name, version) if releases.ENTRY.match(f"{name}/{version}") \
        else (None, [])
    entry = release.entry if release else f"{name}/{version}@sha256:<sha256 of " \
        f"model/artifacts/{name}/{version}/{releases.MANIFEST_NAME}>"
    problems.add_many(given, f"replaced by {PROJECT}:models (a list: several models, each "
                      f"pinned by its manifest's sha256); write instead "
                      f"`{PROJECT}:models: [\"{entry}\"]` and remove "
                      f"{' and '.join(f'{PROJECT}:{k}' for k in given)} "
                      "(docs/configuration.md, Model versions)")


def _engine_config_keys() -> set[str]:
    """Every config key the engine passed to the program (``project:key``)."""
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.get_config_env())
    keys.update(runtime_config.CONFIG.get())  # set by the engine's RPC, or by test harnesses
    return keys


def load() -> StackConfig:
    """Read the running stack's configuration and validate it (raises ConfigError)."""
    project = pulumi.get_project()
    decls = declarations()
    cfg = pulumi.Config()
    raw: dict[str, Any] = {}
    for key, decl in decls.items():
        # Secrets are read as plain strings to validate them; consumers wrap them again.
        value = (pulumi.runtime.config.get_config(f"{project}:{key}") if decl.secret
                 else cfg.get(key))
        if value is not None:
            raw[key] = value
    for key in RETIRED_MODEL_KEYS:       # read to say what to write instead
        if cfg.get(key) is not None:
            raw[key] = cfg.get(key)
    unknown = tuple(sorted(k.split(":", 1)[1] for k in _engine_config_keys()
                           if k.startswith(f"{project}:") and k.split(":", 1)[1] not in decls))
    return parse(raw, stack=pulumi.get_stack(), region=pulumi.Config("aws").get("region"),
                 project=project, unknown_keys=unknown)
