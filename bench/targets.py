"""`make bench-targets`: the one image started as each target starts it, cold, to its first answer.

    ecs        `docker run IMAGE` (its CMD), model mounted       -> first 200 from predict
    sagemaker  `docker run IMAGE serve`, model at /opt/ml/model   -> first 200 from /ping,
                                                                      then from /invocations
    lambda     entry point awslambdaric, command the handler,     -> init (first poll of the
               a fake Runtime API on loopback (tests/lambda_runtime.py)   Runtime API), then the
                                                                      first response to a predict

Every start is timed from `docker run` (so ~0.2 s of container creation is in each figure),
read-only root with a tmpfs /tmp, targets interleaved run by run so machine noise falls on
all of them alike; medians of --runs. Goal (issue 9): SageMaker's first /ping and Lambda's
first response both under 1 s here. Progress on stderr, table and summary on stdout, JSON in
bench/results/targets.json. `make bench-image` runs the same measurement on its image.

Usage: python bench/targets.py [--runs 5] [--image TAG] [--json PATH]
Needs a Docker engine (`eval "$(bash ../shared/tools/docker-env.sh)"` on CI hosts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from tests.function_url import event  # noqa: E402
from tests.lambda_runtime import FakeRuntimeApi  # noqa: E402

MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
DOCKER = os.environ.get("DOCKER") or shutil.which("docker") or "docker"
ENV = {**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "1")}
LOCKED = ["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=512m"]
ROW = ",".join(["0"] * 64).encode()
GOAL_S = 1.0


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} ... failed ({proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(url: str, cid: str, t0: float, data: bytes | None = None, headers: dict | None = None,
          timeout: float = 60) -> float:
    """Seconds from t0 until ``url`` answers 200 (every 5 ms); exits if the container dies."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            req = urllib.request.Request(url, data=data, headers=headers or {})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() > deadline:
            logs = docker("logs", cid, check=False)
            raise SystemExit(f"{url}: no 200 within {timeout:.0f} s:\n{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.005)


def ecs(image: str) -> dict:
    port = free_port()
    t0 = time.perf_counter()
    cid = docker("run", "-d", "--network", "host", *LOCKED, "-e", f"PORT={port}",
                 "-e", "MODEL_URI=/model", "-v", f"{MODEL_DIR}:/model:ro", image).stdout.strip()
    try:
        return {"first_prediction_s": _poll(
            f"http://127.0.0.1:{port}/v1/models/digits:predict", cid, t0,
            data=b'{"instances": [[' + ROW + b"]]}", headers={"Content-Type": "application/json"})}
    finally:
        docker("rm", "-f", cid, check=False)


def sagemaker(image: str) -> dict:
    port = free_port()
    t0 = time.perf_counter()
    cid = docker("run", "-d", "--network", "host", *LOCKED, "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                 "-v", f"{MODEL_DIR}:/opt/ml/model:ro", image, "serve").stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        ping = _poll(f"{url}/ping", cid, t0)
        invocation = _poll(f"{url}/invocations", cid, t0, data=ROW,
                           headers={"Content-Type": "text/csv", "Accept": "text/csv"})
        return {"first_ping_s": ping, "first_invocation_s": invocation}
    finally:
        docker("rm", "-f", cid, check=False)


def lambda_(image: str) -> dict:
    with FakeRuntimeApi() as api:
        t0 = time.monotonic()
        cid = docker("run", "-d", "--network", "host", *LOCKED, "--user", "993:990",
                     "--entrypoint", "/opt/venv/bin/python3", "-e", f"AWS_LAMBDA_RUNTIME_API={api.address}",
                     "-e", "MODEL_URI=/model", "-v", f"{MODEL_DIR}:/model:ro",
                     image, "-m", "awslambdaric", "app.lambda_handler.handler").stdout.strip()
        try:
            answer = api.invoke(event("iam_predict"), timeout=60)
            if answer.kind != "response" or answer.json()["statusCode"] != 200:
                raise SystemExit(f"lambda: unexpected answer {answer.body[:500]!r}")
            return {"init_s": api.first_next_at - t0, "first_response_s": answer.at - t0}
        finally:
            docker("rm", "-f", cid, check=False)


TARGETS = {"ecs": ecs, "sagemaker": sagemaker, "lambda": lambda_}


def measure(image: str, runs: int, progress: report.Progress | None = None) -> dict:
    """{target: {metric: median seconds, metric + "_all": [...]}} over ``runs`` interleaved
    rounds; each start one step of ``progress`` when given."""
    samples: dict = {name: {} for name in TARGETS}
    for n in range(runs):
        for name, start in TARGETS.items():
            with progress.step(f"round {n + 1}/{runs}: {name}") if progress else nullcontext():
                for metric, seconds in start(image).items():
                    samples[name].setdefault(metric, []).append(seconds)
    return {name: {**{m: statistics.median(v) for m, v in metrics.items()},
                   **{f"{m}_all": [round(s, 3) for s in v] for m, v in metrics.items()}}
            for name, metrics in samples.items()}


def goals(results: dict) -> dict[str, bool]:
    return {f"SageMaker: `serve` to first /ping 200 under {GOAL_S:g} s":
            results["sagemaker"]["first_ping_s"] < GOAL_S,
            f"Lambda: init to first response through the Runtime API under {GOAL_S:g} s":
            results["lambda"]["first_response_s"] < GOAL_S}


def table(results: dict) -> str:
    rows = [("ecs", "docker run -> first prediction", "first_prediction_s"),
            ("sagemaker", "docker run IMAGE serve -> first /ping 200", "first_ping_s"),
            ("sagemaker", "  ... -> first /invocations 200", "first_invocation_s"),
            ("lambda", "docker run -> init done (first poll)", "init_s"),
            ("lambda", "  ... -> first response (predict)", "first_response_s")]
    lines = [f"{'target':<11}{'cold start, median of runs':<46}{'seconds':>8}   all runs"]
    for target, label, metric in rows:
        r = results[target]
        lines.append(f"{target:<11}{label:<46}{r[metric]:>8.3f}   {r[metric + '_all']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    tag = os.environ.get("ML_APP_TEST_IMAGE", "ml-app:test")
    ap.add_argument("--image", default=tag, help=f"image to start (default {tag}); built first "
                                                 "unless --no-build")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "targets.json"))
    args = ap.parse_args()
    # expected seconds per step, for the progress line's estimate
    plan = ([] if args.no_build else [("build", 20)]) + [("start", 0.8)] * (args.runs * len(TARGETS))
    progress = report.Progress("bench-targets", plan)
    if not args.no_build:
        with progress.step(f"building {args.image}"):
            docker("build", "--network", "host", "-t", args.image, str(ROOT), timeout=1800)
    results = measure(args.image, args.runs, progress)
    print(table(results))
    met = goals(results)
    print()
    report.print_targets(met)
    report.write_results({"when": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                          "image": args.image, "runs": args.runs, "cpus": os.cpu_count(),
                          "results": results, "goals": met}, Path(args.json))
    progress.finish(f"sagemaker /ping {results['sagemaker']['first_ping_s']:.2f} s, lambda "
                    f"first response {results['lambda']['first_response_s']:.2f} s, ecs first "
                    f"prediction {results['ecs']['first_prediction_s']:.2f} s, medians of "
                    f"{args.runs} runs; {report.targets_met(met)}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
