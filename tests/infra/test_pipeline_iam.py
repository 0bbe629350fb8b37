"""The delivery pipeline's IAM (infra/pipeline_iam.py): the deploy role within the stack
(by name, by both tags, in IAM the service roles only and under the boundary) and never on
the pipeline itself, read-only test and preview roles, the GitHub OIDC trust pinned to the
stack's environment, the roles' trust, the approvers' policy, every Resource * explained,
parliament with a commented allow-list, AWS's size limits. Whether any of it adds up to an
escalation is test_escalation.py."""

from __future__ import annotations

import json

from infra import pipeline_iam
from infra.boundary import CREATE_WITH_STACK_TAG, SERVICE_ROLES, Target
from tests.infra.harness import (ROOT, VARIANT, AllowList, Graph, allowed_actions, as_list,
                                 boundary_arn, config_value, json_input, one, policy_documents,
                                 policy_key, prefix, principals, resources_of_type, role_named,
                                 role_statements, target_of, unexpected_findings, used_entries,
                                 within, PIPELINE)
from tests.infra.iam_eval import Request, condition_holds, evaluate, resource_matches


def test_the_deploy_role_creates_only_service_roles_with_the_boundary(any_graph):
    statements = role_statements(any_graph, role_named(any_graph, "deploy-build"))
    arn = boundary_arn(any_graph)
    account = arn.split(":")[4]
    # The kinds of service role of the stack's target, and no other target's.
    kinds = Target(target_of(any_graph)).service_roles
    assert set(kinds) < set(SERVICE_ROLES)
    service_roles = sorted(f"arn:aws:iam::{account}:role/ml-app/{any_graph.stack}/service/{k}/*"
                           for k in kinds)
    granting = [s for s in statements if {"iam:CreateRole", "iam:PutRolePolicy",
                                          "iam:AttachRolePolicy"} & set(as_list(s["Action"]))]
    assert len(granting) == 2, "create/put, and attach with its own condition"
    for s in granting:
        assert s["Condition"]["ArnEquals"] == {"iam:PermissionsBoundary": arn}, s["Sid"]
        assert sorted(as_list(s["Resource"])) == service_roles
    [attach] = [s for s in granting if "iam:AttachRolePolicy" in as_list(s["Action"])]
    assert attach["Condition"]["ArnLike"] == {
        "iam:PolicyARN": f"arn:aws:iam::{account}:policy/ml-app/{any_graph.stack}/service/*"}
    # No IAM action anywhere on Resource "*", nothing on the pipeline's roles, and PassRole
    # one statement per kind of service role, each to its own service.
    for s in statements:
        if any(a.startswith("iam:") and not a.startswith(("iam:Get", "iam:List"))
               for a in as_list(s["Action"])):
            assert "*" not in as_list(s["Resource"]), s.get("Sid")
            assert not any(f":role/{prefix(any_graph)}-" in r for r in as_list(s["Resource"]))
    passing = {s["Resource"]: s["Condition"]["StringEquals"]["iam:PassedToService"]
               for s in statements if "iam:PassRole" in as_list(s["Action"])}
    assert passing == {f"arn:aws:iam::{account}:role/ml-app/{any_graph.stack}/service/{k}/*": v
                       for k, v in kinds.items()}


# Resources the deploy role manages by name: each one's ARN must fall under a pattern of the
# deploy policies (the names come from Pulumi's auto-naming of "<prefix>-..." resources).
NAMED_TYPES = ("aws:s3/bucket:Bucket", "aws:ecr/repository:Repository",
               "aws:cloudwatch/logGroup:LogGroup", "aws:sns/topic:Topic",
               "aws:secretsmanager/secret:Secret", "aws:lb/loadBalancer:LoadBalancer",
               "aws:lb/targetGroup:TargetGroup", "aws:ecs/cluster:Cluster",
               "aws:ecs/taskDefinition:TaskDefinition", "aws:iam/role:Role",
               "aws:iam/policy:Policy", "aws:cloudwatch/metricAlarm:MetricAlarm",
               "aws:sagemaker/model:Model",
               "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
               "aws:sagemaker/endpoint:Endpoint", "aws:lambda/function:Function",
               "aws:lambda/alias:Alias")
# Built by an administrator (docs/pipeline.md, bootstrap): the deploy role never writes them.
ADMIN_COMPONENTS = (PIPELINE, "ml-app:cicd:PermissionsBoundary")


