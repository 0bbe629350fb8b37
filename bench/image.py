"""`make bench-image`: our image and a seed-style image, side by side in one run.

For each image: size, cold build time (no layer cache; the base image is local), rebuild
time after a code-only change, `docker run` to the first successful prediction (median of
--runs), and requests/s at concurrency 8 (wrk when installed, else a Python client; the
client runs on the same 2 cores as the server, so compare within one run only). Then the
ratios and the targets of issue 3: ours at least 5x smaller, cold start at least 5x faster
and under 2 s, code-only rebuild under 10 s. Then our image started as each deployment
target starts it (bench/targets.py: ECS, SageMaker's `serve`, Lambda through a fake Runtime
API) and issue 9's goals: SageMaker's first /ping and Lambda's first response under 1 s.

Both images are built from temporary copies of their build contexts, so the code-only
change never touches the working tree:
  ours  the repository's Dockerfile + .dockerignore + app/; the model is mounted read-only
        and the container runs locked down (--read-only, tmpfs /tmp), as in production.
  seed  bench/seed.Dockerfile with bench/seed_app.py as app.py, bench/seed-requirements.txt
        and the committed model version baked in.

Shows progress on stderr, writes the results as JSON, draws docs/figures/image.svg from that
JSON (bench/report.py) and ends with a one-line summary.

Usage: python bench/image.py [--runs 5] [--duration 15] [--no-cold] [--json PATH]
Needs a Docker engine (`eval "$(bash ../shared/tools/docker-env.sh)"` on CI hosts).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import report, targets  # noqa: E402
from bench.targets import docker, free_port  # noqa: E402

MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
PREDICT = "/v1/models/digits:predict"
# Image tags ml-app:<TAG> and ml-app-seed:<TAG>. On a shared engine, ML_APP_TEST_IMAGE
# (ml-app:test-<name>) gives each developer's run its own tags (test-<name>-bench).
_TEST_TAG = os.environ.get("ML_APP_TEST_IMAGE", "").partition(":")[2]
TAG = f"{_TEST_TAG}-bench" if _TEST_TAG else "bench"
# one held-out-like digit (a zero), as a single-instance request: the online-inference case
BODY = json.dumps({"instances": [[0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3,
                                  15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0,
                                  9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0,
                                  0, 0, 6, 13, 10, 0, 0, 0]]}).encode()


class Image:
    def __init__(self, name: str, tag: str, context: Path, dockerfile: Path, code_file: Path,
                 run_args: list[str]):
        self.name, self.tag, self.context, self.dockerfile = name, tag, context, dockerfile
        self.code_file, self.run_args = code_file, run_args
        self.results: dict = {}

    def build(self, no_cache: bool) -> float:
        argv = ["build", "--network", "host", "-f", str(self.dockerfile), "-t", self.tag]
        if no_cache:
            argv.append("--no-cache")
        before = self.image_id()
        t0 = time.perf_counter()
        docker(*argv, str(self.context), timeout=3600)
        seconds = time.perf_counter() - t0
        if before and before != self.image_id():   # the tag moved: drop the old image
            docker("image", "rm", before, check=False)
        return seconds

    def image_id(self) -> str:
        return docker("image", "inspect", "-f", "{{.Id}}", self.tag, check=False).stdout.strip()

    def size(self) -> int:
        return int(docker("image", "inspect", "-f", "{{.Size}}", self.tag).stdout)

    def start(self) -> tuple[str, int]:
        port = free_port()
        cid = docker("run", "-d", "--network", "host", "-e", f"PORT={port}", *self.run_args,
                     self.tag).stdout.strip()
        return cid, port


def contexts(tmp: Path) -> tuple[Image, Image]:
    ours = tmp / "ours"
    ours.mkdir()
    shutil.copy2(ROOT / "Dockerfile", ours / "Dockerfile")
    shutil.copy2(ROOT / ".dockerignore", ours / ".dockerignore")
    shutil.copytree(ROOT / "app", ours / "app",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    seed = tmp / "seed"
    (seed / "model").mkdir(parents=True)
    shutil.copy2(ROOT / "bench" / "seed_app.py", seed / "app.py")
    shutil.copy2(ROOT / "bench" / "seed-requirements.txt", seed / "requirements.txt")
    for f in MODEL_DIR.iterdir():
        shutil.copy2(f, seed / "model" / f.name)
    return (
        Image("ours", f"ml-app:{TAG}", ours, ours / "Dockerfile", ours / "app" / "routes.py",
              ["--read-only", "--tmpfs", "/tmp", "-v", f"{MODEL_DIR}:/model:ro",
               "-e", "MODEL_URI=/model"]),
        Image("seed", f"ml-app-seed:{TAG}", seed, ROOT / "bench" / "seed.Dockerfile",
              seed / "app.py", []),
    )


def post(port: int, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", PREDICT, body=BODY, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_prediction(img: Image, cid: str, port: int, timeout: float = 180) -> None:
    """Poll the predict endpoint every 10 ms until it answers 200."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if post(port, timeout=30) == 200:
                return
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise SystemExit(f"{img.name}: no prediction within {timeout:.0f} s:\n"
                             f"{docker('logs', cid, check=False).stderr[-3000:]}")
        time.sleep(0.01)


