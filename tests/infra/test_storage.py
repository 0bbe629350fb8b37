"""Every bucket is a SecureBucket (infra/storage.py): the same controls on each of them. The
audit-log buckets (infra/audit_logs.py) differ only where AWS's log delivery requires it:
SSE-S3 instead of the stack's key (test_audit_logs.py)."""

from __future__ import annotations

import json

from tests.infra.harness import (PIPELINE, Graph, Resource, as_list, config_value, json_input,
                                 one, policy_documents, resources_of_type, stack_key_arn,
                                 within)


PROTECTIONS = VERSIONING, ENCRYPTION, ACCESS_BLOCK, POLICY, LIFECYCLE, OWNERSHIP = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls")


def settings_of(graph: Graph, bucket: Resource) -> dict[str, Resource]:
    """The bucket's settings resources (versioning, encryption, ...) by type, one each."""
    found = {}
    for r in resources_of_type(graph, *PROTECTIONS):
        if r.inputs.get("bucket") == bucket.outputs["id"]:
            assert r.type not in found, f"two {r.type} on {bucket.name}"
            found[r.type] = r
    return found


def test_every_bucket_is_encrypted_versioned_private_tls_only_and_expires_old_versions(any_graph):
    key_arn = one(any_graph, "aws:kms/key:Key").outputs["arn"]
    buckets = resources_of_type(any_graph, "aws:s3/bucket:Bucket")
    assert buckets
    for bucket in buckets:
        settings = settings_of(any_graph, bucket)
        assert set(settings) == set(PROTECTIONS), bucket.name
        versioning = settings[VERSIONING]
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"

        sse = settings[ENCRYPTION]
        [rule] = sse.inputs["rules"]
        if any(a.type == "ml-app:infra:AuditLogs" for a in any_graph.ancestors(bucket)):
            assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
        else:
            assert rule["applyServerSideEncryptionByDefault"] == {
                "sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
            assert rule["bucketKeyEnabled"] is True

        pab = settings[ACCESS_BLOCK]
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                     "restrictPublicBuckets"):
            assert pab.inputs[flag] is True, flag

        ownership = settings[OWNERSHIP]
        assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"

        policy = settings[POLICY]
        doc = [d for d in policy_documents(any_graph, "resource") if d.resource is policy][0]
        denies_http = [s for s in doc.statements if s["Effect"] == "Deny"
                       and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert denies_http and set(as_list(denies_http[0]["Resource"])) == {
            bucket.outputs["arn"], bucket.outputs["arn"] + "/*"}
        assert any(s["Condition"].get("NumericLessThan", {}).get("s3:TlsVersion") == "1.2"
                   for s in doc.statements)

        lifecycle = settings[LIFECYCLE]
        expiring = [r for r in lifecycle.inputs["rules"] if r.get("noncurrentVersionExpiration")]
        assert expiring and expiring[0]["status"] == "Enabled"
        assert expiring[0]["noncurrentVersionExpiration"]["noncurrentDays"] > 0


def test_the_artifact_bucket_has_the_model_buckets_protections(graph):
    [artifacts] = [b for b in within(graph, PIPELINE, "aws:s3/bucket:Bucket")
                   if "-artifacts-" in b.outputs["bucket"]]
    models = one(graph, "aws:s3/bucket:Bucket", "ml-app:infra:ModelRegistry")
    ours, theirs = settings_of(graph, artifacts), settings_of(graph, models)
    assert set(ours) == set(theirs) == set(PROTECTIONS)
    assert ours[VERSIONING].inputs["versioningConfiguration"]["status"] == "Enabled"
    [rule] = ours[ENCRYPTION].inputs["rules"]
    sse = rule["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": stack_key_arn(graph)}
    pab = ours[ACCESS_BLOCK].inputs
    assert all(pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                "restrictPublicBuckets"))
    # Same bucket policy as the model bucket's (TLS only, TLS 1.2+), for its own ARN.
    ours_policy = json_input(ours[POLICY], "policy")
    theirs_policy = json_input(theirs[POLICY], "policy")
    swap = json.dumps(theirs_policy).replace(models.outputs["arn"], artifacts.outputs["arn"])
    assert ours_policy == json.loads(swap)
    [expiring] = [r for r in ours[LIFECYCLE].inputs["rules"] if r.get("expiration")]
    assert expiring["status"] == "Enabled" and expiring["expiration"]["days"] <= 90
    assert expiring["noncurrentVersionExpiration"]["noncurrentDays"] <= 30
    rules = {r["id"]: r for r in ours[LIFECYCLE].inputs["rules"]}
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"]
    assert artifacts.protect is (config_value(graph, "protectData") == "true")
    store = one(graph, "aws:codepipeline/pipeline:Pipeline").inputs["artifactStores"][0]
    assert store["location"] == artifacts.outputs["bucket"]
    assert store["encryptionKey"] == {"id": stack_key_arn(graph), "type": "KMS"}