def _admin_managed(graph: Graph, resource) -> bool:
    return any(a.type in ADMIN_COMPONENTS for a in graph.ancestors(resource))


def test_the_deploy_role_reaches_every_named_resource_of_the_stack(any_graph):
    patterns = [r for s in role_statements(any_graph, role_named(any_graph, "deploy-build"))
                if s["Effect"] == "Allow" and s.get("Sid") not in TAG_SCOPED
                for r in as_list(s["Resource"]) if r != "*"]
    checked = set()
    for r in resources_of_type(any_graph, *NAMED_TYPES):
        if _admin_managed(any_graph, r):
            continue
        arn = r.outputs["arn"]
        assert resource_matches(patterns, arn, {}), \
            f"{r.label}: {arn} is outside every name pattern of the deploy role"
        checked.add(r.type)
    # Every kind the stack's target deploys (the endpoint's or the function's included).
    assert len(checked) >= 7, checked
    assert {"ecs": "aws:ecs/cluster:Cluster", "sagemaker": "aws:sagemaker/endpoint:Endpoint",
            "lambda": "aws:lambda/function:Function"}[target_of(any_graph)] in checked


# What changing each administrator-managed resource takes (an example write per type).
ADMIN_WRITES = {
    "aws:iam/role:Role": "iam:PutRolePolicy", "aws:iam/policy:Policy": "iam:CreatePolicyVersion",
    "aws:codebuild/project:Project": "codebuild:UpdateProject",
    "aws:codepipeline/pipeline:Pipeline": "codepipeline:UpdatePipeline",
    "aws:s3/bucket:Bucket": "s3:PutBucketPolicy",
}


def test_the_deploy_role_cannot_change_the_pipeline_that_runs_it(any_graph):
    """The pipeline, its roles, policies, builds and buckets, and the boundary: an
    administrator's (the boundary's Deny statements, evaluated)."""
    deploy = principals(any_graph)[role_named(any_graph, "deploy-build").outputs["arn"]]
    checked = 0
    for r in any_graph.resources:
        if r.type in ADMIN_WRITES and _admin_managed(any_graph, r):
            decision = evaluate(deploy, Request(ADMIN_WRITES[r.type], r.outputs["arn"], {
                "iam:PermissionsBoundary": boundary_arn(any_graph)}))
            assert not decision, f"{r.label}: {decision.reason}"
            checked += 1
    assert checked >= 12, checked


def test_the_deploy_role_may_write_the_stacks_dns_records_and_no_others(graphs):
    records = resources_of_type(graphs["prod"], "aws:route53/record:Record")
    assert len(records) == 2, [r.name for r in records]   # alias + certificate validation
    zone = config_value(graphs["prod"], "hostedZoneId")
    [dns] = [s for s in role_statements(graphs["prod"], role_named(graphs["prod"], "deploy-build"))
             if "route53:ChangeResourceRecordSets" in as_list(s["Action"])]
    assert dns["Resource"] == f"arn:aws:route53:::hostedzone/{zone}"
    key = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
    names = dns["Condition"]["ForAllValues:StringLike"][key]
    assert names == [config_value(graphs["prod"], "domainName"), f"*.{config_value(graphs['prod'], 'domainName')}"]
    for r in records:
        assert r.inputs["zoneId"] == zone
        normalized = r.inputs["name"].lower().rstrip(".")
        assert condition_holds("ForAllValues:StringLike", key, names, {key: [normalized]}), \
            r.inputs["name"]
    # Stacks without a hosted zone (staging's DNS is managed elsewhere) touch no zone.
    for stack in ("dev", "staging"):
        actions = allowed_actions(role_statements(graphs[stack],
                                                  role_named(graphs[stack], "deploy-build")))
        assert not {a for a in actions if a.startswith("route53:Change")}, stack


def test_only_the_pipeline_role_uses_an_existing_connection(variant, graphs):
    """The deploy role never passes a connection (it does not change the pipeline); the
    pipeline's role uses the configured one; a CodeConnections ARN takes that service's
    action."""
    for graph in (variant, graphs["dev"]):
        actions = allowed_actions(role_statements(graph, role_named(graph, "deploy-build")))
        assert not {a for a in actions if "Connection" in a
                    and not a.split(":")[1].startswith(("Get", "List"))}, actions
    [use] = [s for s in role_statements(variant, role_named(variant, "pipeline"))
             if s.get("Sid") == "GithubSource"]
    assert use["Resource"] == VARIANT["codestarConnectionArn"]
    arn = VARIANT["codestarConnectionArn"].replace(":codestar-connections:", ":codeconnections:")
    [codeconnections] = pipeline_iam.github_source(arn, arn)
    assert codeconnections["Action"] == "codeconnections:UseConnection"


