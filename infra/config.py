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
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import pulumi
import yaml

PROJECT = "ml-app"
ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILE = ROOT / "Pulumi.yaml"
MODEL_ROOT = ROOT / "model" / "artifacts"
MANIFEST_NAME = "manifest.json"

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

_TAG_VALUE = re.compile(r"^[\w .:/=+\-@]{1,256}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MODEL_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    # Model version to deploy.
    model_name: str
    model_version: str
    # Monitoring.
    log_retention_days: int
    alarm_email: str | None
    alarm_error_rate_percent: int
    alarm_latency_p99_ms: int
    # Delivery pipeline (infra/pipeline.py).
    github_repository: str
    pipeline_branch: str
    require_approval: bool
    codestar_connection_arn: str | None
    github_oidc_provider_arn: str | None
    pulumi_backend: str
    pulumi_access_token_secret: str | None
    pulumi_state_bucket: str | None
    pulumi_secrets_key_arn: str | None
    # Derived while validating (not config keys).
    model_manifest_sha256: str = ""
    model_files: tuple[str, ...] = ()

    DERIVED = ("project", "stack", "region", "model_manifest_sha256", "model_files")

    @property
    def prefix(self) -> str:
        """Physical-name prefix shared by every named resource of this stack."""
        return f"{self.project}-{self.stack}"

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn or (self.domain_name and self.hosted_zone_id))

    @property
    def model_dir(self) -> Path:
        return MODEL_ROOT / self.model_name / self.model_version

    @property
    def model_prefix(self) -> str:
        """Key prefix of the deployed version in the model bucket."""
        return f"models/{self.model_name}/{self.model_version}"

    @property
    def log_group_prefix(self) -> str:
        """Every log group of the stack lives under this path (the KMS key policy scopes to it)."""
        return f"/{self.project}/{self.stack}"

    @property
    def tags(self) -> dict[str, str]:
        """Default tags for every taggable resource (applied by the stack's AWS provider)."""
        return {"project": self.project, "stack": self.stack, "owner": self.owner,
                "cost-centre": self.cost_centre, "managed-by": "pulumi"}


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


def _convert(decl: Declaration, raw: Any, problems: _Problems) -> Any:
    """Turn a raw config value (a string from the engine, or a typed YAML default) into its
    declared type; record a problem and return None when it does not fit."""
    kind = decl.type
    if kind == "string":
        return str(raw)
    if kind == "integer":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        text = str(raw).strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        problems.add(decl.key, raw, "must be a whole number")
        return None
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        problems.add(decl.key, raw, "must be true or false")
        return None
    if kind == "array":
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        problems.add(decl.key, raw, "must be a list of strings")
        return None
    raise ValueError(f"Pulumi.yaml: unsupported type {kind!r} for {decl.key}")


def parse(raw: Mapping[str, Any], *, stack: str, region: str | None,
          project: str = PROJECT, unknown_keys: tuple[str, ...] = (),
          project_file: Path = PROJECT_FILE) -> StackConfig:
    """Validate ``raw`` (key without namespace -> value as the engine passes it) into a
    StackConfig, or raise ConfigError listing every problem."""
    decls = declarations(project_file)
    problems = _Problems(stack, frozenset(k for k, d in decls.items() if d.secret))

    for key in unknown_keys:
        hint = difflib.get_close_matches(key, sorted(decls), n=1)
        problems.add(key, raw.get(key), "not a key of this project (declared in Pulumi.yaml)"
                     + (f"; did you mean {project}:{hint[0]}?" if hint else ""))

    values: dict[str, Any] = {}
    for key, decl in decls.items():
        given = raw.get(key)
        if given is None:
            if decl.default is None:
                problems.add(key, None, "is required and has no default")
                continue
            given = decl.default
        values[decl.field] = _convert(decl, given, problems)

    if not region:
        problems.add("aws:region", region, "is required (the AWS region to deploy into)")
    elif not _REGION.match(region):
        problems.add("aws:region", region, "must be an AWS region name such as eu-west-1")

    _check(values, stack, region, problems)
    if problems.lines:
        raise ConfigError(stack, problems.lines)

    known = {f.name for f in fields(StackConfig)}
    return StackConfig(project=project, stack=stack, region=region or "",
                       **{k: v for k, v in values.items() if k in known})


