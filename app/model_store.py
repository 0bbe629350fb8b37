"""Fetch a model version folder from a local path, file:// or s3:// and verify it.

For s3:// the files are downloaded into a cache folder (a tmpfs in the container) named by
the manifest's hash, written atomically, so gunicorn's workers share one verified copy.
boto3 honours AWS_ENDPOINT_URL, so the same code runs against an S3 emulator.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from app.manifest import (MANIFEST_NAME, ModelIntegrityError, parse_manifest, sha256_file,
                          verify_folder)


def fetch(uri: str, cache_dir: str, expected_manifest_sha256: str | None = None) -> tuple[Path, dict]:
    """Return (local folder, manifest) for a verified model version; raise ModelIntegrityError."""
    if uri.startswith("s3://"):
        return _fetch_s3(uri, Path(cache_dir), expected_manifest_sha256)
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.is_dir():
        raise ModelIntegrityError(f"MODEL_URI={uri!r}: no such folder; point it at a model "
                                  "version folder such as model/artifacts/digits/1")
    return path, verify_folder(path, expected_manifest_sha256)


def _s3_client():
    import boto3
    from botocore.config import Config

    # Bounded retries and timeouts: a task that cannot reach S3 should fail its start
    # quickly and visibly rather than hang past the health-check grace period.
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                            connect_timeout=5, read_timeout=30))


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
            raise ModelIntegrityError(f"s3://{bucket}/{key}: {exc}") from None

    raw = get(f"{prefix}/{MANIFEST_NAME}")
    manifest = parse_manifest(raw, f"{uri}/{MANIFEST_NAME}", expected)
    folder = cache_dir / f"{manifest['name']}-{manifest['version']}-{manifest['_manifest_sha256'][:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in manifest["files"].items():
        target = folder / name
        if target.is_file() and sha256_file(target) == entry["sha256"]:
            continue  # another worker (or an earlier start) already fetched it
        data = get(f"{prefix}/{name}")
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    _write_atomic(folder / MANIFEST_NAME, raw)
    return folder, verify_folder(folder, manifest["_manifest_sha256"])


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
