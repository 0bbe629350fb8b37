"""IAM policy evaluation as AWS documents it, for the escalation tests (test code only).

Why our own ~250 lines and not a library: ``principalmapper`` (PyPI, last release 2022-01)
has a local simulator, but it matches resource ARNs case-insensitively (AWS: ARNs are
case-sensitive), escapes only ``.``, ``$`` and ``^`` when it turns a pattern into a regular
expression, treats ``StringNotLike`` on a missing key as false (IAM: a negated operator on a
missing key is true), and needs its own Graph/Node objects built from a live account.
``policyuniverse`` expands and matches actions but does not evaluate conditions or
boundaries. Neither is maintained. What is implemented here is what the program's policies
use, each rule with the documented example it is tested against (tests/infra/test_iam_eval.py),
and an unknown condition operator raises instead of guessing.

Implemented (IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements"):

* explicit Deny in any applicable policy wins; otherwise, in one account, an Allow from the
  identity policies AND from the permissions boundary (when the role has one), or an Allow
  from a resource-based policy: one naming the role ARN is still capped by the boundary, one
  naming the account delegates to the account's identity policies; across accounts both the
  resource policy and the caller's identity policy (and boundary) must allow;
* Action/NotAction (case-insensitive, ``*`` and ``?``), Resource/NotResource (case-sensitive,
  ``*`` and ``?`` within one colon-separated segment of the ARN, a ``*`` that ends its
  segment also beyond it; policy variables ``${key}`` with ``${*}``, ``${?}``, ``${$}``);
* Principal/NotPrincipal of resource and trust policies (AWS account, role, ``*``, Service,
  Federated);
* condition operators String*, Arn*, Bool, Null, Numeric*, each with ``IfExists`` and the
  ``ForAllValues:``/``ForAnyValue:`` set qualifiers, with IAM's missing-key rules: a missing
  key makes a positive operator false and a negated one true, ``...IfExists`` true, ``Null``
  tests presence; ``ForAllValues`` is true on a missing or empty key, ``ForAnyValue`` false.
  Several keys in one operator, and several operators, must all hold (AND); several values of
  one key are alternatives (OR), and a negated operator holds when none of them matches.

Not modelled (and not used by this program): session policies, AWS Organizations SCPs and
RCPs, the root user, ``IpAddress``/``Date`` operators, access points and VPC endpoint policies
in the evaluation of a request.

A wildcard in an ARN's service segment never matches: "You can't use a wildcard in the
service segment that identifies the AWS product" (IAM JSON policy elements: Resource), so a
pattern such as ``arn:aws:*:eu-west-1:123456789012:x`` grants nothing here, whatever IAM
makes of it; tests/infra/test_iam.py keeps such patterns out of every policy of the
program.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

Statement = Mapping[str, Any]
Context = Mapping[str, Any]


def _list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -------------------------------------------------------------------------- matching --
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "\x00", "?": "\x01", "$": "$"}


def substitute(text: str, context: Context) -> str | None:
    """Policy variables replaced from the request context; None when a variable's key is
    missing (IAM: the element then does not match). ``${*}``/``${?}`` stay literal."""
    missing = False

    def replace(m: re.Match[str]) -> str:
        nonlocal missing
        key = m.group(1)
        if key in _ESCAPES:
            return _ESCAPES[key]
        value = lookup(context, key)
        if value is None or isinstance(value, list):
            missing = True
            return ""
        return str(value)

    out = _VARIABLE.sub(replace, text)
    return None if missing else out


def _match_pattern(pattern: str, value: str, *, ignore_case: bool,
                   arn_segments: bool = False) -> bool:
    """``*`` and ``?`` in ``pattern`` (escaped ones, ``${*}``/``${?}``, were turned into
    placeholders: compared literally). With ``arn_segments`` (the Resource element), a
    wildcard stays within its colon-separated segment of the ARN unless it is a ``*`` that
    ends its segment: "If the * wildcard is the last character of a resource ARN segment, it
    can expand to match beyond the colon boundaries" (IAM JSON policy elements: Resource)."""
    return _pattern(pattern, ignore_case, arn_segments).match(value) is not None


@lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool, arn_segments: bool) -> re.Pattern[str]:
    """``_match_pattern``'s regular expression, built once per pattern (the escalation walk
    matches the same policies' patterns against thousands of requests)."""
    def wildcard(c: str, following: str) -> str:
        if not arn_segments or (c == "*" and following in (":", "")):
            return ".*" if c == "*" else "."
        return "[^:]*" if c == "*" else "[^:]"

    def literal_or_wildcard(text: str, after: str) -> str:
        return "".join(wildcard(c, (text[i + 1:i + 2] or after[:1])) if c in "*?"
                       else re.escape(c) for i, c in enumerate(text))

    parts = re.split("([\x00\x01])", pattern)
    body = "".join(re.escape("*") if p == "\x00" else re.escape("?") if p == "\x01" else
                   literal_or_wildcard(p, "".join(parts[i + 1:]))
                   for i, p in enumerate(parts))
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def lookup(context: Context, key: str) -> Any:
    """Condition keys are case-insensitive (their values are not)."""
    lowered = key.lower()
    for k, v in context.items():
        if k.lower() == lowered:
            return v
    return None