TAG_SCOPED = {"CreateOnlyWithStackTag": "aws:RequestTag/",
              "ChangeOnlyStackTaggedResources": "aws:ResourceTag/",
              "KeyGrantsForAwsServices": "aws:ResourceTag/",
              "UseTheStackKeyThroughItsServices": "aws:ResourceTag/"}


STAR_WITHOUT_CONDITION = {  # Sid -> why "*" (each also commented in infra/pipeline_iam.py)
    "ReadStackConfiguration": "read-only metadata calls",
    "EcrLogin": "ecr:GetAuthorizationToken has no resource-level permissions",
    "GenerateApiKey": "secretsmanager:GetRandomPassword has no resource-level permissions",
    "NoResourceLevelPermissions": "ecs:DeregisterTaskDefinition, sns:Unsubscribe",
    "WafLogDelivery": "WAF's log delivery: account-level CloudWatch Logs calls",
}


def test_resource_star_only_where_scoped_by_tag_or_unavoidable(any_graph):
    # EC2 (the network) and WAF's log delivery are ECS's.
    on_ecs = target_of(any_graph) == "ecs"
    seen = set()
    for key in ("pipeline", "test-build", "preview-build", "deploy-build", "github-preview"):
        for s in role_statements(any_graph, role_named(any_graph, key)):
            if s["Effect"] != "Allow" or "*" not in as_list(s["Resource"]):
                continue
            sid = s.get("Sid")
            seen.add(sid)
            if sid in TAG_SCOPED:
                # Both tags, always together.
                tags = s["Condition"]["StringEquals"]
                assert tags[f"{TAG_SCOPED[sid]}stack"] == any_graph.stack, sid
                assert tags[f"{TAG_SCOPED[sid]}project"] == "ml-app", sid
            elif sid == "TagOnCreate":
                assert as_list(s["Action"]) == ["ec2:CreateTags"]
                assert s["Condition"]["StringEquals"]["ec2:CreateAction"]
            else:
                assert sid in STAR_WITHOUT_CONDITION, f"{key}: unexplained Resource * ({sid})"
            if sid == "NoResourceLevelPermissions":
                assert set(s["Action"]) == {"sns:Unsubscribe"} | (
                    {"ecs:DeregisterTaskDefinition"} if on_ecs else set())
    expected = set(TAG_SCOPED) | set(STAR_WITHOUT_CONDITION)
    assert seen == (expected | {"TagOnCreate"} if on_ecs else expected - {"WafLogDelivery"})


def test_every_resource_star_in_the_policy_source_is_commented():
    """Each "Resource": "*" (a statement's, or a ("*",) row of a table) has a comment saying
    why between it and the end of the previous statement or row."""
    stars = 0
    for module in ("pipeline_iam.py", "boundary.py"):
        source = (ROOT / "infra" / module).read_text().splitlines()
        for n, line in enumerate(source):
            if not (line.strip().startswith('"Resource": "*"') or '("*",)' in line):
                continue
            stars += 1
            start = n - 1
            while start > 0 and not source[start].rstrip().endswith(("},", "),", "[", "(")):
                start -= 1
            assert any(s.strip().startswith("#") for s in source[start + 1:n]), \
                f"infra/{module}:{n + 1}: Resource \"*\" without a comment saying why"
    assert stars >= 9


# What each invoke of the program needs in IAM (None: nothing). A preview runs every invoke,
# so the read-only roles must allow them, on "*" where AWS has no resource-level permission.
INVOKE_ACTIONS = {
    "aws:index/getCallerIdentity:getCallerIdentity": None,   # sts: needs no permission
    "aws:index/getPartition:getPartition": None,             # computed by the provider
    "aws:index/getAvailabilityZones:getAvailabilityZones": "ec2:DescribeAvailabilityZones",
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": "ecr:GetAuthorizationToken",
    "aws:ecr/getImages:getImages": "ecr:ListImages",
    "aws:secretsmanager/getRandomPassword:getRandomPassword": "secretsmanager:GetRandomPassword",
}


