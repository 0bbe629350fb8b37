"""The IAM evaluator of the test harness (tests/infra/iam_eval.py) against the examples and
rules of the IAM User Guide ("Policy evaluation logic", "IAM JSON policy elements:
Condition operators", "Multivalued context keys", "Policy variables"), missing keys
included. The escalation tests are only as good as this evaluator."""

from __future__ import annotations

import pytest

from tests.infra.iam_eval import (Principal, Request, condition_holds, evaluate,
                                  service_wildcard, statement_applies, trust_allows)

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def role(identity, boundary=None, arn=ROLE):
    return Principal(arn, tuple(identity), None if boundary is None else tuple(boundary))


# ---------------------------------------------------------------- the evaluation logic --
def test_an_explicit_deny_wins_over_any_allow():
    p = role([allow("s3:*"), deny("s3:DeleteBucket")])
    assert evaluate(p, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not evaluate(p, Request("s3:DeleteBucket", "arn:aws:s3:::b"))


def test_nothing_is_allowed_by_default():
    assert not evaluate(role([]), Request("s3:GetObject", "arn:aws:s3:::b/k"))


def test_a_boundary_caps_and_never_grants():
    # "the entity can perform only the actions that are allowed by both its identity-based
    # policies and its permissions boundaries"
    capped = role([allow("s3:*"), allow("iam:CreateUser")], boundary=[allow("s3:*")])
    assert evaluate(capped, Request("s3:PutObject", "arn:aws:s3:::b/k"))
    assert not evaluate(capped, Request("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x"))
    granted_by_boundary_only = role([], boundary=[allow("*")])
    assert not evaluate(granted_by_boundary_only, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    # A Deny in the boundary wins like any other.
    assert not evaluate(role([allow("*")], boundary=[allow("*"), deny("iam:*")]),
                        Request("iam:PutRolePolicy", ROLE))


def test_resource_policies_in_one_account():
    req = Request("s3:GetObject", "arn:aws:s3:::b/k")
    named_role = [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject",
                   "Resource": "arn:aws:s3:::b/*"}]
    # Naming the role ARN: no identity policy needed, but an implicit deny in the boundary
    # still limits it ("Resource-based policies that grant permissions to an IAM role ARN
    # are limited by an implicit deny in a permissions boundary").
    assert evaluate(role([]), req, named_role, ACCOUNT)
    assert not evaluate(role([], boundary=[allow("ec2:*")]), req, named_role, ACCOUNT)
    # Naming the session ARN: not limited by the boundary.
    session = [{**named_role[0], "Principal": {"AWS": role([]).session_arn()}}]
    assert evaluate(role([], boundary=[allow("ec2:*")]), req, session, ACCOUNT)
    # Naming the account delegates to the account's identity policies.
    account = [{**named_role[0], "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]
    assert not evaluate(role([]), req, account, ACCOUNT)
    assert evaluate(role([allow("s3:GetObject")]), req, account, ACCOUNT)
    # A Deny for everyone in the bucket policy wins over the identity policy's Allow.
    assert not evaluate(role([allow("s3:*")]), req,
                        [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                          "Resource": "arn:aws:s3:::b/*"}], ACCOUNT)
    # An Allow for everyone ({"AWS": "*"}, in a list too) needs no identity policy.
    for anyone in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
        assert evaluate(role([]), req, [{**named_role[0], "Principal": anyone}], ACCOUNT)


def test_across_accounts_both_sides_must_allow():
    other = "arn:aws:iam::444455556666:role/deployer"
    req = Request("s3:PutObject", "arn:aws:s3:::b/k")
    bucket = [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
               "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
               "Condition": {"ArnEquals": {"aws:PrincipalArn": other}}}]
    assert evaluate(role([allow("s3:PutObject")], arn=other), req, bucket, ACCOUNT)
    assert not evaluate(role([], arn=other), req, bucket, ACCOUNT)          # no identity allow
    assert not evaluate(role([allow("s3:PutObject")], arn=other), req, [], ACCOUNT)
    intruder = "arn:aws:iam::444455556666:role/other"                       # condition fails
    assert not evaluate(role([allow("s3:PutObject")], arn=intruder), req, bucket, ACCOUNT)


# ------------------------------------------------------- Action, Resource and their Not --
def test_actions_match_case_insensitively_with_wildcards():
    s = allow(["iam:Put*Policy", "s3:Get?bject"])
    assert statement_applies(s, Request("IAM:putrolepolicy", "*"))
    assert statement_applies(s, Request("s3:GetObject", "*"))
    assert not statement_applies(s, Request("s3:GetObjectAcl", "*"))
    assert not statement_applies(s, Request("iam:PutRolePermissionsBoundary", "*"))


def test_resources_match_case_sensitively_with_wildcards():
    s = allow("s3:GetObject", "arn:aws:s3:::Bucket-?/*")
    assert statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::Bucket-1/a/b"))
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::bucket-1/a"))
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::Bucket-12/a"))
    # Regular-expression characters in an ARN are literal.
    s = allow("s3:GetObject", "arn:aws:s3:::b/a+b(1).txt")
    assert statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/a+b(1).txt"))
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/aab1.txt"))


def test_a_resource_wildcard_stays_in_its_arn_segment_unless_it_ends_it():
    # "You can use wildcard characters (* and ?) within the individual segments of an ARN
    # (the parts separated by colons) ... If the * wildcard is the last character of a
    # resource ARN segment, it can expand to match beyond the colon boundaries."
    group = "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/sagemaker/Endpoints/app"
    assert not statement_applies(allow("logs:*", "arn:aws:logs:eu-west-1:111122223333:*/app"),
                                 Request("logs:CreateLogGroup", group))
    assert statement_applies(allow("logs:*", "arn:aws:logs:eu-west-1:111122223333:*"),
                             Request("logs:CreateLogGroup", group))
    assert statement_applies(allow("logs:*", f"{group}:*"),
                             Request("logs:PutLogEvents", f"{group}:log-stream:a/b"))
    alarm = ("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:TargetTracking-service/app/"
             "app-AlarmHigh-d4f0770c")
    assert not statement_applies(
        allow("cloudwatch:*", "arn:aws:cloudwatch:eu-west-1:111122223333:*/app-*"),
        Request("cloudwatch:PutMetricAlarm", alarm))
    assert statement_applies(
        allow("cloudwatch:*", "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:*/app-*"),
        Request("cloudwatch:PutMetricAlarm", alarm))
    # An S3 key may hold colons: the trailing "*" reaches them; "?" is one character of a
    # segment, never the colon between two.
    assert statement_applies(allow("s3:GetObject", "arn:aws:s3:::b/*"),
                             Request("s3:GetObject", "arn:aws:s3:::b/a:b:c"))
    assert not statement_applies(allow("sns:Publish", "arn:aws:sns:eu-west-1:1:a?b"),
                                 Request("sns:Publish", "arn:aws:sns:eu-west-1:1:a:b"))


def test_a_wildcard_in_the_service_segment_matches_nothing():
    # "You can't use a wildcard in the service segment that identifies the AWS product."
    # (IAM JSON policy elements: Resource): such a pattern grants nothing here.
    queue = "arn:aws:sqs:eu-west-1:111122223333:app-jobs"
    for pattern in ("arn:aws:*:eu-west-1:111122223333:app-*", "arn:aws:sq?:eu-west-1:*",
                    "arn:aws:s*:*"):
        assert service_wildcard(pattern)
        assert not statement_applies(allow("sqs:*", pattern), Request("sqs:SendMessage", queue))
    # ... while the same pattern with the service named matches, and "*" alone is any resource.
    assert not service_wildcard("arn:aws:sqs:*:*:app-*")
    assert statement_applies(allow("sqs:*", "arn:aws:sqs:*:*:app-*"),
                             Request("sqs:SendMessage", queue))
    assert statement_applies(allow("sqs:*", "*"), Request("sqs:SendMessage", queue))


def test_not_action_and_not_resource():
    # The User Guide's NotAction example: everything but IAM.
    s = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not statement_applies(s, Request("iam:CreateUser", "*"))
    # NotResource in a Deny: everything except the listed resources is denied.
    d = {"Effect": "Deny", "Action": "s3:*", "NotResource": ["arn:aws:s3:::mine/*"]}
    assert statement_applies(d, Request("s3:GetObject", "arn:aws:s3:::theirs/k"))
    assert not statement_applies(d, Request("s3:GetObject", "arn:aws:s3:::mine/k"))
    # An action without resource-level permissions is authorised against "*": a Deny with
    # NotResource applies to it.
    assert statement_applies(d, Request("s3:ListAllMyBuckets", "*"))


def test_policy_variables_in_resources():
    # "arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/*"
    s = allow("s3:*", "arn:aws:s3:::b/${aws:username}/*")
    assert statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/alice/x",
                                        {"aws:username": "alice"}))
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/bob/x",
                                            {"aws:username": "alice"}))
    # A role session has no aws:username: the resource then matches nothing.
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/alice/x"))
    # ${*} is a literal asterisk.
    s = allow("s3:*", "arn:aws:s3:::b/${*}")
    assert statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/*"))
    assert not statement_applies(s, Request("s3:GetObject", "arn:aws:s3:::b/x"))


# -------------------------------------------------------------------------- conditions --
@pytest.mark.parametrize("operator, expected", [
    # "If the key that you specify in a policy condition is not present in the request
    # context, the values do not match and the condition is false. If the policy condition
    # requires that the key is not matched, such as StringNotLike or ArnNotLike, and the
    # right key is not present, the condition is true."
    ("StringEquals", False), ("StringLike", False), ("ArnEquals", False), ("ArnLike", False),
    ("Bool", False), ("NumericLessThan", False),
    ("StringNotEquals", True), ("StringNotLike", True), ("ArnNotEquals", True),
    ("ArnNotLike", True),
    # "...IfExists: if the key is not present, evaluate the condition element as true"
    ("StringEqualsIfExists", True), ("ArnLikeIfExists", True), ("StringNotEqualsIfExists", True),
    # Set qualifiers on a missing key: ForAllValues true, ForAnyValue false.
    ("ForAllValues:StringEquals", True), ("ForAnyValue:StringEquals", False),
])
def test_missing_keys_behave_as_in_iam(operator, expected):
    assert condition_holds(operator, "aws:ResourceTag/stack", "dev", {}) is expected


def test_null_tests_presence():
    assert condition_holds("Null", "aws:RequestTag/stack", "true", {})
    assert not condition_holds("Null", "aws:RequestTag/stack", "true",
                               {"aws:RequestTag/stack": "dev"})
    assert condition_holds("Null", "aws:RequestTag/stack", "false",
                           {"aws:RequestTag/stack": "dev"})


def test_several_keys_and_operators_all_hold_several_values_are_alternatives():
    condition = {"StringEquals": {"aws:ResourceTag/project": "ml-app",
                                  "aws:ResourceTag/stack": ["dev", "qa"]}}
    s = allow("ec2:DeleteVpc", Condition=condition)
    both = {"aws:ResourceTag/project": "ml-app", "aws:ResourceTag/stack": "qa"}
    assert statement_applies(s, Request("ec2:DeleteVpc", "*", both))
    assert not statement_applies(s, Request("ec2:DeleteVpc", "*",
                                            {"aws:ResourceTag/stack": "dev"}))
    # A negated operator with several values holds when the request matches none of them.
    assert condition_holds("StringNotEquals", "k", ["a", "b"], {"k": "c"})
    assert not condition_holds("StringNotEquals", "k", ["a", "b"], {"k": "b"})


def test_keys_are_case_insensitive_values_are_not():
    assert condition_holds("StringEquals", "AWS:ResourceTag/Stack", "dev",
                           {"aws:resourcetag/stack": "dev"})
    assert not condition_holds("StringEquals", "aws:ResourceTag/stack", "dev",
                               {"aws:ResourceTag/stack": "Dev"})
    assert condition_holds("StringEqualsIgnoreCase", "aws:ResourceTag/stack", "dev",
                           {"aws:ResourceTag/stack": "Dev"})


def test_arn_operators_match_each_part_separately():
    arn = "arn:aws:iam::111122223333:role/a/b"
    assert condition_holds("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:role/a/*",
                           {"aws:PrincipalArn": arn})
    assert not condition_holds("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:role/b/*",
                               {"aws:PrincipalArn": arn})
    assert condition_holds("ArnNotEquals", "iam:PermissionsBoundary",
                           "arn:aws:iam::111122223333:policy/x", {"iam:PermissionsBoundary":
                                                                  "arn:aws:iam::111122223333:policy/y"})


def test_multivalued_keys_need_a_set_qualifier():
    names = {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["a.example.com",
                                                                      "_x.a.example.com"]}
    # The User Guide: ForAllValues is true when every request value matches a policy value.
    assert condition_holds("ForAllValues:StringLike",
                           "route53:ChangeResourceRecordSetsNormalizedRecordNames",
                           ["a.example.com", "*.a.example.com"], names)
    assert not condition_holds("ForAllValues:StringLike",
                               "route53:ChangeResourceRecordSetsNormalizedRecordNames",
                               ["a.example.com"], names)
    assert condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["stack"],
                           {"aws:TagKeys": ["owner", "stack"]})
    assert condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["stack"],
                           {"aws:TagKeys": []})                     # empty set: true
    with pytest.raises(ValueError, match="ForAllValues or ForAnyValue"):
        condition_holds("StringEquals", "aws:TagKeys", "stack", {"aws:TagKeys": ["a", "b"]})


def test_policy_variables_in_condition_values():
    assert condition_holds("StringEquals", "sts:RoleSessionName", "${aws:username}",
                           {"sts:RoleSessionName": "alice", "aws:username": "alice"})
    assert not condition_holds("StringEquals", "sts:RoleSessionName", "${aws:username}",
                               {"sts:RoleSessionName": "alice"})


def test_bool_and_numeric_operators_compare_present_values():
    # The program's own uses: aws:SecureTransport (deny_insecure_transport),
    # kms:GrantIsForAWSResource (a JSON true in the policy), s3:TlsVersion (storage.py).
    https, http = {"aws:SecureTransport": "true"}, {"aws:SecureTransport": "false"}
    assert condition_holds("Bool", "aws:SecureTransport", "false", http)
    assert not condition_holds("Bool", "aws:SecureTransport", "false", https)
    assert condition_holds("Bool", "kms:GrantIsForAWSResource", True,
                           {"kms:GrantIsForAWSResource": "true"})
    assert not condition_holds("Bool", "kms:GrantIsForAWSResource", "true",
                               {"kms:GrantIsForAWSResource": "false"})
    for version, below in (("1.0", True), ("1.2", False), ("1.3", False)):
        assert condition_holds("NumericLessThan", "s3:TlsVersion", "1.2",
                               {"s3:TlsVersion": version}) is below, version
    assert condition_holds("NumericGreaterThanEquals", "k", "2", {"k": "2"})
    assert not condition_holds("NumericEquals", "k", "2", {"k": "3"})
    assert condition_holds("NumericNotEquals", "k", "2", {"k": "3"})
    # End to end: a bucket policy's Deny for requests without TLS wins over the role's Allow.
    bucket = [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
               "Resource": "arn:aws:s3:::b/*",
               "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    reader = role([allow("s3:GetObject")])
    assert evaluate(reader, Request("s3:GetObject", "arn:aws:s3:::b/k", https), bucket, ACCOUNT)
    assert not evaluate(reader, Request("s3:GetObject", "arn:aws:s3:::b/k", http), bucket,
                        ACCOUNT)


def test_an_arn_operator_never_matches_what_is_not_an_arn():
    assert not condition_holds("ArnLike", "aws:SourceArn", "arn:aws:s3:::*",
                               {"aws:SourceArn": "b"})
    assert condition_holds("ArnNotLike", "aws:SourceArn", "arn:aws:s3:::*",
                           {"aws:SourceArn": "b"})


def test_unknown_operators_fail_loudly():
    with pytest.raises(NotImplementedError):
        condition_holds("IpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:SourceIp": "10.1.1.1"})
    with pytest.raises(NotImplementedError):
        condition_holds("ForAllValues:Null", "aws:TagKeys", "true", {})
    with pytest.raises(NotImplementedError):
        condition_holds("ForEveryValue:StringEquals", "aws:TagKeys", "a", {"aws:TagKeys": ["a"]})
    with pytest.raises(NotImplementedError):
        evaluate(role([]), Request("s3:GetObject", "arn:aws:s3:::b/k"),
                 [{"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "s3:*",
                   "Resource": "*"}], ACCOUNT)
    with pytest.raises(ValueError, match="without Action"):
        statement_applies({"Effect": "Allow", "Resource": "*"}, Request("s3:GetObject", "*"))


# ---------------------------------------------------------------------- trust policies --
def test_trust_policies_decide_who_can_assume():
    github = "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"
    trust = [{"Effect": "Allow", "Principal": {"Federated": github},
              "Action": "sts:AssumeRoleWithWebIdentity",
              "Condition": {"StringEquals": {
                  "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                  "token.actions.githubusercontent.com:sub":
                      "repo:acme/app:environment:dev"}}}]
    ok = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
          "token.actions.githubusercontent.com:sub": "repo:acme/app:environment:dev"}
    assert trust_allows(trust, action="sts:AssumeRoleWithWebIdentity", context=ok,
                        federated=github)
    for sub in ("repo:acme/app:pull_request", "repo:acme/app:environment:prod",
                "repo:evil/app:environment:dev"):
        assert not trust_allows(trust, action="sts:AssumeRoleWithWebIdentity",
                                context={**ok, "token.actions.githubusercontent.com:sub": sub},
                                federated=github)
    service = [{"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]
    assert trust_allows(service, service="codebuild.amazonaws.com",
                        context={"aws:SourceAccount": ACCOUNT})
    assert not trust_allows(service, service="codebuild.amazonaws.com",
                            context={"aws:SourceAccount": "999999999999"})
    assert not trust_allows(service, service="lambda.amazonaws.com",
                            context={"aws:SourceAccount": ACCOUNT})