def action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_match_pattern(p, action, ignore_case=True) for p in patterns)


def service_wildcard(pattern: str) -> bool:
    """Whether an ARN pattern has a wildcard in its service segment (the third)."""
    parts = pattern.split(":")
    return pattern.startswith("arn:") and len(parts) > 2 and any(c in parts[2] for c in "*?")


def resource_matches(patterns: Iterable[str], resource: str, context: Context) -> bool:
    for pattern in patterns:
        resolved = substitute(pattern, context)
        if resolved is not None and not service_wildcard(resolved) and _match_pattern(
                resolved, resource, ignore_case=False, arn_segments=True):
            return True
    return False


def arn_like(pattern: str, arn: str) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated parts matched on its own."""
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return False
    return all(_match_pattern(p, a, ignore_case=False) for p, a in zip(p_parts, a_parts))


# ------------------------------------------------------------------------ conditions --
def _compare(base: str, policy_value: str, request_value: Any) -> bool:
    """One positive comparison of a request value with one policy value."""
    if base in ("StringEquals", "StringEqualsIgnoreCase", "StringLike"):
        ignore = base == "StringEqualsIgnoreCase"
        if base == "StringLike":
            return _match_pattern(policy_value, str(request_value), ignore_case=False)
        return (policy_value.lower() == str(request_value).lower()) if ignore \
            else policy_value == str(request_value)
    if base in ("ArnEquals", "ArnLike"):
        return arn_like(policy_value, str(request_value))
    if base == "Bool":
        return str(policy_value).lower() == str(request_value).lower()
    if base.startswith("Numeric"):
        a, b = float(request_value), float(policy_value)
        return {"NumericEquals": a == b, "NumericLessThan": a < b,
                "NumericLessThanEquals": a <= b, "NumericGreaterThan": a > b,
                "NumericGreaterThanEquals": a >= b}[base]
    raise NotImplementedError(f"condition operator {base} is not modelled")


_NEGATED = {"StringNotEquals": "StringEquals",
            "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
            "NumericNotEquals": "NumericEquals"}
_POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike",
             "Bool", "NumericEquals", "NumericLessThan", "NumericLessThanEquals",
             "NumericGreaterThan", "NumericGreaterThanEquals"}


def _one_value(base: str, policy_values: list[str], value: Any) -> bool:
    """The operator on one request value: any policy value matches (a negated operator:
    none does)."""
    if base in _NEGATED:
        return not any(_compare(_NEGATED[base], v, value) for v in policy_values)
    if base in _POSITIVE:
        return any(_compare(base, v, value) for v in policy_values)
    raise NotImplementedError(f"condition operator {base} is not modelled")


def condition_holds(operator: str, key: str, policy_value: Any, context: Context) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists") and op != "IfExists"
    base = op[:-len("IfExists")] if if_exists else op
    request_value = lookup(context, key)
    present = request_value is not None and request_value != [] and request_value != ""
    values = [substitute(str(v), context) for v in _list(policy_value)]
    values = [v for v in values if v is not None]       # a missing variable matches nothing

    if base == "Null":
        if qualifier:
            raise NotImplementedError("ForAllValues/ForAnyValue with Null is not modelled")
        wanted = str(_list(policy_value)[0]).lower() == "true"
        return (not present) if wanted else present
    if qualifier == "ForAllValues":
        return all(_one_value(base, values, v) for v in _list(request_value)) if present else True
    if qualifier == "ForAnyValue":
        return any(_one_value(base, values, v) for v in _list(request_value)) if present else False
    if qualifier:
        raise NotImplementedError(f"set qualifier {qualifier} is not modelled")
    if not present:
        return True if if_exists else base in _NEGATED
    if isinstance(request_value, list):
        raise ValueError(f"{key} has several values in the request: the policy must use "
                         f"ForAllValues or ForAnyValue with {operator}")
    return _one_value(base, values, request_value)


def conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Context) -> bool:
    return all(condition_holds(op, key, value, context)
               for op, block in (condition or {}).items() for key, value in block.items())


# ------------------------------------------------------------------------ statements --
@dataclass(frozen=True)
class Request:
    """One API call: its action, the resource it is authorised against, and the request
    context (condition keys such as aws:PrincipalArn, iam:PolicyARN, aws:RequestTag/stack;
    a list for a multi-valued key)."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


def statement_applies(statement: Statement, request: Request) -> bool:
    """Action/NotAction, Resource/NotResource and Condition of one statement (not its
    Principal)."""
    context = request.context
    if "Action" in statement:
        if not action_matches(_list(statement["Action"]), request.action):
            return False
    elif "NotAction" in statement:
        if action_matches(_list(statement["NotAction"]), request.action):
            return False
    else:
        raise ValueError(f"statement without Action or NotAction: {statement}")
    if "Resource" in statement:
        if not resource_matches(_list(statement["Resource"]), request.resource, context):
            return False
    elif "NotResource" in statement:
        if resource_matches(_list(statement["NotResource"]), request.resource, context):
            return False
    return conditions_hold(statement.get("Condition"), context)


