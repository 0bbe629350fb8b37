"""The Lambda Function URL adapter (app/function_url.py) on Function URL events.

The events in function_url_events/ have the shape Lambda delivers for a Function URL
(payload format 2.0, as AWS's Lambda documentation lists it): an IAM-signed (SigV4) predict,
an IAM-signed text/csv body sent base64-encoded, a browser's GET of the demo page under NONE
auth, and a GET with a percent-encoded path, a repeated query parameter, cookies, a header
Lambda joined with commas and a header name with an underscore. Each goes through the real
app; what comes back must be what the app answers over HTTP (Flask's test client), in the
payload 2.0 response shape.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from werkzeug.test import EnvironBuilder

from app.function_url import FunctionUrlHandler, UnsupportedEvent, environ_from_event, response_from_wsgi
from tests.app.test_bad_input import CASES
from tests.function_url import as_event, event

@pytest.fixture
def handler(app):
    return FunctionUrlHandler(app.wsgi_app)


def test_query_cookies_and_headers_are_translated_as_a_wsgi_server_would():
    environ = environ_from_event(event("query_cookies_headers"), context="ctx")
    # rawPath arrives percent-encoded; PATH_INFO is decoded, as werkzeug builds it for the URL
    assert environ["PATH_INFO"] == "/v1/models/digits/versions/1/metadata"
    assert environ["QUERY_STRING"] == "a=1&a=2&b=x%20y"          # untouched: a=1&a=2 stays two
    assert environ["RAW_URI"] == "/v1/models/digits/versions/%31/metadata?a=1&a=2&b=x%20y"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["HTTP_COOKIE"] == "session=abc123; theme=dark"
    assert environ["HTTP_X_CUSTOM"] == "one,two"                  # Lambda joined the repeats
    assert "HTTP_X_API_KEY" not in environ                         # x_api_key: dropped, like nginx
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["SERVER_NAME"].endswith(".lambda-url.eu-west-1.on.aws")
    assert environ["wsgi.url_scheme"] == "https" and environ["SERVER_PORT"] == "443"
    assert environ["CONTENT_LENGTH"] == "0" and environ["wsgi.input"].read() == b""
    assert environ["lambda.context"] == "ctx"


@pytest.mark.parametrize("raw", ["/caf%C3%A9", "/a%2Fb", "/sp%20ace", "/plain"])
def test_path_decoding_matches_werkzeugs(raw):
    ev = event("query_cookies_headers")
    ev["rawPath"] = raw
    assert environ_from_event(ev)["PATH_INFO"] == EnvironBuilder(path=raw).get_environ()["PATH_INFO"]


def test_signed_predict_answers_as_the_app_does(handler, client):
    ev = event("iam_predict")
    result = handler(ev, None)
    expected = client.post("/v1/models/digits:predict", data=ev["body"], content_type="application/json")
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert json.loads(result["body"]) == expected.json
    assert np.argmax(json.loads(result["body"])["predictions"][0]) == 0
    headers = result["headers"]
    assert headers["Content-Type"] == "application/json"
    assert (headers["X-Model-Name"], headers["X-Model-Version"]) == ("digits", "1")
    # the ALB's trace id header becomes the request id, as behind nginx
    assert headers["X-Request-Id"] == ev["headers"]["x-amzn-trace-id"]
    assert "cookies" not in result


def test_base64_csv_body_is_decoded_and_csv_comes_back(handler):
    ev = event("iam_invocations_csv")
    result = handler(ev, None)
    assert result["statusCode"] == 200, result["body"]
    assert result["headers"]["Content-Type"] == "text/csv" and result["isBase64Encoded"] is False
    lines = result["body"].splitlines()
    assert len(lines) == 2
    assert all(np.argmax([float(v) for v in line.split(",")]) == 0 for line in lines)


def test_browser_get_of_the_demo_page(handler, client):
    result = handler(event("browser_get_page"), None)
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert result["headers"]["Content-Type"].startswith("text/html")
    assert result["body"].encode() == client.get("/").data


def test_metadata_with_query_and_cookies_is_served(handler, client):
    ev = event("query_cookies_headers")
    result = handler(ev, None)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == client.get("/v1/models/digits/versions/1/metadata").json
    # X-Amzn-Trace-Id wins over the client's X-Request-Id, as behind the ALB
    assert result["headers"]["X-Request-Id"] == ev["headers"]["x-amzn-trace-id"]
    del ev["headers"]["x-amzn-trace-id"]
    assert handler(ev, None)["headers"]["X-Request-Id"] == "client-req-42"


@pytest.mark.parametrize("path, kwargs", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_the_same_4xx_through_the_adapter(handler, client, path, kwargs):
    expected = client.post(path, **kwargs)
    result = handler(as_event(path, kwargs), None)
    assert result["statusCode"] == expected.status_code and 400 <= result["statusCode"] < 500
    assert result["headers"]["Content-Type"] == "application/json"
    assert json.loads(result["body"])["error"] == expected.json["error"]


def test_wrong_method_is_a_405_with_allow(handler):
    ev = event("iam_predict")
    ev["requestContext"]["http"]["method"] = "GET"
    result = handler(ev, None)
    assert result["statusCode"] == 405 and "POST" in result["headers"]["Allow"]


def _wsgi_app(status: str, headers: list, body: bytes):
    def app(environ, start_response):
        start_response(status, headers)
        return [body[:3], b"", body[3:]]
    return app


def test_repeated_response_headers_and_cookies_are_kept():
    app = _wsgi_app("201 Created", [("Content-Type", "application/json"), ("Vary", "Accept"),
                                    ("vary", "Origin"), ("Set-Cookie", "a=1; Path=/"),
                                    ("Set-Cookie", "b=2; HttpOnly")], b'{"ok":true}')
    result = FunctionUrlHandler(app)(event("browser_get_page"))
    assert result["statusCode"] == 201
    assert result["headers"]["Vary"] == "Accept, Origin"           # RFC 9110: one field, joined
    assert result["cookies"] == ["a=1; Path=/", "b=2; HttpOnly"]
    assert "Set-Cookie" not in result["headers"] and "set-cookie" not in result["headers"]
    assert result["body"] == '{"ok":true}' and result["isBase64Encoded"] is False


@pytest.mark.parametrize("headers, body", [
    ([("Content-Type", "application/octet-stream")], bytes(range(256))),
    ([("Content-Type", "application/json"), ("Content-Encoding", "gzip")], b"\x1f\x8b\x08\x00"),
    ([("Content-Type", "text/plain")], b"\xff\xfe not utf-8"),
    ([], b"no content type"),
])
def test_binary_bodies_go_base64(headers, body):
    result = FunctionUrlHandler(_wsgi_app("200 OK", headers, body))(event("browser_get_page"))
    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == body


def test_response_status_line_keeps_only_the_code():
    assert response_from_wsgi("418 I'm a teapot", [], b"")["statusCode"] == 418


def test_a_closeable_result_is_closed():
    closed = []

    class Result(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Result([b"hi"])

    assert FunctionUrlHandler(app)(event("browser_get_page"))["body"] == "hi" and closed


@pytest.mark.parametrize("bad, words", [
    ({"hello": "world"}, ["Function URL", "keys hello"]),
    ({}, ["keys none"]),
    ([1, 2], ["a JSON list"]),
    ("text", ["a JSON str"]),
    (None, ["a JSON NoneType"]),
    ({"httpMethod": "POST", "path": "/invocations", "resource": "/{proxy+}"}, ["payload format 1.0"]),
    ({"version": "1.0", "requestContext": {"http": {"method": "GET"}}}, ["'1.0'", "only 2.0"]),
    ({"version": "2.0", "requestContext": {}}, ["Function URL"]),
    ({"Records": [{"eventSource": "aws:sqs"}]}, ["keys Records"]),
])
def test_a_non_http_event_is_refused_naming_what_it_is(bad, words):
    with pytest.raises(UnsupportedEvent) as info:
        FunctionUrlHandler(_wsgi_app("200 OK", [], b""))(bad)
    for word in words:
        assert word in str(info.value)


def test_bad_base64_body_is_refused():
    ev = event("iam_invocations_csv")
    ev["body"] = "not base64!!"
    with pytest.raises(UnsupportedEvent, match="not valid base64"):
        environ_from_event(ev)
