"""With API_KEY set, predict endpoints need x-api-key; health and docs stay open."""

from __future__ import annotations

import pytest

KEY = "k3y-" + "x" * 28
ROW = [0] * 64


@pytest.fixture
def settings(settings):
    return {**settings, "API_KEY": KEY}


@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/v1/models/digits/versions/1:predict",
                                  "/invocations"])
@pytest.mark.parametrize("header", [None, "", "wrong", KEY[:-1], KEY + "x"])
def test_predict_requires_the_exact_key(client, path, header):
    headers = {} if header is None else {"x-api-key": header}
    r = client.post(path, json={"instances": [ROW]}, headers=headers)
    assert r.status_code == 401
    assert r.json == {"error": "missing or invalid x-api-key header"}


def test_right_key_predicts(client):
    r = client.post("/v1/models/digits:predict", json={"instances": [ROW]}, headers={"x-api-key": KEY})
    assert r.status_code == 200


def test_key_is_checked_before_the_body(client):
    r = client.post("/v1/models/digits:predict", data="garbage", content_type="text/plain")
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/ping", "/", "/openapi.json"])
def test_health_and_docs_stay_open(client, path):
    assert client.get(path).status_code == 200


def test_openapi_declares_the_key(client):
    doc = client.get("/openapi.json").json
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"
    assert doc["paths"]["/v1/models/digits:predict"]["post"]["security"] == [{"apiKey": []}]
