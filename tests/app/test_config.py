"""Settings are validated at start-up: every problem reported at once, naming the key."""

from __future__ import annotations

import pytest

from app.config import ConfigError, ModelSource, load_server_settings, load_settings

BAD = [
    ({"MODEL_URI": ""}, ["MODEL_URI=''", "is empty"]),
    ({"MODEL_FETCH_TIMEOUT": "900"}, ["MODEL_FETCH_TIMEOUT='900'", "from 5 to 600"]),
    ({"MODEL_URI": "http://example.com/model"}, ["MODEL_URI", "only local paths, file:// and s3://"]),
    ({"MODEL_URI": "s3://bucket-only"}, ["s3:// URI needs a bucket and a key prefix"]),
    ({"MODEL_SHA256": "abc"}, ["MODEL_SHA256='abc'", "64 hex digits"]),
    ({"MODEL_URI": "a,,b"}, ["MODEL_URI='a,,b'", "item 2 of 3 is empty"]),
    ({"MODEL_URI": "a,"}, ["item 2 of 2 is empty"]),
    ({"MODEL_URI": "a, b ,a"}, ["lists 'a' more than once"]),
    ({"MODEL_URI": "a,ftp://x/y,s3://b"}, ["item 2 ('ftp://x/y'): only local paths",
                                          "item 3 ('s3://b'): an s3:// URI needs a bucket"]),
    ({"MODEL_URI": "a,b", "MODEL_SHA256": "0" * 64}, ["has 1 pin but MODEL_URI lists 2 model versions",
                                                     "comma-separated"]),
    ({"MODEL_URI": "a", "MODEL_SHA256": ","}, ["has 2 pins but MODEL_URI lists 1 model version;"]),
    ({"MODEL_URI": "a,b", "MODEL_SHA256": "0" * 64 + ",xyz"}, ["pin 2 ('xyz'): must be 64 hex"]),
    ({"API_KEY": "short"}, ["API_KEY", "shorter than 16"]),
    ({"MAX_BATCH_SIZE": "0"}, ["MAX_BATCH_SIZE='0'", "from 1 to 10000"]),
    ({"MAX_BATCH_SIZE": "many"}, ["MAX_BATCH_SIZE='many'", "whole number"]),
    ({"MAX_BODY_BYTES": "10"}, ["MAX_BODY_BYTES='10'", "from 1024"]),
    ({"LOG_LEVEL": "verbose"}, ["LOG_LEVEL='verbose'", "DEBUG, INFO, WARNING, ERROR"]),
    ({"GUNICORN_TIMEOUT": "30"}, ["GUNICORN_TIMEOUT: gunicorn no longer serves", "SERVER_BODY_TIMEOUT"]),
    ({"SERVER_FRONTS": "x"}, ["SERVER_FRONTS: not a setting", "did you mean SERVER_FRONT?"]),
    ({"METRICS_NAMESPACE": "AWS/ECS"}, ["METRICS_NAMESPACE", "not starting with 'AWS/'"]),
    ({"METRICS_ENABLED": "maybe"}, ["METRICS_ENABLED='maybe'", "true or false"]),
    ({"METRICS_FLUSH_SECONDS": "0"}, ["METRICS_FLUSH_SECONDS"]),
    ({"MODEL_URL": "x"}, ["MODEL_URL: not a setting", "did you mean MODEL_URI?"]),
]


@pytest.mark.parametrize("env, words", BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_bad_setting_names_key_and_rule(env, words):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    for word in words:
        assert word in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_settings({"MAX_BATCH_SIZE": "0", "LOG_LEVEL": "x", "MODEL_URL": "y"})
    assert len(info.value.problems) == 3


def test_defaults_and_valid_values():
    s = load_settings({})
    assert (s.models, s.max_batch_size, s.max_body_bytes, s.api_key) == (
        (ModelSource("model/artifacts/digits/1", None),), 256, 1024 * 1024, None)
    s = load_settings({"MODEL_SHA256": "sha256:" + "A" * 64, "API_KEY": "k" * 32, "LOG_LEVEL": "debug"})
    assert s.models[0].sha256 == "a" * 64 and s.log_level == "DEBUG"


def test_model_uri_lists_versions_and_model_sha256_their_pins_in_order():
    one, two = "0" * 64, "sha256:" + "F" * 64
    s = load_settings({"MODEL_URI": " a , s3://b/models/x/2 ,file:///c", "MODEL_SHA256": f"{one},,{two}"})
    assert s.models == (ModelSource("a", one), ModelSource("s3://b/models/x/2", None),
                        ModelSource("file:///c", "f" * 64))
    assert load_settings({"MODEL_URI": "a,b", "MODEL_SHA256": ""}).models == (
        ModelSource("a"), ModelSource("b"))
    assert load_settings({"MODEL_URI": "a,b"}).models == (ModelSource("a"), ModelSource("b"))


def test_environment_ignores_unrelated_names_but_mapping_is_strict():
    assert load_settings({"HOME": "/root", "AWS_REGION": "eu-west-1"}).model_uri
    with pytest.raises(ConfigError, match="HOME: not a setting"):
        load_settings({"HOME": "/root"}, strict=True)


def test_server_settings_defaults_fit_alb_and_ecs():
    s = load_server_settings({})
    assert s.web_concurrency == 2 and s.server_front == "nginx"
    assert s.server_keepalive > 60                # ALB idle timeout
    assert s.server_graceful_timeout < 30         # ECS's and SageMaker's stop timeout
    assert s.server_header_timeout == s.server_body_timeout == 10
    assert load_server_settings({"PORT": "9000"}).bind == "0.0.0.0:9000"
    assert load_server_settings({"PORT": "9000", "BIND": "127.0.0.1:1"}).bind == "127.0.0.1:1"


@pytest.mark.parametrize("env, word", [
    ({"PORT": "70000"}, "PORT='70000'"), ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ({"SERVER_FRONT": "gunicorn"}, "nginx, auto, none"),
    ({"SERVER_GRACEFUL_TIMEOUT": "500"}, "SERVER_GRACEFUL_TIMEOUT"),
    ({"SERVER_HEADER_TIMEOUT": "0"}, "SERVER_HEADER_TIMEOUT='0'"),
    ({"SERVER_BODY_TIMEOUT": "soon"}, "SERVER_BODY_TIMEOUT='soon': must be a whole number"),
    ({"BIND": "8080"}, "BIND='8080': must be host:port"),
    # digits of other scripts pass str.isdigit() and int(), but not nginx's listen
    ({"BIND": "0.0.0.0:\uff18\uff10\uff18\uff10"}, "BIND='0.0.0.0:.*': must be host:port"),
])
def test_bad_server_settings(env, word):
    with pytest.raises(ConfigError, match=word.replace("(", r"\(")):
        load_server_settings(env)


def test_every_field_has_exactly_one_rule():
    """The tables are the settings: a dataclass field without a row could never be set."""
    from dataclasses import fields

    from app.config import APP_RULES, SERVER_RULES, ServerSettings, Settings

    assert [f for _, f, _ in APP_RULES] == [f.name for f in fields(Settings)]
    assert {f for _, f, _ in SERVER_RULES} == {f.name for f in fields(ServerSettings)}


def test_create_app_rejects_unknown_keys(settings):
    from app import create_app

    with pytest.raises(ConfigError, match="MAX_BATCH: not a setting"):
        create_app({**settings, "MAX_BATCH": "3"})