def _check(v: dict[str, Any], stack: str, region: str | None, problems: _Problems) -> None:
    """Field rules first, then rules across fields (only when their fields parsed)."""
    def ok(*names: str) -> bool:
        return all(v.get(n) is not None for n in names)

    # Optional strings: "" means unset (Pulumi's require() would accept "").
    for name in ("aws_account_id", "certificate_arn", "domain_name", "hosted_zone_id",
                 "alarm_email"):
        if isinstance(v.get(name), str):
            v[name] = v[name].strip() or None

    for key, name in (("owner", "owner"), ("costCentre", "cost_centre")):
        value = v.get(name)
        if value is not None and not value.strip():
            problems.add(key, value, "is required: it becomes a tag on every resource "
                         "(who owns it, who pays for it)")
        elif value is not None and not _TAG_VALUE.match(value):
            problems.add(key, value, "must be 1 to 256 characters of letters, digits, spaces "
                         "and _ . : / = + - @ (it becomes a tag on every resource)")

    if v.get("aws_account_id") and not _ACCOUNT_ID.match(v["aws_account_id"]):
        problems.add("awsAccountId", v["aws_account_id"], "must be a 12-digit AWS account ID")

    # Network.
    if ok("vpc_cidr"):
        try:
            net = ipaddress.ip_network(v["vpc_cidr"], strict=True)
        except ValueError as exc:
            problems.add("vpcCidr", v["vpc_cidr"], f"must be an IPv4 network in CIDR form ({exc})")
        else:
            if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 24:
                problems.add("vpcCidr", v["vpc_cidr"], "must be a private (RFC 1918) IPv4 "
                             "network from /16 to /24")
    if ok("availability_zones") and not 2 <= v["availability_zones"] <= 3:
        problems.add("availabilityZones", v["availability_zones"],
                     "must be 2 or 3 (an ALB needs two zones)")
    if ok("nat_gateways") and v["nat_gateways"] not in NAT_STRATEGIES:
        problems.add("natGateways", v["nat_gateways"],
                     f"must be one of {', '.join(NAT_STRATEGIES)}")
    if ok("nat_gateways", "vpc_endpoints") and v["nat_gateways"] == "none" \
            and not v["vpc_endpoints"]:
        problems.add_many({"natGateways": "none", "vpcEndpoints": False},
                          "without NAT gateways the tasks reach ECR, S3, CloudWatch Logs and "
                          "Secrets Manager only through VPC endpoints: set vpcEndpoints: true")

    # Load balancer.
    cidrs = v.get("allowed_cidrs")
    if cidrs is not None:
        if not cidrs:
            problems.add("allowedCidrs", cidrs, "must list at least one CIDR")
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                problems.add("allowedCidrs", cidrs, f"{cidr!r} is not a network in CIDR form ({exc})")
    arn = v.get("certificate_arn")
    if arn:
        m = _CERT_ARN.match(arn)
        if not m:
            problems.add("certificateArn", arn, "must be an ACM certificate ARN "
                         "(arn:aws:acm:<region>:<account>:certificate/<id>)")
        elif region and m.group("region") != region:
            problems.add("certificateArn", arn, f"must be in the stack's region {region} "
                         "(an ALB only uses certificates from its own region)")
    domain = v.get("domain_name")
    if domain and not _DOMAIN.match(domain):
        problems.add("domainName", domain, "must be a lower-case DNS name such as api.example.com")
    zone = v.get("hosted_zone_id")
    if zone and not _ZONE_ID.match(zone):
        problems.add("hostedZoneId", zone, "must be a Route 53 hosted zone ID (Z...)")
    if zone and not domain:
        problems.add_many({"domainName": "", "hostedZoneId": zone},
                          "hostedZoneId needs the domainName to create in that zone")
    if domain and not zone and not arn:
        problems.add_many({"domainName": domain, "hostedZoneId": "", "certificateArn": ""},
                          "a domainName needs hostedZoneId (to create and validate its "
                          "certificate and DNS record) or a certificateArn (DNS managed "
                          "elsewhere)")
    if ok("waf_rate_limit") and not 10 <= v["waf_rate_limit"] <= 2_000_000_000:
        problems.add("wafRateLimit", v["waf_rate_limit"],
                     "must be from 10 to 2000000000 requests per 5 minutes per IP (WAF's range)")

    # Service and scaling.
    if ok("cpu", "memory"):
        if v["cpu"] not in FARGATE_SIZES:
            problems.add("cpu", v["cpu"], "must be a Fargate cpu size: "
                         + ", ".join(map(str, FARGATE_SIZES)))
        elif v["memory"] not in FARGATE_SIZES[v["cpu"]]:
            sizes = FARGATE_SIZES[v["cpu"]]
            problems.add_many({"cpu": v["cpu"], "memory": v["memory"]},
                              f"Fargate accepts memory {sizes[0]} to {sizes[-1]} MiB for cpu "
                              f"{v['cpu']} (one of {', '.join(map(str, sizes))})")
    counts = ("min_count", "desired_count", "max_count")
    for name, key in zip(counts, ("minCount", "desiredCount", "maxCount")):
        if ok(name) and not 1 <= v[name] <= MAX_TASKS:
            problems.add(key, v[name], f"must be from 1 to {MAX_TASKS}")
    if ok(*counts) and not v["min_count"] <= v["desired_count"] <= v["max_count"]:
        problems.add_many({"minCount": v["min_count"], "desiredCount": v["desired_count"],
                           "maxCount": v["max_count"]},
                          "minCount <= desiredCount <= maxCount must hold")
    for name, key, hi in (("fargate_base", "fargateBase", 100_000),
                          ("fargate_weight", "fargateWeight", 1000),
                          ("fargate_spot_weight", "fargateSpotWeight", 1000)):
        if ok(name) and not 0 <= v[name] <= hi:
            problems.add(key, v[name], f"must be from 0 to {hi} (ECS's range)")
    if ok("fargate_weight", "fargate_spot_weight") and \
            v["fargate_weight"] + v["fargate_spot_weight"] == 0:
        problems.add_many({"fargateWeight": 0, "fargateSpotWeight": 0},
                          "at least one capacity provider needs a weight above 0")
    if ok("scale_requests_per_target") and not 1 <= v["scale_requests_per_target"] <= 1_000_000:
        problems.add("scaleRequestsPerTarget", v["scale_requests_per_target"],
                     "must be from 1 to 1000000 requests per target per minute")

    # Model version: it must exist, committed, and match its manifest.
    if ok("model_name", "model_version"):
        _check_model(v, problems)

    # Monitoring.
    if ok("log_retention_days") and v["log_retention_days"] not in LOG_RETENTION_DAYS:
        problems.add("logRetentionDays", v["log_retention_days"],
                     "must be a retention CloudWatch Logs accepts: "
                     + ", ".join(map(str, LOG_RETENTION_DAYS)))
    if v.get("alarm_email") and not _EMAIL.match(v["alarm_email"]):
        problems.add("alarmEmail", v["alarm_email"], "must be an e-mail address")
    if ok("alarm_error_rate_percent") and not 1 <= v["alarm_error_rate_percent"] <= 100:
        problems.add("alarmErrorRatePercent", v["alarm_error_rate_percent"],
                     "must be from 1 to 100")
    if ok("alarm_latency_p99_ms") and not 10 <= v["alarm_latency_p99_ms"] <= 60_000:
        problems.add("alarmLatencyP99Ms", v["alarm_latency_p99_ms"],
                     "must be from 10 to 60000 milliseconds (the ALB idle timeout is 60 s)")

    _check_pipeline(v, region, problems)
    _check_production(v, stack, problems)


