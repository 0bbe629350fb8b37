"""Audit logs in staging and prod (infra/audit_logs.py, the ALB's and WAF's logging): as
properties of the graph, and the requests against botocore's API models."""

from __future__ import annotations

import pytest

from tests.infra.harness import (Graph, Resource, api_problems, config_value,
                                 json_input, one, prefix, resources_of_type, stack_key_arn,
                                 within)

AUDIT = "ml-app:infra:AuditLogs"


def _bucket(graph: Graph, kind: str) -> Resource:
    [bucket] = [b for b in within(graph, AUDIT, "aws:s3/bucket:Bucket")
                if f"-{kind}-logs" in b.name]
    return bucket


def _of(graph: Graph, type_: str, bucket: Resource) -> list[Resource]:
    return [r for r in resources_of_type(graph, type_) if r.inputs.get("bucket") ==
            bucket.outputs["id"]]


def test_staging_and_prod_keep_audit_logs_dev_does_not(graphs):
    assert config_value(graphs["dev"], "auditLogs") == "false"
    assert not within(graphs["dev"], AUDIT, "aws:s3/bucket:Bucket")
    assert not resources_of_type(graphs["dev"], "aws:s3/bucketLogging:BucketLogging")
    for stack in ("staging", "prod"):
        assert config_value(graphs[stack], "auditLogs") == "true"
        assert len(within(graphs[stack], AUDIT, "aws:s3/bucket:Bucket")) == 2
        assert set(graphs[stack].exports["auditLogBuckets"]) == {"alb", "s3AccessLogs"}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_alb_logs_to_a_versioned_sse_s3_bucket_kept_for_the_retention(graphs, stack):
    graph = graphs[stack]
    bucket = _bucket(graph, "audit")
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["accessLogs"] == {"bucket": bucket.outputs["bucket"], "prefix": "alb",
                                        "enabled": True}
    # ALB writes a test object when logging is turned on: the policy exists first.
    [policy] = _of(graph, "aws:s3/bucketPolicy:BucketPolicy", bucket)
    assert policy.urn in alb.explicit_depends_on
    [delivery] = [s for s in json_input(policy, "policy")["Statement"]
                  if s.get("Sid") == "AlbAccessLogDelivery"]
    account = stack_key_arn(graph).split(":")[4]
    assert delivery["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"] == f"{bucket.outputs['arn']}/alb/AWSLogs/{account}/*"
    [sse] = _of(graph, "aws:s3/bucketServerSideEncryptionConfiguration:"
                       "BucketServerSideEncryptionConfiguration", bucket)
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "AES256"}           # ALB delivers to SSE-S3 buckets only
    [versioning] = _of(graph, "aws:s3/bucketVersioning:BucketVersioning", bucket)
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    [lifecycle] = _of(graph, "aws:s3/bucketLifecycleConfiguration:"
                             "BucketLifecycleConfiguration", bucket)
    retention = int(config_value(graph, "logRetentionDays"))
    assert lifecycle.inputs["rules"][0]["expiration"]["days"] == retention
    lock = _of(graph, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
               bucket)
    if stack == "prod":
        assert bucket.inputs["objectLockEnabled"] is True
        [lock] = lock
        assert lock.inputs["rule"]["defaultRetention"] == {"mode": "GOVERNANCE",
                                                           "days": retention}
    else:
        assert not lock and not bucket.inputs.get("objectLockEnabled")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_model_and_artifact_buckets_log_their_accesses(graphs, stack):
    graph = graphs[stack]
    target = _bucket(graph, "access")
    # S3 refuses to deliver server access logs to an Object Lock bucket, or with SSE-KMS.
    assert not target.inputs.get("objectLockEnabled")
    [sse] = _of(graph, "aws:s3/bucketServerSideEncryptionConfiguration:"
                       "BucketServerSideEncryptionConfiguration", target)
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == \
        "AES256"
    logged = {r.inputs["bucket"]: r for r in resources_of_type(
        graph, "aws:s3/bucketLogging:BucketLogging")}
    sources = [b for b in resources_of_type(graph, "aws:s3/bucket:Bucket")
               if not any(a.type == AUDIT for a in graph.ancestors(b))]
    assert len(sources) >= 2                       # models, artifacts (+ promotion in prod)
    for bucket in sources:
        logging = logged[bucket.outputs["id"]]
        assert logging.inputs["targetBucket"] == target.outputs["bucket"]
        assert logging.inputs["targetPrefix"] == f"{bucket.name}/"
    [policy] = _of(graph, "aws:s3/bucketPolicy:BucketPolicy", target)
    [delivery] = [s for s in json_input(policy, "policy")["Statement"]
                  if s.get("Sid") == "S3ServerAccessLogDelivery"]
    account = stack_key_arn(graph).split(":")[4]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": account},
                                     "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{prefix(graph)}-*"}}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_waf_logs_every_request_to_an_encrypted_log_group_without_the_api_key(graphs, stack):
    graph = graphs[stack]
    [group] = [g for g in resources_of_type(graph, "aws:cloudwatch/logGroup:LogGroup")
               if g.inputs["name"].startswith("aws-waf-logs-")]
    assert group.inputs["name"] == f"aws-waf-logs-{prefix(graph)}"
    assert group.inputs["kmsKeyId"] == stack_key_arn(graph)
    assert group.inputs["retentionInDays"] == int(config_value(graph, "logRetentionDays"))
    config = one(graph, "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    assert config.inputs["logDestinationConfigs"] == [group.outputs["arn"]]
    assert config.inputs["resourceArn"] == one(graph, "aws:wafv2/webAcl:WebAcl").outputs["arn"]
    assert config.inputs["redactedFields"] == [{"singleHeader": {"name": "x-api-key"}}]
    policy = one(graph, "aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    assert policy.urn in config.explicit_depends_on
    [statement] = json_input(policy, "policyDocument")["Statement"]
    account = stack_key_arn(graph).split(":")[4]
    assert statement["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert statement["Resource"] == f"{group.outputs['arn']}:log-stream:*"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    # The key serves that log group too (it is outside the stack's /ml-app/<stack> path).
    key = json_input(one(graph, "aws:kms/key:Key"), "policy")
    [logs] = [s for s in key["Statement"] if s["Sid"] == "CloudWatchLogsForThisStacksLogGroups"]
    assert group.outputs["arn"] in logs["Condition"]["ArnLike"][
        "kms:EncryptionContext:aws:logs:arn"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_logging_requests_validate_against_botocore(graphs, stack):
    graph = graphs[stack]
    config = one(graph, "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    redacted = [{"SingleHeader": {"Name": f["singleHeader"]["name"]}}
                for f in config.inputs["redactedFields"]]
    assert api_problems("wafv2", "PutLoggingConfiguration", {"LoggingConfiguration": {
        "ResourceArn": config.inputs["resourceArn"],
        "LogDestinationConfigs": config.inputs["logDestinationConfigs"],
        "RedactedFields": redacted}}) == []
    for logging in resources_of_type(graph, "aws:s3/bucketLogging:BucketLogging"):
        assert api_problems("s3", "PutBucketLogging", {
            "Bucket": logging.inputs["bucket"], "BucketLoggingStatus": {"LoggingEnabled": {
                "TargetBucket": logging.inputs["targetBucket"],
                "TargetPrefix": logging.inputs["targetPrefix"]}}}) == []
    for lock in resources_of_type(graph, "aws:s3/bucketObjectLockConfiguration:"
                                         "BucketObjectLockConfiguration"):
        retention = lock.inputs["rule"]["defaultRetention"]
        assert api_problems("s3", "PutObjectLockConfiguration", {
            "Bucket": lock.inputs["bucket"], "ObjectLockConfiguration": {
                "ObjectLockEnabled": lock.inputs["objectLockEnabled"],
                "Rule": {"DefaultRetention": {"Mode": retention["mode"],
                                              "Days": retention["days"]}}}}) == []
    # ... and the validation can fail.
    assert api_problems("s3", "PutObjectLockConfiguration", {
        "Bucket": "b", "ObjectLockConfiguration": {"Rule": {"DefaultRetention": {
            "Mode": "FOREVER", "Days": 1}}}})
