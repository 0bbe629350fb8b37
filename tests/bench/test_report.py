"""bench/report.py: figures drawn from a benchmark's JSON show every server in it, the same JSON
gives the same file, and progress and the summary line read as intended."""

from __future__ import annotations

import io
import re

import pytest

from bench import report


def serving_result(rps: float, cold: float, rss: float, levels=(1, 8, 64), **extra) -> dict:
    sweep = [{"concurrency": c, "rps": rps * (1 + 0.1 * (i - 1)), "p50_ms": 1.0 + i, "p99_ms": 2.0 + i,
              "errors": 0} for i, c in enumerate(levels)]
    return {**sweep[1], "sweep": sweep, "cold_start_s": cold, "peak_rss_mb_per_worker": rss,
            "workers": 2, **extra}


@pytest.fixture
def serving_run() -> dict:
    return {"when": "20261130T120000Z", "machine": {"cpus": 2}, "duration_s": 15,
            "concurrency": 8,
            "results": {"ours": serving_result(3000, 0.27, 55), "noop": serving_result(3900, 0.25, 54),
                        "baseline": serving_result(21.5, 3.2, 745),
                        # a peer server another benchmark adds, with and without its own label
                        "fastapi": serving_result(6400, 0.4, 60, label="FastAPI + uvicorn"),
                        "kserve": serving_result(4400, 1.1, 90)},
            "targets": {"a": True, "b": False}}


def svg_texts(path) -> str:
    return " ".join(re.findall(r">([^<>]+)</text>", path.read_text()))


def test_serving_figures_show_every_server_in_the_results(serving_run, tmp_path):
    throughput, start = report.serving_figures(serving_run, tmp_path)
    for path in (throughput, start):
        texts = svg_texts(path)
        for label in ("ours (nginx + granian + LiteRT)", "no-op ceiling", "baseline", "FastAPI + uvicorn",
                      "kserve", "20261130T120000Z"):
            assert label in texts, (path.name, label)
        assert path.stat().st_size < 100_000
    assert "64" in svg_texts(throughput)                     # the sweep's levels on the axis
    for value in ("0.27 s", "3.20 s", "745 MB"):             # bars carry their values
        assert value in svg_texts(start)


def test_a_result_without_a_sweep_is_drawn_as_its_one_point(serving_run, tmp_path):
    for result in serving_run["results"].values():
        del result["sweep"]
    throughput, _ = report.serving_figures(serving_run, tmp_path)
    assert "kserve" in svg_texts(throughput)


def test_the_same_results_draw_the_same_file(serving_run, tmp_path):
    first = [p.read_bytes() for p in report.serving_figures(serving_run, tmp_path / "a")]
    second = [p.read_bytes() for p in report.serving_figures(serving_run, tmp_path / "b")]
    assert first == second


def test_serving_summary_is_one_line_with_every_ratio(serving_run):
    line = report.serving_summary(serving_run)
    assert "\n" not in line
    assert line.startswith("ours 3,000 req/s at c=8")
    assert "140x baseline" in line and "77% of noop" in line and "47% of fastapi" in line
    assert "targets 1/2 met" in line


def test_image_figure_and_summary(tmp_path):
    data = {"when": "20261130T120000Z", "cpus": 2, "targets": {"x": True},
            "ours": {"size_bytes": 286e6, "cold_build_s": 17.4, "code_rebuild_s": 0.3,
                     "first_prediction_s": 0.46, "load": {"rps": 2285}},
            "seed": {"size_bytes": 2.74e9, "cold_build_s": 84.5, "code_rebuild_s": 39.8,
                     "first_prediction_s": 3.77, "load": {"rps": 17}}}
    (figure,) = report.image_figures(data, tmp_path)
    texts = svg_texts(figure)
    for expected in ("image size: ours 9.6x smaller", "cold build (no cache): ours 4.9x faster",
                     "ours 132.7x faster", "8.2x faster", "134.4x more", "286 MB", "2,740 MB"):
        assert expected in texts, expected
    assert report.image_summary(data) == (
        "ours 286 MB vs 2.74 GB (9.6x smaller); code-only rebuild 0.3 s vs 39.8 s; first "
        "prediction 0.46 s vs 3.77 s; 2,285 vs 17 req/s; targets 1/1 met")


def test_progress_numbers_steps_and_estimates_what_is_left(capsys):
    log = io.StringIO()
    progress = report.Progress("bench", [("a", 1.0), ("b", 1.0), ("c", 2.0)], stream=log)
    for name in ("first", "second", "third"):
        with progress.step(name):
            pass
    lines = log.getvalue().splitlines()
    assert [line.split("] ")[1] for line in lines] == ["first", "second", "third"]
    assert lines[0].startswith("[bench 1/3 0s]")
    assert re.match(r"\[bench 3/3 0s, ~\d+s left\]", lines[2])
    progress.finish("all good")
    assert re.fullmatch(r"bench: all good \(0s\)\n", capsys.readouterr().out)


def test_progress_scales_what_is_left_by_how_the_steps_so_far_compared(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(report.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    progress = report.Progress("bench", [("a", 10.0), ("b", 20.0), ("c", 60.0)], stream=log)
    for took in (20, 40, 0):                    # the first two steps take twice their plan
        with progress.step("x"):
            clock[0] += took
    assert [line.split("] ")[0] + "]" for line in log.getvalue().splitlines()] == [
        "[bench 1/3 0s]", "[bench 2/3 20s, ~2m40s left]", "[bench 3/3 1m00s, ~2m00s left]"]


def test_the_summary_gives_a_second_models_cost_as_its_paired_ratio(serving_run):
    serving_run["results"]["ours-2models"] = serving_result(1500, 0.3, 55)   # another time
    serving_run["ratios"] = {"two_models_vs_one_rps": 1.01}
    line = report.serving_summary(serving_run)
    assert "with a second model 101% of its req/s" in line
    assert "of ours-2models" not in line and "2x ours-2models" not in line