# Delivery pipeline keys.
GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_CONNECTION_ARN = re.compile(r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):"
                             r"(?P<region>[a-z0-9-]+):(?P<account>\d{12}):connection/[0-9a-f-]{36}$")
_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):oidc-provider/"
                                r"token\.actions\.githubusercontent\.com$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(mrk-)?[0-9a-f-]{32,36}$")
PULUMI_BACKENDS = ("cloud", "s3")


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


def _check_pipeline(v: dict[str, Any], region: str | None, problems: _Problems) -> None:
    for name in ("github_repository", "pipeline_branch", "codestar_connection_arn",
                 "github_oidc_provider_arn", "pulumi_backend", "pulumi_access_token_secret",
                 "pulumi_state_bucket", "pulumi_secrets_key_arn"):
        if isinstance(v.get(name), str):
            v[name] = v[name].strip() or None
    account = v.get("aws_account_id")

    repo = v.get("github_repository")
    if repo is None:
        problems.add("githubRepository", "", "is required: the GitHub repository the pipeline "
                     "builds, as <owner>/<repo> (its pull requests alone may assume the "
                     "preview role)")
    elif not GITHUB_REPOSITORY.match(repo) or repo.split("/")[1] in (".", ".."):
        problems.add("githubRepository", repo, "must be <owner>/<repo> as on GitHub (owner: "
                     "letters, digits, -; repo: letters, digits, . _ -), e.g. acme/ml-app")
    if "pipeline_branch" in v:
        why = branch_problem(v.get("pipeline_branch") or "")
        if why:
            problems.add("pipelineBranch", v.get("pipeline_branch") or "", why)

    arn = v.get("codestar_connection_arn")
    if arn:
        m = _CONNECTION_ARN.match(arn)
        if not m:
            problems.add("codestarConnectionArn", arn, "must be a connection ARN "
                         "(arn:aws:codestar-connections:<region>:<account>:connection/<id>)")
        elif region and m.group("region") != region:
            problems.add("codestarConnectionArn", arn,
                         f"must be in the stack's region {region} (CodePipeline uses "
                         "connections of its own region)")
        elif account and m.group("account") != account:
            problems.add("codestarConnectionArn", arn, f"must belong to awsAccountId {account}")
    arn = v.get("github_oidc_provider_arn")
    if arn:
        m = _OIDC_PROVIDER_ARN.match(arn)
        if not m:
            problems.add("githubOidcProviderArn", arn, "must be the ARN of the IAM OIDC "
                         "provider for token.actions.githubusercontent.com "
                         "(arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com)")
        elif account and m.group("account") != account:
            problems.add("githubOidcProviderArn", arn, f"must belong to awsAccountId {account}")

    backend = v.get("pulumi_backend")
    if backend not in PULUMI_BACKENDS:
        problems.add("pulumiBackend", backend or "", "must be cloud or s3")
    elif backend == "cloud":
        secret = v.get("pulumi_access_token_secret")
        if not secret:
            problems.add("pulumiAccessTokenSecret", "", "is required when pulumiBackend is "
                         "cloud: the Secrets Manager secret holding the Pulumi access token")
        elif not (_SECRET_ARN.match(secret) or (not secret.startswith("arn:")
                                                 and _SECRET_NAME.match(secret))):
            problems.add("pulumiAccessTokenSecret", secret, "must be a Secrets Manager secret "
                         "name (letters, digits, / _ + = . @ -) or ARN")
    else:
        bucket, key = v.get("pulumi_state_bucket"), v.get("pulumi_secrets_key_arn")
        if not bucket:
            problems.add("pulumiStateBucket", "", "is required when pulumiBackend is s3")
        elif not _BUCKET.match(bucket) or ".." in bucket:
            problems.add("pulumiStateBucket", bucket, "must be an S3 bucket name (3 to 63 "
                         "lower-case letters, digits, . and -)")
        if not key:
            problems.add("pulumiSecretsKeyArn", "", "is required when pulumiBackend is s3 "
                         "(the KMS key of the stack's awskms:// secrets provider)")
        elif not _KMS_KEY_ARN.match(key):
            problems.add("pulumiSecretsKeyArn", key, "must be a KMS key ARN "
                         "(arn:aws:kms:<region>:<account>:key/<id>)")


