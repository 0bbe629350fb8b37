"""The lean predict path (app/fastpath.py) as a WSGI app, with environs no test client
makes: no Content-Length (a chunked body as granian hands it over), a bad one, a header
that is not ASCII."""

from __future__ import annotations

import io
import json

import pytest

PREDICT = "/v1/models/digits:predict"
BODY = json.dumps({"instances": [[0] * 64]}).encode()


def call(app, body: bytes, **environ) -> tuple[str, dict, dict]:
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": PREDICT, "CONTENT_TYPE": "application/json",
           "wsgi.input": io.BytesIO(body), "SERVER_NAME": "test", "SERVER_PORT": "80",
           "wsgi.url_scheme": "http", **environ}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    payload = b"".join(app.wsgi_app(env, start_response))
    return seen["status"], seen["headers"], json.loads(payload)


def test_a_body_without_content_length_is_read_whole(app):
    status, headers, payload = call(app, BODY)
    assert status == "200 OK" and len(payload["predictions"]) == 1
    assert (headers["X-Model-Name"], headers["X-Model-Version"]) == ("digits", "1")
    assert headers["Content-Length"] == str(len(json.dumps(payload, separators=(",", ":"))))


def test_a_chunked_body_over_the_limit_is_413_not_cut_and_parsed(app):
    padded = BODY[:-1] + b" " * (1024 * 1024) + b"}"          # valid JSON, over 1 MiB
    status, _, payload = call(app, padded)
    assert status.startswith("413") and "MAX_BODY_BYTES" in payload["error"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_content_length_that_is_not_a_number_is_400(app, length):
    status, _, payload = call(app, BODY, CONTENT_LENGTH=length)
    assert status.startswith("400") and "Content-Length" in payload["error"]


def test_content_length_over_the_limit_is_413_before_reading(app):
    class Unreadable(io.RawIOBase):
        def read(self, *args):
            raise AssertionError("the body must not be read")

    status, _, _ = call(app, b"", CONTENT_LENGTH=str(2 * 1024 * 1024), **{"wsgi.input": Unreadable()})
    assert status.startswith("413")


def test_errors_after_the_model_is_known_name_it(app):
    status, headers, payload = call(app, b"{", CONTENT_LENGTH="1")
    assert status.startswith("400") and headers["X-Model-Name"] == "digits"
    status, headers, _ = call(app, BODY, PATH_INFO="/v1/models/cats:predict")
    assert status.startswith("404") and "X-Model-Name" not in headers


def test_an_unexpected_failure_on_the_lean_path_is_a_json_500(app, capsys):
    app.extensions["ml_app"].default.parser.parse = lambda body: 1 / 0
    status, _, payload = call(app, BODY)
    assert status.startswith("500") and payload["error"].startswith("internal error (request id")
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_other_methods_on_predict_still_get_flask_405(client):
    r = client.get(PREDICT)
    assert r.status_code == 405 and r.headers["Allow"]


def test_api_key_that_is_not_ascii_is_a_401_not_a_500(settings):
    from app import create_app

    app = create_app({**settings, "API_KEY": "k" * 32})
    status, _, payload = call(app, BODY, HTTP_X_API_KEY="\udcff\u00e9" * 16)
    assert status.startswith("401") and payload == {"error": "missing or invalid x-api-key header"}
    status, _, _ = call(app, BODY, HTTP_X_API_KEY="k" * 32)
    assert status == "200 OK"



@pytest.mark.parametrize("url, message", [
    ("/v1/models/caf%C3%A9", "model 'café' not found; this server serves model 'digits'"),
    ("/v1/models/digits/versions/%C3%A9", "version 'é' of model 'digits' not found; this "
                                          "server serves version 1 of it"),
])
def test_a_name_outside_ascii_is_named_as_flask_names_it(client, url, message):
    """PATH_INFO carries the URL's bytes as latin-1 (PEP 3333): the lean path's 404 must name
    what the client wrote ('café', not 'cafÃ©'), as Flask's routes do."""
    posted = client.post(f"{url}:predict", json={"instances": [[0] * 64]})
    status = client.get(url)
    assert posted.status_code == status.status_code == 404
    assert posted.json["error"] == status.json["error"] == message


def test_a_path_already_decoded_past_latin_1_is_named_as_given():
    """A server that is not PEP 3333-strict may hand PATH_INFO over decoded ('€' is not
    latin-1): the name is used as given, never a 500."""
    from app.fastpath import url_text

    assert url_text("caf\u00c3\u00a9") == "café"          # PEP 3333: UTF-8 bytes as latin-1
    assert url_text("€uro") == "€uro"
    assert url_text("digits") == "digits" and url_text(None) is None