# Of those, the ones outside READ_ACTIONS (their statements are not metadata reads).
INVOKE_ONLY = {"ecr:GetAuthorizationToken", "secretsmanager:GetRandomPassword"}


def test_every_role_that_runs_the_program_may_make_its_invokes(any_graph):
    tokens = {i.token for i in any_graph.invokes}
    assert tokens, "no invokes recorded"
    unmapped = tokens - set(INVOKE_ACTIONS)
    assert not unmapped, f"add the IAM action of {unmapped} to INVOKE_ACTIONS"
    needed = {INVOKE_ACTIONS[t] for t in tokens} - {None}
    # The API key exists on ECS only (SageMaker and Lambda callers sign with IAM).
    assert ("secretsmanager:GetRandomPassword" in needed) == (
        target_of(any_graph) == "ecs" and config_value(any_graph, "apiKeyEnabled") == "true")
    for key in ("preview-build", "github-preview", "deploy-build"):
        on_star = {a for s in role_statements(any_graph, role_named(any_graph, key))
                   if s["Effect"] == "Allow" and "*" in as_list(s["Resource"])
                   and not s.get("Condition") for a in as_list(s["Action"])}
        assert needed <= on_star, f"{key} may not make the invokes {needed - on_star}"


def test_test_and_preview_roles_are_read_only_plus_logs_and_artifacts(any_graph):
    read = set(pipeline_iam.READ_ACTIONS) | set(pipeline_iam.READ_IAM_ACTIONS) | INVOKE_ONLY
    basics = {"logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject",
              "s3:GetObjectVersion", "kms:Decrypt", "kms:GenerateDataKey"}
    reports = {"codebuild:CreateReportGroup", "codebuild:CreateReport",
               "codebuild:UpdateReport", "codebuild:BatchPutTestCases"}
    test = allowed_actions(role_statements(any_graph, role_named(any_graph, "test-build")))
    assert test == basics | reports, test ^ (basics | reports)
    preview = role_statements(any_graph, role_named(any_graph, "preview-build"))
    assert allowed_actions(preview) <= read | basics | {"s3:PutObject",
                                                         "secretsmanager:GetSecretValue"}
    artifacts = next(s for s in preview if s.get("Sid") == "PipelineArtifacts")
    [put_target] = {s["Resource"] for s in preview if "s3:PutObject" in as_list(s["Action"])}
    assert put_target == artifacts["Resource"], "preview writes only its artifact"
    bucket = next(b for b in within(any_graph, PIPELINE, "aws:s3/bucket:Bucket")
                  if "-artifacts-" in b.outputs["arn"]).outputs["arn"]
    assert artifacts["Resource"] == f"{bucket}/*"
    [token] = [s for s in preview if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert token["Resource"].startswith("arn:aws:secretsmanager:")
    assert token["Resource"].endswith(f":secret:{config_value(any_graph, 'pulumiAccessTokenSecret')}-??????")


def test_the_s3_backend_is_read_by_previews_and_written_by_the_deploy_only(variant):
    graph, key = variant, VARIANT["pulumiSecretsKeyArn"]
    preview = role_statements(graph, role_named(graph, "preview-build"))
    deploy = role_statements(graph, role_named(graph, "deploy-build"))
    state = "arn:aws:s3:::acme-pulumi-state/.pulumi/*"
    [p_obj] = [s for s in preview if s.get("Sid") == "PulumiStateObjects"]
    [d_obj] = [s for s in deploy if s.get("Sid") == "PulumiStateObjects"]
    assert p_obj["Resource"] == d_obj["Resource"] == state
    assert as_list(p_obj["Action"]) == ["s3:GetObject"]
    assert {"s3:PutObject", "s3:DeleteObject"} <= set(as_list(d_obj["Action"]))
    [p_kms] = [s for s in preview if s.get("Sid") == "PulumiSecretsProvider"]
    assert as_list(p_kms["Action"]) == ["kms:Decrypt"] and p_kms["Resource"] == key
    github = role_statements(graph, role_named(graph, "github-preview"))
    assert any(s.get("Sid") == "PulumiStateObjects" for s in github)
    assert "s3:PutObject" not in {a for s in github if s.get("Sid", "").startswith("Pulumi")
                                  for a in as_list(s["Action"])}


def test_only_this_repositorys_environment_can_assume_the_preview_role(graph):
    r = role_named(graph, "github-preview")
    [s] = json_input(r, "assumeRolePolicy")["Statement"]
    provider = one(graph, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", PIPELINE)
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert s["Effect"] == "Allow" and s["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert s["Principal"] == {"Federated": provider.outputs["arn"]}
    assert provider.outputs["arn"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    assert s["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub":
            f"repo:{config_value(graph, 'githubRepository')}:environment:{graph.stack}"}}
    assert graph.exports["githubPreviewRoleArn"] == r.outputs["arn"]
    assert r.outputs["arn"].endswith(f":role/{prefix(graph)}-github-preview")
    # Read-only: the shared read policy, nothing that writes.
    actions = allowed_actions(role_statements(graph, r))
    assert actions <= set(pipeline_iam.READ_ACTIONS) | set(pipeline_iam.READ_IAM_ACTIONS) | \
        INVOKE_ONLY


def test_an_existing_oidc_provider_is_trusted_instead_of_creating_one(variant):
    graph, arn = variant, VARIANT["githubOidcProviderArn"]
    assert not within(graph, PIPELINE, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    [s] = json_input(role_named(graph, "github-preview"), "assumeRolePolicy")["Statement"]
    assert s["Principal"] == {"Federated": arn}


def test_service_roles_trust_only_their_service_for_this_pipeline(any_graph):
    region, account = any_graph.config["aws:region"], boundary_arn(any_graph).split(":")[4]
    expected = {"pipeline": ("codepipeline.amazonaws.com",
                             f"arn:aws:codepipeline:{region}:{account}:{prefix(any_graph)}")}
    for kind in ("test", "preview", "deploy"):
        expected[f"{kind}-build"] = ("codebuild.amazonaws.com", f"arn:aws:codebuild:{region}:"
                                     f"{account}:project/{prefix(any_graph)}-{kind}")
    for key, (service, source) in expected.items():
        [s] = json_input(role_named(any_graph, key), "assumeRolePolicy")["Statement"]
        assert s["Principal"] == {"Service": service}
        assert s["Condition"]["StringEquals"]["aws:SourceAccount"] == account
        assert s["Condition"]["ArnLike"]["aws:SourceArn"] == source


# Parliament findings accepted for the pipeline's policies, each with its reason (the
# harness's AllowList format; test_iam.py has the service's).
ALLOWED_FINDINGS: AllowList = {
    ("read-stack", "RESOURCE_STAR"): (
        {a.lower() for a in pipeline_iam.READ_ACTIONS},
        "read-only metadata calls; many have no resource-level permissions and a preview "
        "reads resources whose ARNs do not exist yet"),
    ("read-stack", "CREDENTIALS_EXPOSURE"): (
        {"ecr:getauthorizationtoken"},
        "the program logs in to ECR (image push) even in a preview; AWS requires Resource *"),
    ("deploy-tagged", "RESOURCE_STAR"): (
        {a.lower() for a in [*CREATE_WITH_STACK_TAG, *pipeline_iam.CHANGE_WITH_STACK_TAG,
                             "kms:CreateGrant", "kms:Decrypt", "kms:Encrypt",
                             "kms:GenerateDataKey"]},
        "created only with the project and stack tags in the request, changed only while it "
        "carries both; the key used only through S3, Secrets Manager and ECR"),
    ("deploy-tagged", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"kms:createkey", "kms:putkeypolicy", "kms:creategrant", "kms:retiregrant"},
        "the stack's own KMS key and its key policy are part of the stack (tag-scoped); "
        "grants only for AWS services (ECR, Secrets Manager) on that key"),
    ("deploy-tagged", "RESOURCE_MISMATCH"): (
        {"kms:createalias", "kms:deletealias", "kms:updatealias"},
        "alias actions are authorised on the alias (by name, here) and on the key "
        "(tag-scoped statement); parliament expects both in one statement"),
    ("deploy-named", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"s3:putbucketpolicy", "s3:deletebucketpolicy", "s3:putbucketpublicaccessblock",
         "sns:createtopic", "sns:settopicattributes", "secretsmanager:putresourcepolicy",
         "secretsmanager:deleteresourcepolicy", "ecr:setrepositorypolicy",
         "wafv2:createwebacl", "wafv2:updatewebacl", "wafv2:deletewebacl",
         "lambda:addpermission", "lambda:removepermission"},
        "resource policies of the stack's own bucket, topic, secret, repository and web ACL, "
        "all by the stack's name prefix; the function's, only for a NONE function URL "
        "(lambdaUrlAuth), which the provider opens to the public"),
    ("deploy-named", "PRIVILEGE_ESCALATION"): (
        {"lambda:updatefunctioncode"},
        "the deploy updates the stack's own function (<prefix>-function), whose code runs as "
        "the stack's Lambda service role under the boundary: test_escalation.py walks this "
        "path (rewrite the role, run code as it) and finds it capped"),
    ("deploy-named", "RESOURCE_MISMATCH"): (
        {"elasticloadbalancing:addlistenercertificates", "elasticloadbalancing:createrule",
         "elasticloadbalancing:deletelistener", "elasticloadbalancing:deleterule",
         "elasticloadbalancing:modifylistener", "elasticloadbalancing:modifylistenerattributes",
         "elasticloadbalancing:modifyrule", "elasticloadbalancing:removelistenercertificates",
         "elasticloadbalancing:setwebacl"},
        "parliament's ELBv2 data lists only the network-LB listener form (listener/net/...); "
        "this stack's ALB listener and rule ARNs (listener/app/...) are the ones AWS uses"),
    ("deploy-iam", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        {"iam:attachrolepolicy", "iam:createpolicy", "iam:createpolicyversion",
         "iam:createrole", "iam:createservicelinkedrole", "iam:deletepolicy",
         "iam:deletepolicyversion", "iam:deleterole", "iam:deleterolepolicy",
         "iam:detachrolepolicy", "iam:passrole", "iam:putrolepermissionsboundary",
         "iam:putrolepolicy", "iam:updateassumerolepolicy", "iam:updaterole",
         "iam:updateroledescription"},
        "the deploy manages the stack's service roles and service policies only (by kind path), "
        "each role with the permissions boundary, each passed to its own service"),
    ("deploy-iam", "PRIVILEGE_ESCALATION"): (
        {"iam:createpolicyversion"},
        "on <prefix>-* policies only; the boundary denies editing itself and caps every "
        "role those policies can be attached to"),
}


# The boundary is a ceiling, not a grant: its service wildcards are the point. It is
# checked structurally and by evaluation in test_boundary.py (test_the_ceiling_is_the_stack,
# test_the_invariants_are_deny_statements) and walked in test_escalation.py.
NOT_LINTED = ("permissions-boundary",)


def _pipeline_policies(graph: Graph):
    docs = [d for d in policy_documents(graph, "identity")
            if any(a.type.startswith("ml-app:cicd:") for a in graph.ancestors(d.resource))]
    assert len(docs) >= 9, [d.resource.name for d in docs]
    return docs


def test_every_pipeline_policy_passes_parliament(any_graph):
    problems = {}
    for doc in _pipeline_policies(any_graph):
        key = policy_key(any_graph, doc)
        if key not in NOT_LINTED:
            found = unexpected_findings(key, doc.text, ALLOWED_FINDINGS)
            if found:
                problems[doc.resource.name] = found
    assert not problems, json.dumps(problems, indent=1, default=str)


def test_pipeline_allow_list_has_no_stale_entries(graphs, target_graphs):
    used = set()
    for graph in [*graphs.values(), *target_graphs.values()]:
        for doc in _pipeline_policies(graph):
            if policy_key(graph, doc) not in NOT_LINTED:
                used |= used_entries(policy_key(graph, doc), doc.text, ALLOWED_FINDINGS)
    assert used == set(ALLOWED_FINDINGS), set(ALLOWED_FINDINGS) - used


def test_the_pipeline_lint_can_fail(graphs):
    graph = graphs["dev"]
    [doc] = [d for d in _pipeline_policies(graph) if d.resource.name.endswith("-test-build")]
    widened = json.loads(doc.text)
    widened["Statement"].append({"Effect": "Allow", "Action": ["iam:PassRole", "s3:PutObject"],
                                 "Resource": "*"})
    assert unexpected_findings("test-build", json.dumps(widened), ALLOWED_FINDINGS)


def test_policies_fit_aws_size_limits(any_graph):
    """Managed policies: 6,144 characters; inline policies of a role: 10,240 (whitespace
    not counted). Over the limit, `pulumi up` fails on the first deploy."""
    for doc in _pipeline_policies(any_graph):
        size = len("".join(doc.text.split()))
        limit = 6144 if doc.resource.type == "aws:iam/policy:Policy" else 10240
        assert size <= limit, f"{doc.resource.name}: {size} > {limit}"
