"""Fetch a model version folder from a local path, file:// or s3:// and verify it.

For s3:// the files are downloaded into a cache folder (a tmpfs in the container) named by
the manifest's hash, written atomically, so the app's workers share one verified copy.
boto3 honours AWS_ENDPOINT_URL, so the same code runs against an S3 emulator.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from app.manifest import (MANIFEST_NAME, ModelIntegrityError, parse_manifest, sha256_file,
                          verify_folder)


def fetch(uri: str, cache_dir: str, expected_manifest_sha256: str | None = None,
          timeout: float = 20, remaining: float | None = None) -> tuple[Path, dict]:
    """Return (local folder, manifest) for a verified model version; raise ModelIntegrityError.

    s3:// downloads get ``timeout`` seconds in all (MODEL_FETCH_TIMEOUT), whatever the
    endpoint does: ECS kills a task that is not healthy within its grace period (60 s), so a
    start that cannot finish must fail before then, naming the URI and the cause. When
    several versions share the budget, ``remaining`` is what is left of it for this one.
    """
    if uri.startswith("s3://"):
        return _bounded(lambda: _fetch_s3(uri, Path(cache_dir), expected_manifest_sha256),
                        uri, timeout, remaining)
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.is_dir():
        raise ModelIntegrityError(f"MODEL_URI={uri!r}: no such folder; point it at a model "
                                  "version folder such as model/artifacts/digits/1")
    return path, verify_folder(path, expected_manifest_sha256)


def _bounded(download, uri: str, timeout: float, remaining: float | None = None):
    """Run ``download`` with a deadline: ``remaining`` seconds of the ``timeout`` budget
    (all of it when None). botocore bounds each attempt (connect and read timeouts) and the
    attempts, but not their sum over several files; this does."""
    outcome: list = []
    too_slow = ModelIntegrityError(
        f"MODEL_URI={uri!r}: the download did not finish within {timeout:g} s "
        "(MODEL_FETCH_TIMEOUT, for every model version together): S3 accepted the connection "
        "but did not answer in time; check the endpoint, the network path (VPC endpoint, NAT) "
        "and AWS_ENDPOINT_URL")
    remaining = timeout if remaining is None else remaining
    if remaining <= 0:
        raise too_slow

    def run():
        try:
            outcome.append((True, download()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="model-fetch", daemon=True)
    worker.start()
    worker.join(remaining)
    if not outcome:
        raise too_slow
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


# Per attempt: connect 3 s, read 5 s; 3 attempts per object. Well inside MODEL_FETCH_TIMEOUT
# for a manifest and two files when S3 answers slowly, and each failure names its cause.
S3_CONFIG = {"retries": {"total_max_attempts": 3, "mode": "standard"},
             "connect_timeout": 3, "read_timeout": 5}


def _s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(**S3_CONFIG))


def _fetch_s3(uri: str, cache_dir: Path, expected: str | None) -> tuple[Path, dict]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/")
    s3 = _s3_client()

    def get(key: str) -> bytes:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ModelIntegrityError(f"s3://{bucket}/{key}: {code}: "
                                      f"{exc.response.get('Error', {}).get('Message', exc)}; "
                                      "check MODEL_URI and the task role's s3:GetObject") from None
        except BotoCoreError as exc:
            raise ModelIntegrityError(f"s3://{bucket}/{key}: {exc} (after "
                                      f"{S3_CONFIG['retries']['total_max_attempts']} attempts); "
                                      "check MODEL_URI, AWS_ENDPOINT_URL and the network path "
                                      "to S3") from None

    raw = get(f"{prefix}/{MANIFEST_NAME}")
    manifest = parse_manifest(raw, f"{uri}/{MANIFEST_NAME}", expected)
    folder = cache_dir / f"{manifest['name']}-{manifest['version']}-{manifest['_manifest_sha256'][:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in manifest["files"].items():
        target = folder / name
        if target.is_file() and sha256_file(target) == entry["sha256"]:
            continue  # another worker (or an earlier start) already fetched it
        _write_atomic(target, get(f"{prefix}/{name}"))
    _write_atomic(folder / MANIFEST_NAME, raw)
    return folder, verify_folder(folder, manifest["_manifest_sha256"])


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
