"""The stack's KMS key (infra/encryption.py): rotated, used everywhere, scoped key policy."""

from __future__ import annotations

from tests.infra.harness import config_value, one, policy_documents, resources_of_type


def test_one_rotating_key_encrypts_logs_topic_secret_repository_and_bucket(graph):
    key = one(graph, "aws:kms/key:Key")
    key_arn = key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    log_groups = resources_of_type(graph, "aws:cloudwatch/logGroup:LogGroup")
    assert log_groups
    retention = int(config_value(graph, "logRetentionDays"))
    for group in log_groups:
        assert group.inputs["kmsKeyId"] == key_arn, group.label
        assert group.inputs["retentionInDays"] == retention, group.label
        assert group.inputs["name"].startswith(f"/ml-app/{graph.stack}/")
    assert one(graph, "aws:sns/topic:Topic").inputs["kmsMasterKeyId"] == key_arn
    for secret in resources_of_type(graph, "aws:secretsmanager/secret:Secret"):
        assert secret.inputs["kmsKeyId"] == key_arn
    repo = one(graph, "aws:ecr/repository:Repository", "ml-app:infra:ContainerImage")
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key_arn}]


def test_key_policy_lets_logs_use_the_key_only_for_this_stacks_log_groups(graph):
    [doc] = policy_documents(graph, "key")
    by_sid = {s["Sid"]: s for s in doc.statements}
    logs = by_sid["CloudWatchLogsForThisStacksLogGroups"]
    assert logs["Principal"] == {"Service": f"logs.{graph.config['aws:region']}.amazonaws.com"}
    context = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert context.endswith(f":log-group:/ml-app/{graph.stack}/*")
    root = by_sid["EnableIamPoliciesOfThisAccount"]
    assert root["Principal"]["AWS"].endswith(":root")
