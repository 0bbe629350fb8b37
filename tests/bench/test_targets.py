"""bench/targets.py without Docker: targets are started interleaved, round by round, each
start one progress step, and each metric is the median of its runs."""

from __future__ import annotations

import io

from bench import report, targets


def test_targets_are_interleaved_and_reported_as_medians(monkeypatch):
    started = []

    def fake(name, seconds):
        def start(image):
            started.append((name, image))
            return {f"{name}_s": seconds[sum(n == name for n, _ in started) - 1]}
        return start

    monkeypatch.setattr(targets, "TARGETS", {"ecs": fake("ecs", [0.5, 0.3, 0.4]),
                                             "lambda": fake("lambda", [0.9, 0.2, 0.25])})
    log = io.StringIO()
    results = targets.measure("img", 3, report.Progress("t", [("start", 1)] * 6, stream=log))
    assert [name for name, _ in started] == ["ecs", "lambda"] * 3
    assert {image for _, image in started} == {"img"}
    assert results == {"ecs": {"ecs_s": 0.4, "ecs_s_all": [0.5, 0.3, 0.4]},
                       "lambda": {"lambda_s": 0.25, "lambda_s_all": [0.9, 0.2, 0.25]}}
    assert [line.split("] ")[1] for line in log.getvalue().splitlines()] == [
        f"round {n}/3: {name}" for n in (1, 2, 3) for name in ("ecs", "lambda")]


def test_goals_are_issue_9s_two_cold_starts():
    fast = {"sagemaker": {"first_ping_s": 0.3}, "lambda": {"first_response_s": 0.99}}
    assert list(targets.goals(fast).values()) == [True, True]
    slow = {"sagemaker": {"first_ping_s": 1.0}, "lambda": {"first_response_s": 0.5}}
    assert list(targets.goals(slow).values()) == [False, True]
