"""The stack's KMS key (infra/encryption.py): rotated, used everywhere, scoped key policy."""

from __future__ import annotations

from tests.infra.harness import config_value, one, policy_documents, resources_of_type, target_of

# Log groups outside /ml-app/<stack>/ whose names a service fixes (and the key policy names).
FIXED_LOG_GROUPS = {"ecs": ["aws-waf-logs-ml-app-{stack}"],
                    "sagemaker": ["aws-waf-logs-ml-app-{stack}",
                                  "/aws/sagemaker/Endpoints/ml-app-{stack}"],
                    "lambda": ["aws-waf-logs-ml-app-{stack}"]}


def _fixed_log_groups(graph) -> list[str]:
    return [g.format(stack=graph.stack) for g in FIXED_LOG_GROUPS[target_of(graph)]]


def test_one_rotating_key_encrypts_logs_topic_secret_repository_and_bucket(any_graph):
    key = one(any_graph, "aws:kms/key:Key")
    key_arn = key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    log_groups = resources_of_type(any_graph, "aws:cloudwatch/logGroup:LogGroup")
    assert log_groups
    retention = int(config_value(any_graph, "logRetentionDays"))
    for group in log_groups:
        assert group.inputs["kmsKeyId"] == key_arn, group.label
        assert group.inputs["retentionInDays"] == retention, group.label
        # WAF requires its log group to be named aws-waf-logs-..., SageMaker names its own.
        assert group.inputs["name"].startswith(f"/ml-app/{any_graph.stack}/") or \
            group.inputs["name"] in _fixed_log_groups(any_graph), group.label
    assert one(any_graph, "aws:sns/topic:Topic").inputs["kmsMasterKeyId"] == key_arn
    for secret in resources_of_type(any_graph, "aws:secretsmanager/secret:Secret"):
        assert secret.inputs["kmsKeyId"] == key_arn
    repo = one(any_graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key_arn}]


def test_key_policy_lets_logs_use_the_key_only_for_this_stacks_log_groups(any_graph):
    [doc] = policy_documents(any_graph, "key")
    by_sid = {s["Sid"]: s for s in doc.statements}
    logs = by_sid["CloudWatchLogsForThisStacksLogGroups"]
    assert logs["Principal"] == {"Service": f"logs.{any_graph.config['aws:region']}.amazonaws.com"}
    context = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert [c.split(":log-group:")[1] for c in context] == [
        f"/ml-app/{any_graph.stack}/*", *_fixed_log_groups(any_graph)]
    root = by_sid["EnableIamPoliciesOfThisAccount"]
    assert root["Principal"]["AWS"].endswith(":root")


def test_every_service_principal_in_the_key_policy_acts_for_this_account_only(any_graph):
    """Confused deputy: a service principal in the key policy is pinned to this account by
    aws:SourceAccount (and aws:SourceArn, the stack's sources), or, for CloudWatch Logs, by
    the encryption context (the log group's ARN, which holds the account)."""
    [doc] = policy_documents(any_graph, "key")
    account = doc.resource.outputs["arn"].split(":")[4]
    services = [s for s in doc.statements if "Service" in s["Principal"]]
    assert len(services) >= 3
    for s in services:
        condition = s["Condition"]
        if s["Principal"]["Service"].startswith("logs."):
            assert all(f":{account}:log-group:" in arn for arn in
                       condition["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
            continue
        assert condition["StringEquals"]["aws:SourceAccount"] == account, s["Sid"]
        assert f":{account}:" in condition["ArnLike"]["aws:SourceArn"], s["Sid"]
