"""Every error leaves as JSON ``{"error": "..."}`` with a 4xx/5xx status, never a stack trace."""

from __future__ import annotations

import traceback

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from app.fastpath import body_too_large, error_body
from app.observability import REQUEST_ID, bounded_text
from app.validation import BadRequest


def error_response(message: str, status: int, headers: dict | None = None) -> Response:
    """Flask's error answers, in the lean path's body (app/fastpath.py)."""
    return Response(error_body(message), status=status, mimetype="application/json",
                    headers=headers)


def _describe(exc: HTTPException) -> str:
    code = exc.code
    path = bounded_text(request.path, 200)
    if code == 404:
        return f"no such endpoint: {request.method} {path} (see GET /openapi.json)"
    if code == 405:
        allowed = ", ".join(sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return f"method {request.method} is not allowed on {path}; use {allowed}"
    if code == 413:
        return body_too_large(current_app.config["MAX_CONTENT_LENGTH"]).message
    return exc.description or exc.name


def register(app: Flask) -> None:
    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        return error_response(exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(_describe(exc), exc.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged in full for operators, never shown to clients.
        service = current_app.extensions["ml_app"]
        service.log.write("ERROR", event="unhandled_exception", path=request.path,
                          request_id=request.environ.get(REQUEST_ID), error=repr(exc),
                          traceback=traceback.format_exc())
        return error_response(f"internal error (request id {request.environ.get(REQUEST_ID)})", 500)
