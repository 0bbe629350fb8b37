"""Every class of bad client input gets a 4xx with {"error": ...} saying what and where."""

from __future__ import annotations

import json

import pytest

PREDICT = "/v1/models/digits:predict"
ROW = [0] * 64
GRID = [[0] * 8 for _ in range(8)]


def body(obj) -> dict:
    return {"data": json.dumps(obj), "content_type": "application/json"}


CASES = [
    # (id, path, request kwargs, status, words the error must contain)
    ("malformed json", PREDICT, {"data": '{"instances": [', "content_type": "application/json"}, 400, ["malformed JSON"]),
    ("empty body", PREDICT, {"data": "", "content_type": "application/json"}, 400, ["empty request body"]),
    ("not utf-8", PREDICT, {"data": b"\xff\xfe", "content_type": "application/json"}, 400, ["not UTF-8"]),
    ("wrong content type", PREDICT, {"data": json.dumps({"instances": [ROW]}), "content_type": "text/plain"}, 415, ["application/json", "text/plain"]),
    ("no content type", PREDICT, {"data": json.dumps({"instances": [ROW]})}, 415, ["Content-Type"]),
    ("both instances and inputs", PREDICT, body({"instances": [ROW], "inputs": [ROW]}), 400, ["exactly one", "not both"]),
    ("neither", PREDICT, body({"data": [ROW]}), 400, ["exactly one"]),
    ("body not an object", PREDICT, body([ROW]), 400, ["JSON object"]),
    ("unknown key", PREDICT, body({"instances": [ROW], "extra": 1}), 400, ["unknown request keys", "extra"]),
    ("bad signature", PREDICT, body({"instances": [ROW], "signature_name": "x"}), 400, ["signature_name"]),
    ("instances not a list", PREDICT, body({"instances": "abc"}), 400, ["instances", "a string"]),
    ("empty batch", PREDICT, body({"instances": []}), 400, ["empty batch"]),
    ("wrong length", PREDICT, body({"instances": [ROW, [0] * 63]}), 400, ["instances[1]", "64 numbers", "63"]),
    ("ragged rows", PREDICT, body({"instances": [[[0] * 8] * 7 + [[0] * 7]]}), 400, ["instances[0][7]", "8 numbers per row", "got 7"]),
    ("too deep", PREDICT, body({"instances": [[GRID]]}), 400, ["instances[0]", "expected"]),
    ("string value", PREDICT, body({"instances": [["1"] + [0] * 63]}), 400, ["instances[0]", "value 0", "a string"]),
    ("boolean value", PREDICT, body({"instances": [[0] * 5 + [True] + [0] * 58]}), 400, ["value 5", "a boolean"]),
    ("null value", PREDICT, body({"instances": [[None] * 64]}), 400, ["value 0", "null"]),
    ("nan", PREDICT, {"data": '{"instances": [[NaN' + ",0" * 63 + "]]}", "content_type": "application/json"}, 400, ["NaN", "finite"]),
    ("infinity", PREDICT, {"data": '{"instances": [[0' + ",0" * 62 + ",Infinity]]}", "content_type": "application/json"}, 400, ["Infinity"]),
    ("negative infinity", PREDICT, {"data": '{"instances": [[-Infinity' + ",0" * 63 + "]]}", "content_type": "application/json"}, 400, ["-Infinity"]),
    ("above range", PREDICT, body({"instances": [ROW, [0] * 10 + [17] + [0] * 53]}), 400, ["instances[1]", "value 10 = 17", "[0, 16]"]),
    ("below range", PREDICT, body({"instances": [[-0.5] + [0] * 63]}), 400, ["value 0 = -0.5", "outside"]),
    ("huge number", PREDICT, body({"instances": [[1e308] + [0] * 63]}), 400, ["outside"]),
    ("named instance wrong key", PREDICT, body({"instances": [{"image": ROW}]}), 400, ["pixels"]),
    ("oversized batch", PREDICT, body({"instances": [ROW] * 257}), 413, ["257", "256", "MAX_BATCH_SIZE"]),
    ("oversized body", PREDICT, {"data": "[" + "0," * 600_000 + "0]", "content_type": "application/json"}, 413, ["exceeds", "MAX_BODY_BYTES"]),
    ("unknown model", "/v1/models/cats:predict", body({"instances": [ROW]}), 404, ["'cats' not found", "'digits'"]),
    ("unknown version", "/v1/models/digits/versions/7:predict", body({"instances": [ROW]}), 404, ["version '7'", "version 1"]),
    ("csv not a number", "/invocations", {"data": "a" + ",0" * 63, "content_type": "text/csv"}, 400, ["line 1", "not a number"]),
    ("csv wrong width", "/invocations", {"data": "0,0,0", "content_type": "text/csv"}, 400, ["line 1", "64 numbers", "got 3"]),
    ("csv nan", "/invocations", {"data": "nan" + ",0" * 63, "content_type": "text/csv"}, 400, ["line 1", "'nan' is not a number"]),
    ("csv arabic-indic digit", "/invocations", {"data": "\u0665" + ",0" * 63, "content_type": "text/csv"}, 400, ["line 1", "is not a number", "ASCII"]),
    ("csv fullwidth digit", "/invocations", {"data": "\uff11" + ",0" * 63, "content_type": "text/csv"}, 400, ["line 1", "is not a number"]),
    ("csv underscore", "/invocations", {"data": "1_0" + ",0" * 63, "content_type": "text/csv"}, 400, ["'1_0' is not a number"]),
    ("csv one huge line", "/invocations", {"data": "0," * 400_000 + "0", "content_type": "text/csv"}, 400, ["line 1", "got 400001 comma-separated values"]),
    ("csv too many lines", "/invocations", {"data": ("0" + ",0" * 63 + "\n") * 257, "content_type": "text/csv"}, 413, ["257 lines", "MAX_BATCH_SIZE"]),
    ("gzip body", PREDICT, {"data": b"\x1f\x8b\x08\x00", "content_type": "application/json", "headers": {"Content-Encoding": "gzip"}}, 415, ["Content-Encoding 'gzip'", "uncompressed"]),
    ("gzip csv", "/invocations", {"data": b"\x1f\x8b\x08\x00", "content_type": "text/csv", "headers": {"Content-Encoding": "gzip"}}, 415, ["Content-Encoding"]),
    ("invocations xml", "/invocations", {"data": "<x/>", "content_type": "application/xml"}, 415, ["text/csv"]),
    ("invocations accept xml", "/invocations", {"data": "0" + ",0" * 63, "content_type": "text/csv", "headers": {"Accept": "application/xml"}}, 406, ["'application/xml'", "application/json or text/csv"]),
    ("invocations accept refused", "/invocations", {"data": "0" + ",0" * 63, "content_type": "text/csv", "headers": {"Accept": "text/csv;q=0, application/json;q=0"}}, 406, ["Accept", "text/csv"]),
    ("deeply nested json", PREDICT, {"data": "[" * 100_000 + "]" * 100_000, "content_type": "application/json"}, 400, ["malformed JSON"]),
]