def first_prediction(img: Image, runs: int) -> list[float]:
    """`docker run` to the first 200 from the predict endpoint."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        cid, port = img.start()
        try:
            wait_prediction(img, cid, port)
            times.append(time.perf_counter() - t0)
        finally:
            docker("rm", "-f", cid, check=False)
    return times


WRK_LUA = f"""wrk.method = "POST"
wrk.body = '{BODY.decode()}'
wrk.headers["Content-Type"] = "application/json"
"""


def load(port: int, seconds: int, concurrency: int = 8) -> dict:
    wrk = shutil.which("wrk")
    if wrk:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_LUA)
        try:
            out = subprocess.run([wrk, "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency",
                                  "-s", f.name, f"http://127.0.0.1:{port}{PREDICT}"],
                                 capture_output=True, text=True, timeout=seconds + 60).stdout
        finally:
            os.unlink(f.name)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        sock = re.search(r"Socket errors:.*", out)
        p50 = re.search(r"50%\s+(\S+)", out)
        return {"client": "wrk -t2", "rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                "socket_errors": sock.group(0) if sock else "", "p50": p50.group(1) if p50 else "?"}
    # fallback: threads with one connection per request
    stop = time.perf_counter() + seconds
    counts = {"ok": 0, "err": 0}
    lock = threading.Lock()

    def worker():
        while time.perf_counter() < stop:
            try:
                ok = post(port, timeout=30) == 200
            except OSError:
                ok = False
            with lock:
                counts["ok" if ok else "err"] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"client": "python threads", "rps": counts["ok"] / seconds, "non_2xx": counts["err"],
            "socket_errors": "", "p50": "?"}


def throughput(img: Image, seconds: int) -> dict:
    cid, port = img.start()
    try:
        wait_prediction(img, cid, port)
        for _ in range(20):                      # warm-up
            post(port, timeout=30)
        result = load(port, seconds)
        mem = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid).stdout.strip()
        result["memory"] = mem.split("/")[0].strip()
        return result
    finally:
        docker("rm", "-f", cid, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="cold starts per image (median)")
    ap.add_argument("--duration", type=int, default=15, help="seconds of load per image")
    ap.add_argument("--no-cold", action="store_true", help="skip the no-cache builds")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "image.json"))
    args = ap.parse_args()

    if docker("version", "--format", "{{.Server.Version}}", check=False).returncode != 0:
        raise SystemExit("no Docker engine answers (on CI hosts: "
                         'eval "$(bash ../shared/tools/docker-env.sh)")')
    # expected seconds per step (ours, then the seed), for the progress line's estimate
    plan = [(f"{name}: {step}", seconds) for name, build, start in (("ours", 20, 0.5), ("seed", 100, 4))
            for step, seconds in (("build", build), ("rebuilds", 2 if name == "ours" else 45),
                                  ("cold starts", args.runs * start + 2), ("load", args.duration + 5))]
    plan.append(("ours: each target's cold start", args.runs * 3 * 0.8))
    progress = report.Progress("bench-image", plan)
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        images = contexts(Path(tmp))
        for img in images:
            r = img.results
            if not args.no_cold:
                with progress.step(f"{img.name}: cold build (--no-cache)"):
                    r["cold_build_s"] = img.build(no_cache=True)
            else:
                with progress.step(f"{img.name}: build (cached layers allowed)"):
                    img.build(no_cache=False)
            r["size_bytes"] = img.size()
            with progress.step(f"{img.name}: cached rebuild, then a code-only change"):
                r["noop_rebuild_s"] = img.build(no_cache=False)
                with img.code_file.open("a") as f:
                    f.write(f"\n# bench-image code-only change {time.time_ns()}\n")
                r["code_rebuild_s"] = img.build(no_cache=False)
            with progress.step(f"{img.name}: {args.runs} cold starts to first prediction"):
                starts = first_prediction(img, args.runs)
            r["first_prediction_s"] = statistics.median(starts)
            r["first_prediction_all_s"] = [round(s, 3) for s in starts]
            with progress.step(f"{img.name}: load at concurrency 8 for {args.duration} s"):
                r["load"] = throughput(img, args.duration)
        with progress.step(f"ours: ECS, SageMaker and Lambda cold starts, {args.runs} rounds"):
            images[0].results["targets"] = targets.measure(images[0].tag, args.runs)
    ours, seed = (i.results for i in images)

    def row(label, a, b, fmt, ratio):
        print(f"{label:<32}{fmt(a):>14}{fmt(b):>14}   {ratio}")

    print(f"\n{'':<32}{'ours':>14}{'seed':>14}   ratio")
    row("image size", ours["size_bytes"], seed["size_bytes"], report.size_text,
        f"{seed['size_bytes'] / ours['size_bytes']:.1f}x smaller")
    if "cold_build_s" in ours:
        row("cold build", ours["cold_build_s"], seed["cold_build_s"], lambda v: f"{v:.1f} s",
            f"{seed['cold_build_s'] / ours['cold_build_s']:.1f}x faster")
    row("rebuild, code-only change", ours["code_rebuild_s"], seed["code_rebuild_s"],
        lambda v: f"{v:.1f} s", f"{seed['code_rebuild_s'] / ours['code_rebuild_s']:.1f}x faster")
    row("docker run -> first prediction", ours["first_prediction_s"], seed["first_prediction_s"],
        lambda v: f"{v:.2f} s",
        f"{seed['first_prediction_s'] / ours['first_prediction_s']:.1f}x faster")
    row("requests/s at concurrency 8", ours["load"]["rps"], seed["load"]["rps"],
        lambda v: f"{v:,.0f}", f"{ours['load']['rps'] / max(seed['load']['rps'], 1e-9):.1f}x more")
    row("  p50 latency", ours["load"]["p50"], seed["load"]["p50"], str, "")
    row("  memory under load", ours["load"]["memory"], seed["load"]["memory"], str, "")
    print(f"(load client: {ours['load']['client']}; errors ours {ours['load']['non_2xx']}, "
          f"seed {seed['load']['non_2xx']}; cold starts ours {ours['first_prediction_all_s']}, "
          f"seed {seed['first_prediction_all_s']})")

    print(f"\nThe same image, started as each target starts it (issue 9):\n{targets.table(ours['targets'])}")
    goals = {
        "ours at least 5x smaller": seed["size_bytes"] / ours["size_bytes"] >= 5,
        "cold start at least 5x faster": seed["first_prediction_s"] / ours["first_prediction_s"] >= 5,
        "cold start under 2 s": ours["first_prediction_s"] < 2,
        "code-only rebuild under 10 s": ours["code_rebuild_s"] < 10,
        **targets.goals(ours["targets"]),
    }
    print()
    report.print_targets(goals)
    data = {"when": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), "ours": ours, "seed": seed,
            "docker_server": docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
            "cpus": os.cpu_count(), "targets": goals}
    report.write_results(data, Path(args.json))
    report.print_drawn(report.image_figures(data))
    progress.finish(report.image_summary(data))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
