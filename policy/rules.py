"""The policy pack's rules as plain functions, importable without pulumi_policy.

``policy/__main__.py`` wraps them into a CrossGuard pack for ``pulumi preview --policy-pack
policy``; ``tests/infra/test_policy_pack.py`` runs the same functions over the mocked
resource graph of every stack. Each resource rule takes ``(resource_type, props)`` and
returns violation messages (empty: compliant); each stack rule takes a list of
``(resource_type, props)`` pairs. ``props`` are a resource's inputs with Pulumi's wire
names (camelCase); under CrossGuard they are read-only mappings whose unknown values raise
``UnknownValueError`` during a preview, which CrossGuard reports as "not evaluated". So the
rules use ``Mapping``/``Sequence`` checks, never ``dict``/``list``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterable

WORLD = ("0.0.0.0/0", "::/0")
WEB_PORTS = (80, 443)
MODERN_TLS_POLICIES = (
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
)
# Actions that have no resource-level permissions: "Resource": "*" is the only option.
STAR_RESOURCE_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "ecs:DeregisterTaskDefinition",
                                   "secretsmanager:GetRandomPassword", "sns:Unsubscribe",
                                   # CloudWatch Logs' vended-log delivery (WAF's logs)
                                   "logs:CreateLogDelivery", "logs:DeleteLogDelivery",
                                   "logs:GetLogDelivery", "logs:ListLogDeliveries",
                                   "logs:UpdateLogDelivery"})
# Read actions that return data rather than configuration: never on "*".
DATA_READ_ACTIONS = frozenset({
    "s3:GetObject", "s3:GetObjectVersion", "secretsmanager:GetSecretValue", "ssm:GetParameter",
    "ssm:GetParameters", "ssm:GetParametersByPath", "logs:GetLogEvents", "logs:FilterLogEvents",
    "logs:StartQuery", "logs:GetQueryResults", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan",
    "kms:Decrypt", "kms:GetParametersForImport", "codecommit:GetFile", "codebuild:BatchGetBuilds",
    "acm:GetCertificate", "acm:ExportCertificate", "cloudwatch:GetMetricData",
})
ROOT_USERS = ("root", "0", "0:0")

# Where each resource type keeps a policy document, and which kind it is.
POLICY_PROPS: dict[str, tuple[str, str]] = {
    "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
    "aws:iam/policy:Policy": ("policy", "identity"),
    "aws:iam/role:Role": ("assumeRolePolicy", "trust"),
    "aws:kms/key:Key": ("policy", "key"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "resource"),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", "resource"),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy", "resource"),
    "aws:secretsmanager/secretPolicy:SecretPolicy": ("policy", "resource"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("policy", "resource"),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("policyDocument", "resource"),
}
GITHUB_OIDC = "token.actions.githubusercontent.com"
# An image by digest: whatever names the repository, then the whole sha256 digest (a
# substring test also passed "repo:tag@sha256:" with no digest after it).
IMAGE_BY_DIGEST = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
# Where AWS's log delivery writes a bucket's logs: (resource type, property, key of the
# bucket name). These buckets must use SSE-S3: neither ALB nor S3 server access logging
# delivers to an SSE-KMS bucket.
LOG_TARGETS = (("aws:lb/loadBalancer:LoadBalancer", "accessLogs", "bucket"),
               ("aws:s3/bucketLogging:BucketLogging", None, "targetBucket"))


def _seq(value: Any) -> list:
    """A property that may be one value or a list of them, as a list."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _by_digest(image: Any) -> bool:
    """An image reference pinned to a digest (``<repository>@sha256:<64 hex>``)."""
    return IMAGE_BY_DIGEST.fullmatch(str(image or "")) is not None


def _statements(document: Any) -> list[Mapping]:
    return [s for s in _seq(_json(document).get("Statement")) if isinstance(s, Mapping)]


# --------------------------------------------------------------------- resource rules --
def s3_public_access_blocked(t: str, props: Mapping) -> list[str]:
    if t != "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        return []
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [f"{flag} must be true" for flag in flags if props.get(flag) is not True]