def _check_model(v: dict[str, Any], problems: _Problems) -> None:
    name, version = v["model_name"], v["model_version"]
    for key, value in (("modelName", name), ("modelVersion", version)):
        if not _MODEL_PART.match(value):
            problems.add(key, value, "must be 1 to 64 characters of letters, digits, . _ - "
                         "(a folder name under model/artifacts/)")
            return
    folder = MODEL_ROOT / name / version
    manifest_path = folder / MANIFEST_NAME
    pair = {"modelName": name, "modelVersion": version}
    if not manifest_path.is_file():
        available = sorted(str(p.parent.relative_to(MODEL_ROOT))
                           for p in MODEL_ROOT.glob(f"*/*/{MANIFEST_NAME}"))
        problems.add_many(pair, f"no released version at model/artifacts/{name}/{version}/"
                          f"{MANIFEST_NAME} (committed versions: {', '.join(available) or 'none'})")
        return
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        problems.add_many(pair, f"model/artifacts/{name}/{version}/{MANIFEST_NAME} is not a "
                          "valid manifest (needs a files map)")
        return
    if manifest.get("name") != name or str(manifest.get("version")) != version:
        problems.add_many(pair, f"the manifest in that folder names {manifest.get('name')!r} "
                          f"version {manifest.get('version')!r}: folder and manifest disagree")
    for file_name, entry in sorted(files.items()):
        path = folder / file_name
        if not path.is_file():
            problems.add_many(pair, f"{file_name} is listed in the manifest but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            problems.add_many(pair, f"{file_name} does not match its sha256 in the manifest "
                              "(the service would refuse to load it)")
    v["model_manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    v["model_files"] = tuple(sorted([MANIFEST_NAME, *files]))


def _check_production(v: dict[str, Any], stack: str, problems: _Problems) -> None:
    """What 'production' promises: HTTPS, redundancy across zones, protected data."""
    if stack.startswith("prod") and v.get("production") is False:
        problems.add("production", False, f"stack '{stack}' looks like production: set "
                     "production: true so the production rules apply")
    if not v.get("production"):
        return
    rule = "required when production is true"
    if not (v.get("certificate_arn") or (v.get("domain_name") and v.get("hosted_zone_id"))):
        problems.add_many({"certificateArn": v.get("certificate_arn") or "",
                           "domainName": v.get("domain_name") or ""},
                          f"HTTPS is {rule}: set certificateArn, or domainName and hostedZoneId")
    if v.get("min_count") is not None and v["min_count"] < 2:
        problems.add("minCount", v["min_count"], f"at least 2 tasks (one per zone) are {rule}")
    if v.get("nat_gateways") == "single":
        problems.add("natGateways", "single", "one NAT gateway per zone (one-per-az, or none "
                     f"with VPC endpoints) is {rule}: a single NAT is a single-zone failure")
    if v.get("protect_data") is False:
        problems.add("protectData", False, f"protected data (bucket, key, ALB) is {rule}")
    if v.get("waf_enabled") is False:
        problems.add("wafEnabled", False, f"the WAF web ACL is {rule}")
    if v.get("require_approval") is False:
        problems.add("requireApproval", False, f"a manual approval before deploy is {rule}")
    if v.get("fargate_base") is not None and v.get("min_count") is not None \
            and v["fargate_base"] < v["min_count"]:
        problems.add_many({"fargateBase": v["fargate_base"], "minCount": v["min_count"]},
                          "fargateBase >= minCount is required when production is true: the "
                          "minimum capacity must not depend on Spot")


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
    unknown = tuple(sorted(k.split(":", 1)[1] for k in _engine_config_keys()
                           if k.startswith(f"{project}:") and k.split(":", 1)[1] not in decls))
    return parse(raw, stack=pulumi.get_stack(), region=pulumi.Config("aws").get("region"),
                 project=project, unknown_keys=unknown)
