"""Function URL events for the tests (payload format 2.0): the samples in
tests/app/function_url_events/, and any test-client request turned into one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

EVENTS = Path(__file__).parent / "app" / "function_url_events"


def event(name: str) -> dict:
    """A fresh copy of the sample event ``name`` (a file stem in function_url_events/)."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def as_event(path: str, kwargs: dict) -> dict:
    """A Flask test-client POST (``path`` and its keyword arguments, as in
    tests/app/test_bad_input.py's CASES) as the IAM-signed Function URL event Lambda would
    deliver for it, body base64-encoded."""
    ev = event("iam_predict")
    data = kwargs.get("data", b"")
    data = data.encode() if isinstance(data, str) else data
    headers = {k: v for k, v in ev["headers"].items() if k != "content-type"}
    if "content_type" in kwargs:
        headers["content-type"] = kwargs["content_type"]
    headers.update({k.lower(): v for k, v in kwargs.get("headers", {}).items()})
    ev.update(rawPath=path, headers=headers, isBase64Encoded=True,
              body=base64.b64encode(data).decode())
    ev["requestContext"]["http"]["path"] = path
    return ev
