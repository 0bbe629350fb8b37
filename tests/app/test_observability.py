"""One JSON log line per request, and CloudWatch EMF documents that follow the spec."""

from __future__ import annotations

import io
import json

import jsonschema
import pytest

from app.observability import EmfMetrics

# The structure CloudWatch requires of an EMF document (docs: "Specification: Embedded
# metric format"): root members, _aws metadata, directives referencing root members.
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {"_aws": {
        "type": "object", "required": ["Timestamp", "CloudWatchMetrics"],
        "properties": {
            "Timestamp": {"type": "integer", "minimum": 0},
            "CloudWatchMetrics": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["Namespace", "Dimensions", "Metrics"],
                "properties": {
                    "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                    "Dimensions": {"type": "array", "items": {
                        "type": "array", "maxItems": 30, "items": {"type": "string"}}},
                    "Metrics": {"type": "array", "maxItems": 100, "items": {
                        "type": "object", "required": ["Name"],
                        "properties": {"Name": {"type": "string"},
                                       "Unit": {"enum": ["Count", "Milliseconds", "Seconds", "None"]}}}},
                }}},
        }}},
}


def _check_emf(doc: dict) -> None:
    jsonschema.validate(doc, EMF_SCHEMA)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dims in directive["Dimensions"]:
            for d in dims:
                assert isinstance(doc[d], str), f"dimension {d} must be a string member"
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100 and all(isinstance(v, (int, float)) for v in values)


def test_request_log_line_has_required_fields(settings, capsys):
    from app import create_app

    client = create_app(settings).test_client()
    capsys.readouterr()
    client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]},
                headers={"X-Amzn-Trace-Id": "Root=1-abc"})
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert {"time", "level", "method", "path", "status", "latency_ms", "model",
            "model_version", "request_id"} <= set(line)
    assert (line["method"], line["status"], line["model"], line["model_version"],
            line["request_id"]) == ("POST", 200, "digits", "1", "Root=1-abc")
    assert line["latency_ms"] > 0


def test_prediction_metrics_are_emitted_as_valid_emf(settings, capsys):
    from app import create_app

    client = create_app({**settings, "METRICS_ENABLED": "true"}).test_client()
    service = client.application.extensions["ml_app"]
    capsys.readouterr()
    client.post("/v1/models/digits:predict", json={"instances": [[0] * 64] * 3})
    client.post("/v1/models/digits:predict", json={"instances": []})
    client.get("/healthz")  # not a prediction: not counted
    service.metrics.flush()
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert len(docs) == 1
    doc = docs[0]
    _check_emf(doc)
    assert (doc["Model"], doc["ModelVersion"]) == ("digits", "1")
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "ModelVersion"]]
    assert (doc["PredictionRequests"], doc["Predictions"], doc["PredictionErrors"]) == (2, 3, 1)
    assert len(doc["PredictionLatency"]) == 2


def test_emf_flushes_at_100_values_and_on_time():
    out = io.StringIO()
    now = [0.0]
    m = EmfMetrics("ns", flush_seconds=10, stream=out, clock=lambda: now[0])
    for _ in range(250):
        m.record(("digits", "1"), 1.5, 1, False)
    docs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [len(d["PredictionLatency"]) for d in docs] == [100, 100]
    now[0] = 11.0
    m.record(("digits", "1"), 2.0, 1, True)  # 51 buffered and the interval has passed
    docs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(docs) == 3 and docs[-1]["PredictionRequests"] == 51 and docs[-1]["PredictionErrors"] == 1
    for d in docs:
        _check_emf(d)
    m.flush()
    assert len(out.getvalue().splitlines()) == 3  # nothing left: no empty document


@pytest.mark.parametrize("level, shown", [("INFO", True), ("ERROR", False)])
def test_log_level_filters(level, shown):
    from app.observability import JsonLog

    out = io.StringIO()
    JsonLog(out, level).write("INFO", event="x")
    assert bool(out.getvalue()) is shown


@pytest.mark.parametrize("given, kept", [
    ("abc-123", True), ("Root=1-67891233-abcdef012345678912345678", True), ("x" * 128, True),
    ("x" * 129, False), ("has space", False), ("tab\tin", False), ("", False),
])
def test_a_client_request_id_is_echoed_only_if_short_and_printable(client, given, kept):
    r = client.get("/healthz", headers={"X-Request-Id": given})
    assert (r.headers["X-Request-Id"] == given) is kept
    if not kept:
        assert len(r.headers["X-Request-Id"]) == 32      # a new uuid4, hex


def test_forwarded_for_is_logged_as_given_but_bounded_and_escaped(client, capsys):
    client.get("/healthz", headers={"X-Forwarded-For": "10.0.0.1\x1b[31m, " + "9.9.9.9, " * 100})
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")][-1]
    assert line["client"].startswith("10.0.0.1\\x1b[31m, 9.9.9.9")
    assert len(line["client"]) < 300 and line["client"].endswith("chars)")


def test_each_model_version_gets_its_own_emf_document():
    """EMF holds one value per dimension in a document: two models, two documents."""
    out = io.StringIO()
    m = EmfMetrics("ns", flush_seconds=10, stream=out, clock=lambda: 0.0)
    m.record(("digits", "1"), 1.0, 4, False)
    m.record(("diabetes", "1"), 2.0, 1, True)
    m.record(("digits", "2"), 3.0, 2, False)
    m.record(("digits", "1"), 4.0, 1, False)
    m.flush()
    docs = {(d["Model"], d["ModelVersion"]): d for d in map(json.loads, out.getvalue().splitlines())}
    assert set(docs) == {("digits", "1"), ("diabetes", "1"), ("digits", "2")}
    for doc in docs.values():
        _check_emf(doc)
    assert (docs["digits", "1"]["PredictionRequests"], docs["digits", "1"]["Predictions"]) == (2, 5)
    assert docs["diabetes", "1"]["PredictionErrors"] == 1
    assert docs["digits", "2"]["PredictionLatency"] == [3.0]
