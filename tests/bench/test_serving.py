"""bench/serving.py without servers: the paired 1-vs-2-models comparison alternates its rounds
and reports medians and their ratios, and the summary prints every target and writes the JSON
the figures are drawn from. (Running the benchmark itself is `make bench`.)"""

from __future__ import annotations

import argparse
import io
import json

import pytest

from bench import report, serving

# req/s of each round, in the order the rounds run: digits alone ("ours"), then both models
RPS = {"ours": [1000, 1100, 900, 1050, 950], "ours-2models": [980, 1200, 800, 1000, 990]}
CPU = {"ours": [100, 110, 90, 105, 95], "ours-2models": [101, 120, 80, 99, 100]}


@pytest.fixture
def fake_servers(monkeypatch):
    """Servers that are never started: each load returns the next figures of its kind."""
    order: list[str] = []
    procs = {}

    def cold_start(kind, port, body, runtime):
        procs[kind] = argparse.Namespace(pid=len(procs) + 1, kind=kind)
        return procs[kind], 0.25

    def load_with_cpu(proc, port, path, body, duration, concurrency):
        n = order.count(proc.kind) % len(RPS[proc.kind])
        order.append(proc.kind)
        return {"requests": 100 * duration, "rps": RPS[proc.kind][n], "p50_ms": 1.0 + n,
                "p99_ms": 2.0 + n, "errors": 0, "cpu_us_per_request": CPU[proc.kind][n]}

    monkeypatch.setattr(serving, "cold_start", cold_start)
    monkeypatch.setattr(serving, "load_with_cpu", load_with_cpu)
    monkeypatch.setattr(serving, "stop", lambda proc: None)
    monkeypatch.setattr(serving, "worker_rss_mb", lambda pid: 50.0 + pid)
    monkeypatch.setattr(serving, "model_memory", lambda: {"imports_mb": 40.0})
    return order


def test_two_models_are_measured_in_alternating_rounds_with_median_ratios(fake_servers):
    progress = report.Progress("bench", [("load", 1)] * 3, stream=io.StringIO())
    two = serving.compare_two_models("{}", duration=10, levels=[8], headline=8,
                                     progress=progress, rounds=5)
    a, b = "ours", "ours-2models"
    assert fake_servers == [a, b, b, a, a, b, b, a, a, b]          # ABBAABBAAB: drift hits both
    assert two["seconds_per_round"] == 2
    assert two["ratios_by_concurrency"][8] == pytest.approx(
        {"rps": 990 / 1000, "cpu_us_per_request": 100 / 100})      # medians (means: 994)
    ours, both = two["results"][a], two["results"][b]
    assert (ours["rps"], both["rps"]) == (1000, 990)
    assert both["requests"] == 5 * 200 and both["errors"] == 0
    assert both["sweep"] == [{"concurrency": 8, **{k: both[k] for k in both if k in (
        "rps", "p50_ms", "p99_ms", "cpu_us_per_request", "requests", "errors")}}]
    assert both["paired"] and both["cold_start_s"] == 0.25
    assert two["peak_rss"] == {a: 51.0, b: 52.0}
    assert [len(level["rounds"][b]) for level in two["paired"]] == [5]


def serving_result(rps: float, **extra) -> dict:
    sweep = [{"concurrency": c, "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0 * c, "errors": 0,
              "cpu_us_per_request": 200, "requests": 1000} for c in (1, 8, 64)]
    return {**{k: v for k, v in sweep[1].items() if k != "concurrency"}, "sweep": sweep,
            "cold_start_s": 0.3, "peak_rss_mb_per_worker": 60.0, **extra}


def test_summary_prints_every_target_and_writes_what_the_figures_are_drawn_from(
        tmp_path, monkeypatch, capsys):
    drawn = []
    monkeypatch.setattr(report, "serving_figures", lambda data: drawn.append(data) or [])
    slow = {"seconds": 30, "requests": 900, "succeeded": 900, "p99_ms": 3.0,
            "readyz_at_end": 200, "slow_connections": 128}
    results = {"ours": serving_result(9000, slow_clients=slow),
               "baseline": serving_result(100), "gunicorn-sync": serving_result(4500),
               "fastapi": serving_result(8000), "kserve": serving_result(10000)}
    args = argparse.Namespace(concurrency=8, duration=15, slow_seconds=30, out=tmp_path)
    data = serving.summarise(results, args)
    out = capsys.readouterr().out
    assert data["ratios"] == pytest.approx({"ours_vs_fastest_peer_rps": 0.9,
                                            "ours_vs_gunicorn_sync_rps": 2.0,
                                            "ours_vs_baseline_rps": 90.0})
    assert data["targets"] == {
        "req/s c=8 >= the fastest peer's": False, "p99 at c=64 <= gunicorn sync's (today's)": True,
        "ours >= 50x baseline req/s": True,
        "slow clients: every prediction 200, p99 < 100 ms, ready": True, "zero errors": True,
        "cold start < 1 s": True, "RSS per worker < 150 MB": True}
    assert "  MISS  req/s c=8 >= the fastest peer's" in out
    assert "  ok    zero errors" in out
    (written,) = tmp_path.glob("serving-*.json")
    assert json.loads(written.read_text()) == json.loads(json.dumps(data))
    assert drawn == [data]