def effects(statements: Sequence[Statement], request: Request) -> set[str]:
    """The effects ("Allow", "Deny") of the statements that apply to the request."""
    return {s["Effect"] for s in statements if statement_applies(s, request)}


# ------------------------------------------------------------------------ principals --
@dataclass(frozen=True)
class Principal:
    """An IAM role as the evaluator sees it: its ARN and account, its identity statements
    (inline and attached managed policies) and its permissions boundary, if any."""

    arn: str
    identity: tuple[Statement, ...]
    boundary: tuple[Statement, ...] | None = None

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def session_arn(self, session: str = "session") -> str:
        partition = self.arn.split(":")[1]
        return f"arn:{partition}:sts::{self.account}:assumed-role/{self.name}/{session}"

    def context(self) -> dict[str, Any]:
        """The global keys AWS adds to every request this role's session makes."""
        return {"aws:PrincipalArn": self.arn, "aws:PrincipalAccount": self.account,
                "aws:PrincipalType": "AssumedRole",
                "aws:userid": f"AROAEXAMPLE:{self.name}"}


def principal_named(statement: Statement, *, arn: str | None = None, session_arn: str | None = None,
                    account: str | None = None, service: str | None = None,
                    federated: str | None = None) -> str | None:
    """How the statement's Principal names the caller: "session", "role", "account",
    "service", "federated", "anyone", or None when it does not name it."""
    if "NotPrincipal" in statement:
        raise NotImplementedError("NotPrincipal is not used by this program")
    principal = statement.get("Principal")
    if principal == "*" or principal == {"AWS": "*"}:
        return "anyone"
    if not isinstance(principal, Mapping):
        return None
    for entry in _list(principal.get("AWS")):
        if entry == "*":
            return "anyone"
        if session_arn and entry == session_arn:
            return "session"
        if arn and entry == arn:
            return "role"
        if account and entry in (account, f"arn:aws:iam::{account}:root"):
            return "account"
    if service and service in _list(principal.get("Service")):
        return "service"
    if federated and federated in _list(principal.get("Federated")):
        return "federated"
    return None


def resource_policy_effects(statements: Sequence[Statement], request: Request,
                            **caller: str | None) -> dict[str, set[str]]:
    """Effects of a resource policy's statements that apply to the request, by how their
    Principal names the caller."""
    found: dict[str, set[str]] = {}
    for s in statements:
        how = principal_named(s, **caller)
        if how and statement_applies(s, request):
            found.setdefault(how, set()).add(s["Effect"])
    return found


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def evaluate(principal: Principal, request: Request,
             resource_policy: Sequence[Statement] | None = None,
             resource_account: str | None = None) -> Decision:
    """Is ``principal``'s role session allowed to make ``request``?"""
    request = Request(request.action, request.resource,
                      {**principal.context(), **request.context})
    identity = effects(principal.identity, request)
    boundary = effects(principal.boundary, request) if principal.boundary is not None else None
    by_resource = resource_policy_effects(
        resource_policy or (), request, arn=principal.arn, session_arn=principal.session_arn(),
        account=principal.account)
    resource = set().union(*by_resource.values()) if by_resource else set()

    if "Deny" in identity or (boundary and "Deny" in boundary) or "Deny" in resource:
        return Decision(False, "explicit deny")
    within_boundary = boundary is None or "Allow" in boundary
    same_account = resource_account in (None, principal.account)
    if same_account:
        if "Allow" in by_resource.get("session", set()) or "Allow" in by_resource.get("anyone", set()):
            return Decision(True, "resource policy names the session")
        if "Allow" in by_resource.get("role", set()) and within_boundary:
            return Decision(True, "resource policy names the role, boundary allows")
        if "Allow" in identity and within_boundary:
            return Decision(True, "identity policy and boundary allow")
        return Decision(False, "no allow in the identity policy" if within_boundary
                        else "the boundary does not allow it")
    # Across accounts: the resource's account must allow it, and the caller's account too.
    if not ({"Allow"} & (by_resource.get("role", set()) | by_resource.get("session", set())
                         | by_resource.get("account", set()) | by_resource.get("anyone", set()))):
        return Decision(False, "the resource policy of the other account does not allow it")
    if "Allow" in identity and within_boundary:
        return Decision(True, "resource policy, identity policy and boundary allow")
    return Decision(False, "cross-account: the caller's own policies do not allow it")


def trust_allows(trust: Sequence[Statement], *, action: str = "sts:AssumeRole",
                 context: Context | None = None, **caller: str | None) -> bool:
    """Does the trust policy (the role's resource policy for STS) let this caller assume the
    role? (For an AWS principal, the caller's own policies must also allow sts:AssumeRole:
    see ``evaluate``.)"""
    request = Request(action, "*", dict(context or {}))
    found = resource_policy_effects(trust, request, **caller)
    all_effects = set().union(*found.values()) if found else set()
    return "Allow" in all_effects and "Deny" not in all_effects
