"""Manifest helpers shared by training and tests; the service's copy lives in app/manifest.py
so the image needs nothing from model/."""

from app.manifest import MANIFEST_NAME, file_entry, sha256_file  # noqa: F401
