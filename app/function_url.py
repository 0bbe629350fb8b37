"""Lambda Function URL requests (payload format 2.0) in, WSGI app out, and back.

    handler = FunctionUrlHandler(wsgi_app)     handler(event, context) -> response dict

A Function URL hands the function one JSON event per HTTP request and turns the dict the
function returns into the HTTP response (docs/lambda.md). This module is that translation
and nothing else, so the app behind it answers exactly as it does behind nginx: same routes,
same validation, same JSON errors.

Request: ``requestContext.http.method``; ``rawPath`` (still percent-encoded on Function URLs,
decoded here into PATH_INFO as a WSGI server does, bytes read as latin-1, PEP 3333);
``rawQueryString`` as QUERY_STRING unchanged; ``headers`` (repeated headers arrive joined
with commas) as HTTP_* variables, except names with an underscore, which nginx drops on
the ECS path too (so ``x_api_key`` cannot pose as ``x-api-key``); the ``cookies`` array as
one Cookie header; the body, base64-decoded when ``isBase64Encoded``.

Response: the status; headers with repeated names joined with ", " (RFC 9110, 5.3), except
Set-Cookie, which goes to the ``cookies`` array (payload 2.0 has no other way to send more
than one); a text body (text/*, JSON) as text, anything else, or a body with a
Content-Encoding, base64-encoded.

Written here rather than taken from apig-wsgi 2.20 (the maintained WSGI adapter for API
Gateway events, 12 kB, import ~1 ms): on payload 2.0 it keeps only the last of repeated
response headers, cuts Content-Type at its first comma, joins cookies with ";" instead of
"; ", passes headers with underscores, and fails with a KeyError on an event that is not an
HTTP request. Faithful translation is this module's whole job, so it is ~100 lines here,
tested on recorded Function URL events (tests/app/test_function_url.py). Cost per request:
one dict and a BytesIO, a few microseconds.
"""

from __future__ import annotations

import base64
import binascii
import io
import sys
from urllib.parse import unquote_to_bytes

PAYLOAD_VERSION = "2.0"
# Answers sent as text; anything else goes base64-encoded (Lambda decodes it for the client).
TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/javascript")


class UnsupportedEvent(ValueError):
    """The event is not an HTTP request from a Function URL; the message says what it is."""


def _describe(event) -> str:
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}"
    keys = ", ".join(sorted(map(str, event))[:8]) or "none"
    if "httpMethod" in event:
        return (f"an API Gateway REST or ALB event (payload format 1.0; keys: {keys}); only "
                "Function URL events (payload format 2.0) are supported")
    if event.get("version") not in (None, PAYLOAD_VERSION):
        return f"payload format {event.get('version')!r}; only {PAYLOAD_VERSION} is supported"
    return f"an object with keys {keys}"


def environ_from_event(event, context=None) -> dict:
    """The WSGI environ of one Function URL request; UnsupportedEvent for anything else."""
    context_http = (event.get("requestContext") or {}).get("http") if isinstance(event, dict) else None
    if (not isinstance(event, dict) or event.get("version") != PAYLOAD_VERSION
            or not isinstance(context_http, dict) or not context_http.get("method")):
        raise UnsupportedEvent(
            f"this function serves HTTP requests from its Function URL (payload format "
            f"{PAYLOAD_VERSION}); the event is {_describe(event)}. Call the function URL, or "
            "invoke with a payload 2.0 event (docs/lambda.md, Troubleshooting)")
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise UnsupportedEvent("isBase64Encoded is true but the body is not valid base64") from None
    else:
        data = body.encode("utf-8")
    headers = event.get("headers") or {}
    raw_path = event.get("rawPath") or context_http.get("path") or "/"
    query = event.get("rawQueryString") or ""
    environ = {
        "REQUEST_METHOD": str(context_http["method"]).upper(),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": raw_path + (f"?{query}" if query else ""),
        "SERVER_NAME": headers.get("host") or event["requestContext"].get("domainName") or "lambda",
        "SERVER_PORT": headers.get("x-forwarded-port") or "443",
        "SERVER_PROTOCOL": context_http.get("protocol") or "HTTP/1.1",
        "REMOTE_ADDR": context_http.get("sourceIp") or "",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": headers.get("x-forwarded-proto") or "https",
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "lambda.event": event,
        "lambda.context": context,
    }
    for name, value in headers.items():
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":          # the body's own length stands
            environ[f"HTTP_{key}"] = value
    cookies = event.get("cookies")
    if cookies:
        environ["HTTP_COOKIE"] = "; ".join(filter(None, [environ.get("HTTP_COOKIE"), *cookies]))
    return environ


def response_from_wsgi(status: str, headers: list[tuple[str, str]], body: bytes) -> dict:
    """The payload 2.0 response dict for a WSGI status line, header list and body."""
    merged: dict[str, tuple[str, str]] = {}       # lower-case name -> (name as sent, value)
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "set-cookie":
            cookies.append(value)
        elif lower in merged:
            merged[lower] = (merged[lower][0], f"{merged[lower][1]}, {value}")
        else:
            merged[lower] = (name, value)
    content_type = merged.get("content-type", ("", ""))[1].lower()
    as_text = content_type.startswith(TEXT_TYPES) and "content-encoding" not in merged
    text = None
    if as_text:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    response = {
        "statusCode": int(status.split(" ", 1)[0]),
        "headers": dict(merged.values()),
        "body": text if text is not None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": text is None,
    }
    if cookies:
        response["cookies"] = cookies
    return response


class FunctionUrlHandler:
    """A Lambda handler serving a WSGI app to a Function URL (payload format 2.0)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, event, context=None) -> dict:
        environ = environ_from_event(event, context)
        started: list = []
        chunks: list[bytes] = []

        def start_response(status, headers, exc_info=None):
            # Nothing reaches the client before the app returns, so an error page may
            # always replace what was started (PEP 3333's exc_info case).
            started[:] = [status, list(headers)]
            return chunks.append

        result = self.wsgi_app(environ, start_response)
        try:
            chunks.extend(chunk for chunk in result if chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        return response_from_wsgi(started[0], started[1], b"".join(chunks))