def _log_targets(resources: Sequence[tuple[str, Mapping]]) -> set[Any]:
    found = set()
    for t, p in resources:
        for type_, prop, key in LOG_TARGETS:
            if t == type_:
                holder = (p.get(prop) or {}) if prop else p
                if holder.get("enabled", True) and holder.get(key):
                    found.add(holder.get(key))
    return found


def s3_encryption(resources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """SSE-KMS with a customer key; SSE-S3 only for a bucket AWS's log delivery writes to."""
    names = {p.get("id"): p.get("bucket") for t, p in resources if t == "aws:s3/bucket:Bucket"}
    targets = _log_targets(resources)
    found = []
    for t, props in resources:
        if t != ("aws:s3/bucketServerSideEncryptionConfiguration:"
                 "BucketServerSideEncryptionConfiguration"):
            continue
        algorithms = {(r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                      for r in _seq(props.get("rules"))}
        bucket = names.get(props.get("bucket"), props.get("bucket"))
        if bucket in targets:
            if algorithms != {"AES256"}:
                found.append(f"bucket {bucket} receives AWS log delivery: its default "
                             "encryption must be SSE-S3 (AES256), which ALB and S3 access "
                             "logging deliver to")
        elif not algorithms or not algorithms <= {"aws:kms", "aws:kms:dsse"}:
            found.append(f"bucket {bucket}: default encryption must be SSE-KMS with a "
                         "customer key")
    return found


def s3_versioning(t: str, props: Mapping) -> list[str]:
    if t != "aws:s3/bucketVersioning:BucketVersioning":
        return []
    status = (props.get("versioningConfiguration") or {}).get("status")
    return [] if status == "Enabled" else [f"versioning must be Enabled, not {status!r}"]


def _denies_plain_http(document: Any) -> bool:
    return any(s.get("Effect") == "Deny"
               and str(((s.get("Condition") or {}).get("Bool") or {})
                       .get("aws:SecureTransport")).lower() == "false"
               for s in _statements(document))


def s3_tls_only(t: str, props: Mapping) -> list[str]:
    if t != "aws:s3/bucketPolicy:BucketPolicy":
        return []
    return [] if _denies_plain_http(props.get("policy")) else [
        "the bucket policy must deny requests with aws:SecureTransport false"]


def _world_ingress(cidrs: Iterable[Any], protocol: Any, from_port: Any, to_port: Any) -> list[str]:
    open_to = [c for c in cidrs if c in WORLD]
    if not open_to:
        return []
    if str(protocol) == "tcp" and from_port == to_port and from_port in WEB_PORTS:
        return []
    return [f"ingress from {', '.join(open_to)} on {protocol} {from_port}-{to_port}: only "
            "tcp 80 and 443 may be open to the world"]


def no_world_ingress(t: str, props: Mapping) -> list[str]:
    if t == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        return _world_ingress([props.get("cidrIpv4"), props.get("cidrIpv6")],
                              props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"))
    if t == "aws:ec2/securityGroupRule:SecurityGroupRule" and props.get("type") == "ingress":
        return _world_ingress([*_seq(props.get("cidrBlocks")), *_seq(props.get("ipv6CidrBlocks"))],
                              props.get("protocol"), props.get("fromPort"), props.get("toPort"))
    if t in ("aws:ec2/securityGroup:SecurityGroup",
             "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"):
        found = []
        for rule in _seq(props.get("ingress")):
            found += _world_ingress([*_seq(rule.get("cidrBlocks")),
                                     *_seq(rule.get("ipv6CidrBlocks"))],
                                    rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
        return found
    return []


def subnet_no_public_ip(t: str, props: Mapping) -> list[str]:
    if t == "aws:ec2/subnet:Subnet" and props.get("mapPublicIpOnLaunch") is True:
        return ["subnets must not give instances public IPs (mapPublicIpOnLaunch)"]
    return []


def ecs_task_hardened(t: str, props: Mapping) -> list[str]:
    if t != "aws:ecs/taskDefinition:TaskDefinition":
        return []
    found = []
    for c in _seq(_json(props.get("containerDefinitions"))):
        name = c.get("name", "?")
        if c.get("readonlyRootFilesystem") is not True:
            found.append(f"container {name}: readonlyRootFilesystem must be true")
        user = str(c.get("user") or "")
        if not user or user in ROOT_USERS or user.startswith(("root:", "0:")):
            found.append(f"container {name}: must run as a non-root user, not {user or 'the default (root)'}")
        if c.get("privileged") is True:
            found.append(f"container {name}: must not be privileged")
        if not _by_digest(c.get("image")):
            found.append(f"container {name}: image must be referenced by digest (@sha256:...)")
        if not c.get("logConfiguration"):
            found.append(f"container {name}: needs a logConfiguration")
        for env in _seq(c.get("environment")):
            if env.get("value") is None:
                found.append(f"container {name}: environment {env.get('name')} has no value "
                             "(null values cause permanent diffs)")
    return found


def ecs_service_private(t: str, props: Mapping) -> list[str]:
    if t != "aws:ecs/service:Service":
        return []
    network = props.get("networkConfiguration") or {}
    return ["tasks must not get public IPs (assignPublicIp)"] \
        if network.get("assignPublicIp") is True else []


def ecs_service_rollback(t: str, props: Mapping) -> list[str]:
    if t != "aws:ecs/service:Service":
        return []
    found = []
    breaker = props.get("deploymentCircuitBreaker") or {}
    if not (breaker.get("enable") is True and breaker.get("rollback") is True):
        found.append("the deployment circuit breaker must be enabled with rollback")
    alarms = props.get("alarms") or {}
    if not (alarms.get("enable") is True and alarms.get("rollback") is True
            and _seq(alarms.get("alarmNames"))):
        found.append("deployment alarms must be enabled with rollback")
    return found


def sagemaker_model_by_digest(t: str, props: Mapping) -> list[str]:
    """A SageMaker model runs an image by digest (as ECS does): a tag could move under it."""
    if t != "aws:sagemaker/model:Model":
        return []
    containers = [props.get("primaryContainer") or {}, *_seq(props.get("containers"))]
    return [f"container image {c.get('image')!r} must be referenced by digest (@sha256:...)"
            for c in containers if c and not _by_digest(c.get("image"))]


def sagemaker_endpoint_rolls_back(t: str, props: Mapping) -> list[str]:
    """An endpoint update is blue/green and rolls back on CloudWatch alarms."""
    if t != "aws:sagemaker/endpoint:Endpoint":
        return []
    deployment = props.get("deploymentConfig") or {}
    found = []
    if not deployment.get("blueGreenUpdatePolicy"):
        found.append("endpoint updates must be blue/green (deploymentConfig.blueGreenUpdatePolicy)")
    if not _seq((deployment.get("autoRollbackConfiguration") or {}).get("alarms")):
        found.append("endpoint updates must roll back on alarms "
                     "(deploymentConfig.autoRollbackConfiguration.alarms)")
    return found


def sagemaker_capture_encrypted(t: str, props: Mapping) -> list[str]:
    """Captured requests and responses are the callers' data: encrypted with the stack's key."""
    if t != "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        return []
    capture = props.get("dataCaptureConfig") or {}
    if capture.get("enableCapture") is not False and capture and not capture.get("kmsKeyId"):
        return ["data capture must be encrypted with a KMS key (dataCaptureConfig.kmsKeyId)"]
    return []


def lambda_function_hardened(t: str, props: Mapping) -> list[str]:
    """An image function runs a digest on an explicit architecture and logs where the stack
    says (its encrypted log group with a retention, not an unmanaged /aws/lambda group)."""
    if t != "aws:lambda/function:Function" or props.get("packageType") != "Image":
        return []
    found = []
    if not _by_digest(props.get("imageUri")):
        found.append("the image must be referenced by digest (@sha256:...)")
    if not _seq(props.get("architectures")):
        found.append("the architecture must be explicit (the image's platform)")
    if not (props.get("loggingConfig") or {}).get("logGroup"):
        found.append("logs must go to the stack's log group (loggingConfig.logGroup)")
    return found


def lambda_url_authenticated(t: str, props: Mapping) -> list[str]:
    """Advisory: a NONE function URL is public (allowed outside production only, where the
    configuration refuses it)."""
    if t == "aws:lambda/functionUrl:FunctionUrl" and props.get("authorizationType") != "AWS_IAM":
        return ["the function URL should authenticate callers with AWS_IAM (SigV4), not "
                f"{props.get('authorizationType')!r}"]
    return []


def log_group_encrypted_retained(t: str, props: Mapping) -> list[str]:
    if t != "aws:cloudwatch/logGroup:LogGroup":
        return []
    found = []
    if not props.get("kmsKeyId"):
        found.append("log groups must be encrypted with the stack's KMS key")
    if not props.get("retentionInDays"):
        found.append("log groups need a retention (retentionInDays)")
    return found


def kms_rotation(t: str, props: Mapping) -> list[str]:
    if t == "aws:kms/key:Key" and props.get("customerMasterKeySpec", "SYMMETRIC_DEFAULT") \
            == "SYMMETRIC_DEFAULT" and props.get("enableKeyRotation") is not True:
        return ["symmetric KMS keys must have rotation enabled"]
    return []


def ecr_repository_hardened(t: str, props: Mapping) -> list[str]:
    if t != "aws:ecr/repository:Repository":
        return []
    found = []
    if props.get("imageTagMutability") != "IMMUTABLE":
        found.append("image tags must be IMMUTABLE")
    if (props.get("imageScanningConfiguration") or {}).get("scanOnPush") is not True:
        found.append("images must be scanned on push")
    if not any(e.get("encryptionType") == "KMS" for e in _seq(props.get("encryptionConfigurations"))):
        found.append("the repository must be encrypted with KMS")
    return found


def alb_hardened(t: str, props: Mapping) -> list[str]:
    if t != "aws:lb/loadBalancer:LoadBalancer" or props.get("loadBalancerType", "application") \
            != "application":
        return []
    return [] if props.get("dropInvalidHeaderFields") is True else [
        "application load balancers must drop invalid header fields"]


def listener_modern_tls(t: str, props: Mapping) -> list[str]:
    if t != "aws:lb/listener:Listener" or props.get("protocol") != "HTTPS":
        return []
    policy = props.get("sslPolicy")
    return [] if policy in MODERN_TLS_POLICIES else [
        f"HTTPS listeners must use a TLS 1.2+ policy from {MODERN_TLS_POLICIES}, not {policy!r}"]


def http_redirects_to_https(t: str, props: Mapping) -> list[str]:
    """Advisory: plain HTTP is allowed outside production, where the program warns."""
    if t != "aws:lb/listener:Listener" or props.get("protocol") != "HTTP":
        return []
    actions = _seq(props.get("defaultActions"))
    if actions and all(a.get("type") == "redirect"
                       and (a.get("redirect") or {}).get("protocol") == "HTTPS" for a in actions):
        return []
    return ["HTTP listeners should only redirect to HTTPS"]


def sns_topic_encrypted(t: str, props: Mapping) -> list[str]:
    if t == "aws:sns/topic:Topic" and not props.get("kmsMasterKeyId"):
        return ["SNS topics must be encrypted with a KMS key"]
    return []


def secret_encrypted_with_cmk(t: str, props: Mapping) -> list[str]:
    if t == "aws:secretsmanager/secret:Secret" and not props.get("kmsKeyId"):
        return ["secrets must be encrypted with the stack's KMS key, not the AWS-managed one"]
    return []


def no_wildcard_actions(t: str, props: Mapping) -> list[str]:
    where = POLICY_PROPS.get(t)
    if where is None or not props.get(where[0]):
        return []
    found = []
    for s in _statements(props.get(where[0])):
        if s.get("Effect") != "Allow":
            continue
        if "NotAction" in s:
            found.append(f"statement {s.get('Sid', '?')}: Allow with NotAction grants too much")
        if any(a == "*" for a in _seq(s.get("Action"))):
            found.append(f"statement {s.get('Sid', '?')}: Action \"*\" is never allowed")
    return found


def _metadata_read(action: str) -> bool:
    verb = action.split(":", 1)[-1]
    return verb.startswith(("Describe", "List", "Get", "BatchGet")) and "*" not in verb \
        and action not in DATA_READ_ACTIONS


def _star_resource_problems(document: Any) -> list[str]:
    found = []
    for s in _statements(document):
        if s.get("Effect") != "Allow" or "*" not in _seq(s.get("Resource")) or s.get("Condition"):
            continue  # a Condition (tag, region, create action...) narrows the statement
        actions = _seq(s.get("Action"))
        extra = sorted(a for a in actions
                       if a not in STAR_RESOURCE_ACTIONS and not _metadata_read(a))
        if extra:
            found.append(f"statement {s.get('Sid', '?')}: Resource \"*\" for {extra}; name the "
                         "exact ARNs or add a narrowing Condition (only actions without "
                         "resource-level permissions and configuration reads may use \"*\")")
    return found


def identity_star_resource_only_where_required(resources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """Identity policies grant on exact ARNs. A stack rule: a managed policy used as a
    permissions boundary is a ceiling, not a grant, and is skipped."""
    boundaries = {str(p.get("permissionsBoundary")).rsplit("/", 1)[-1]
                  for t, p in resources
                  if t == "aws:iam/role:Role" and p.get("permissionsBoundary")}
    found = []
    for t, props in resources:
        where = POLICY_PROPS.get(t)
        if where is None or where[1] != "identity" or not props.get(where[0]):
            continue
        if t == "aws:iam/policy:Policy" and props.get("name") in boundaries:
            continue
        name = props.get("name") or props.get("role") or t
        found += [f"{name}: {m}" for m in _star_resource_problems(props.get(where[0]))]
    return found


def service_principals_act_for_this_account(t: str, props: Mapping) -> list[str]:
    """Confused deputy: a service principal allowed in a key, topic or log-group policy is
    pinned to this account (aws:SourceAccount, or for CloudWatch Logs the log group in the
    encryption context)."""
    if t not in ("aws:kms/key:Key", "aws:sns/topicPolicy:TopicPolicy",
                 "aws:cloudwatch/logResourcePolicy:LogResourcePolicy"):
        return []
    found = []
    for s in _statements(props.get(POLICY_PROPS[t][0]) or "{}"):
        principal = s.get("Principal")
        if s.get("Effect") != "Allow" or not isinstance(principal, Mapping) \
                or "Service" not in principal:
            continue
        condition = json.dumps(s.get("Condition") or {})
        if "aws:SourceAccount" not in condition and \
                "kms:EncryptionContext:aws:logs:arn" not in condition:
            found.append(f"statement {s.get('Sid', '?')}: the service principal "
                         f"{principal['Service']} needs aws:SourceAccount (and aws:SourceArn)")
    return found


def github_trust_pinned_to_an_environment(t: str, props: Mapping) -> list[str]:
    """A role GitHub Actions may assume is pinned to one repository's environment (whose
    protection rules run before GitHub issues the token), never to pull requests."""
    if t != "aws:iam/role:Role" or not props.get("assumeRolePolicy"):
        return []
    found = []
    for s in _statements(props.get("assumeRolePolicy")):
        federated = _seq((s.get("Principal") or {}).get("Federated")
                         if isinstance(s.get("Principal"), Mapping) else None)
        if not any(GITHUB_OIDC in str(f) for f in federated):
            continue
        equals = (s.get("Condition") or {}).get("StringEquals") or {}
        subjects = _seq(equals.get(f"{GITHUB_OIDC}:sub"))
        if equals.get(f"{GITHUB_OIDC}:aud") != "sts.amazonaws.com":
            found.append("GitHub OIDC trust without the sts.amazonaws.com audience")
        if not subjects or any(":environment:" not in str(x) or "*" in str(x)
                               for x in subjects):
            found.append(f"GitHub OIDC trust must pin the subject to "
                         f"repo:<owner>/<repo>:environment:<name> (StringEquals), not {subjects}")
    return found


def vpc_endpoint_has_a_policy(t: str, props: Mapping) -> list[str]:
    if t == "aws:ec2/vpcEndpoint:VpcEndpoint" and not props.get("policy"):
        return ["VPC endpoints need a policy (the default allows any call by anyone)"]
    return []


# ------------------------------------------------------------------------ stack rules --
def buckets_fully_configured(resources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """Every bucket has versioning, default encryption (s3-kms-encryption judges which), a
    public access block and a bucket policy (s3-tls-only judges its content).

    Resources refer to their bucket by its name (the bucket's ID)."""
    buckets = [p.get("bucket") for t, p in resources if t == "aws:s3/bucket:Bucket"]
    needs = {
        "aws:s3/bucketVersioning:BucketVersioning": "versioning",
        ("aws:s3/bucketServerSideEncryptionConfiguration:"
         "BucketServerSideEncryptionConfiguration"): "default encryption",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "a public access block",
        "aws:s3/bucketPolicy:BucketPolicy": "a bucket policy",
    }
    found = []
    for bucket in buckets:
        for needed_type, what in needs.items():
            if not any(t == needed_type and p.get("bucket") == bucket for t, p in resources):
                found.append(f"bucket {bucket} has no {what}")
    return found


def roles_carry_a_boundary(resources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """Every role carries a permissions boundary that is a policy of this stack."""
    policies = {p.get("arn") for t, p in resources if t == "aws:iam/policy:Policy"}
    return [f"role {p.get('name') or '?'} has no permissions boundary of this stack"
            for t, p in resources if t == "aws:iam/role:Role"
            and p.get("permissionsBoundary") not in policies]


def ecr_push_only_by_one_role(resources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """Each ECR repository's policy denies pushes by any principal but one (the deploy
    role): a planted tag would otherwise be deployed without a build."""
    denied = set()
    for t, p in resources:
        if t != "aws:ecr/repositoryPolicy:RepositoryPolicy":
            continue
        for s in _statements(p.get("policy") or "{}"):
            if s.get("Effect") == "Deny" and "ecr:PutImage" in _seq(s.get("Action")) and \
                    "aws:PrincipalArn" in json.dumps(s.get("Condition") or {}):
                denied.add(p.get("repository"))
    return [f"repository {p.get('name')} lets any principal with ECR rights push"
            for t, p in resources if t == "aws:ecr/repository:Repository"
            and p.get("name") not in denied]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[..., list[str]]
    mandatory: bool = True
    stack: bool = False            # takes the whole stack's resources


RULES: tuple[Rule, ...] = (
    Rule("s3-public-access-blocked", "S3 public access blocks enable all four settings.",
         s3_public_access_blocked),
    Rule("s3-kms-encryption", "S3 default encryption uses SSE-KMS (SSE-S3 only where AWS's "
         "log delivery requires it).", s3_encryption, stack=True),
    Rule("s3-versioning", "S3 buckets are versioned.", s3_versioning),
    Rule("s3-tls-only", "S3 bucket policies deny plain HTTP.", s3_tls_only),
    Rule("s3-buckets-fully-configured", "Every bucket has versioning, default encryption, "
         "a public access block and a bucket policy.", buckets_fully_configured, stack=True),
    Rule("no-world-ingress", "Only tcp 80/443 may be open to 0.0.0.0/0 or ::/0.",
         no_world_ingress),
    Rule("subnet-no-public-ip", "Subnets do not assign public IPs.", subnet_no_public_ip),
    Rule("ecs-task-hardened", "Containers: read-only root, non-root, unprivileged, image by "
         "digest, logs configured, no null environment values.", ecs_task_hardened),
    Rule("ecs-service-private", "ECS tasks get no public IP.", ecs_service_private),
    Rule("ecs-service-rollback", "ECS deployments roll back on circuit breaker and alarms.",
         ecs_service_rollback),
    Rule("log-group-encrypted-retained", "Log groups are KMS-encrypted with a retention.",
         log_group_encrypted_retained),
    Rule("sagemaker-model-by-digest", "SageMaker models run their image by digest.",
         sagemaker_model_by_digest),
    Rule("sagemaker-endpoint-rolls-back", "SageMaker endpoint updates are blue/green and roll "
         "back on alarms.", sagemaker_endpoint_rolls_back),
    Rule("sagemaker-capture-encrypted", "SageMaker data capture is KMS-encrypted.",
         sagemaker_capture_encrypted),
    Rule("lambda-function-hardened", "Image functions: by digest, explicit architecture, "
         "logs to the stack's log group.", lambda_function_hardened),
    Rule("lambda-url-authenticated", "Function URLs authenticate callers with AWS_IAM.",
         lambda_url_authenticated, mandatory=False),
    Rule("kms-rotation", "KMS keys rotate.", kms_rotation),
    Rule("ecr-repository-hardened", "ECR: immutable tags, scan on push, KMS.",
         ecr_repository_hardened),
    Rule("alb-drop-invalid-headers", "ALBs drop invalid header fields.", alb_hardened),
    Rule("listener-modern-tls", "HTTPS listeners use a TLS 1.2+ policy.", listener_modern_tls),
    Rule("http-redirects-to-https", "HTTP listeners redirect to HTTPS.",
         http_redirects_to_https, mandatory=False),
    Rule("sns-topic-encrypted", "SNS topics are KMS-encrypted.", sns_topic_encrypted),
    Rule("secret-encrypted-with-cmk", "Secrets use the stack's KMS key.",
         secret_encrypted_with_cmk),
    Rule("no-wildcard-actions", "No policy allows Action \"*\" or NotAction.",
         no_wildcard_actions),
    Rule("service-principals-act-for-this-account", "Service principals in key, topic and "
         "log-group policies carry aws:SourceAccount (confused deputy).",
         service_principals_act_for_this_account),
    Rule("github-trust-pinned-to-an-environment", "GitHub OIDC roles trust one repository's "
         "environment only.", github_trust_pinned_to_an_environment),
    Rule("vpc-endpoint-has-a-policy", "VPC endpoints have policies.", vpc_endpoint_has_a_policy),
    Rule("roles-carry-a-boundary", "Every IAM role carries the stack's permissions boundary.",
         roles_carry_a_boundary, stack=True),
    Rule("ecr-push-only-by-one-role", "ECR repositories deny pushes by all but one role.",
         ecr_push_only_by_one_role, stack=True),
    Rule("iam-star-resource-only-where-required", "Identity policies name exact ARNs; "
         "Resource \"*\" only for actions without resource-level permissions, configuration "
         "reads, or under a narrowing Condition (permissions boundaries are ceilings: skipped).",
         identity_star_resource_only_where_required, stack=True),
)


def violations(resources: Sequence[tuple[str, Mapping]], *, mandatory_only: bool = False
               ) -> list[tuple[str, int | None, str]]:
    """Run every rule: (rule name, index of the resource or None for stack rules, message)."""
    found: list[tuple[str, int | None, str]] = []
    for rule in RULES:
        if mandatory_only and not rule.mandatory:
            continue
        if rule.stack:
            found += [(rule.name, None, m) for m in rule.check(resources)]
        else:
            for i, (t, props) in enumerate(resources):
                found += [(rule.name, i, m) for m in rule.check(t, props)]
    return found