@pytest.mark.parametrize("path, kwargs, status, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_clear_4xx(client, path, kwargs, status, words):
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.json["error"]
    for word in words:
        assert word in error, f"{word!r} not in {error!r}"
    assert "Traceback" not in error


@pytest.mark.parametrize("method, path, allowed", [
    ("get", PREDICT, "POST"), ("put", PREDICT, "POST"), ("delete", "/invocations", "POST"),
    ("post", "/healthz", "GET"), ("post", "/v1/models/digits", "GET"),
])
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert allowed in response.headers["Allow"]
    assert f"use {allowed}" in response.json["error"]


def test_unknown_path_and_model_status_404(client):
    assert client.get("/v2/anything").status_code == 404
    # a doubled slash is an unknown path, not a redirect built from the Host header
    r = client.get("/v1//models/digits", headers={"Host": "evil.example"})
    assert r.status_code == 404 and "Location" not in r.headers
    assert r.json["error"].startswith("no such endpoint: GET /v1//models/digits")
    r = client.get("/v1/models/cats")
    assert r.status_code == 404 and "'cats' not found" in r.json["error"]
    assert client.get("/v1/models/digits/versions/2/metadata").status_code == 404


def test_max_batch_and_body_limits_are_configurable(settings):
    from app import create_app

    client = create_app({**settings, "MAX_BATCH_SIZE": "2", "MAX_BODY_BYTES": "2048"}).test_client()
    assert client.post(PREDICT, json={"instances": [ROW] * 2}).status_code == 200
    r = client.post(PREDICT, json={"instances": [ROW] * 3})
    assert r.status_code == 413 and "maximum of 2" in r.json["error"]
    r = client.post(PREDICT, data=json.dumps({"instances": [[0.12345678901234] * 64] * 2}),
                    content_type="application/json")
    assert r.status_code == 413 and "2048 bytes" in r.json["error"]


def test_an_unexpected_failure_is_a_json_500_without_trace(app, client, capsys):
    service = app.extensions["ml_app"]

    def broken(x):
        raise RuntimeError("interpreter exploded")

    service.default.predictor.predict = broken
    r = client.post(PREDICT, json={"instances": [ROW]})
    assert r.status_code == 500
    assert r.json["error"].startswith("internal error (request id ")
    assert "exploded" not in r.json["error"]
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [e for e in logged if e.get("event") == "unhandled_exception"]
    assert errors and "interpreter exploded" in errors[0]["traceback"]
