"""Serving benchmark: our service against a seed-style baseline, side by side, in one run.

    python bench/serving.py [--duration 15] [--concurrency 8]      (make bench)

Starts, one at a time on loopback:
  ours      gunicorn + app/gunicorn_conf.py + LiteRT (the production configuration)
  noop      our service with one extra no-op endpoint (reads the body, answers a constant):
            the framework ceiling of our own server configuration
  baseline  Flask's development server calling Keras model.predict per request
and drives each with the same bounded load (wrk with a POST script; a Python generator when
wrk is absent) at the headline concurrency and at each --sweep level. Also measures cold start
(process start to first successful prediction) and peak RSS per worker. Prints a table and
ratios at the headline concurrency, writes JSON under bench/results/, and draws the figures
of docs/performance.md from that JSON (bench/report.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
BIN = Path(sys.executable).parent
PATH = "/v1/models/digits:predict"
PATHS = {"ours": PATH, "noop": "/bench/noop", "baseline": PATH}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_body() -> str:
    from model.data import load_split

    return json.dumps({"instances": [load_split().x_test[0].astype(int).tolist()]})


def post(port: int, body: str, timeout: float = 5.0, path: str = PATH) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def start(kind: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_URI", "WEB_CONCURRENCY")}
    env["PYTHONPATH"] = str(ROOT)
    if kind == "baseline":
        cmd = [sys.executable, str(ROOT / "bench" / "baseline_app.py"), str(MODEL_DIR), str(port)]
    else:
        app = "app.wsgi:app" if kind == "ours" else "bench.noop_app:app"
        cmd = [str(BIN / "gunicorn"), "-c", "app/gunicorn_conf.py", app]
        env.update(BIND=f"127.0.0.1:{port}", MODEL_URI=str(MODEL_DIR), METRICS_ENABLED="true")
    # Logs to /dev/null: the benchmark measures serving, and an unread pipe would block.
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def cold_start(kind: str, port: int, body: str, limit: float = 120) -> tuple[subprocess.Popen, float]:
    """Start the server and poll with a real prediction until one succeeds."""
    t0 = time.perf_counter()
    proc = start(kind, port)
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode} during start-up")
        try:
            if post(port, body, timeout=2, path=PATHS[kind]) == 200:
                return proc, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.005)
    stop(proc)
    raise RuntimeError(f"{kind} gave no successful prediction within {limit}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_pids(proc: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    pids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return pids or [proc.pid]  # the development server is a single process


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(port: int, path: str, body: str, duration: int, concurrency: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(min(2, concurrency)), "-c", str(concurrency), "-d", f"{duration}s", "--latency",
         "--timeout", "10s", "-s", str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env={**os.environ, "BENCH_BODY": body},
        timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"\s(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"requests": total, "rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "errors": errors, "generator": "wrk"}


def load_python(port: int, path: str, body: str, duration: int, concurrency: int) -> dict:
    """Fallback load generator: keep-alive-free HTTP clients in threads (slower than wrk)."""
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + duration
    lock = threading.Lock()

    def worker():
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                ok = post(port, body, timeout=10, path=path) == 200
            except OSError:
                ok = False
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    n = len(latencies)
    return {"requests": n + errors[0], "rps": n / duration,
            "p50_ms": latencies[n // 2] if n else None,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] if n else None,
            "errors": errors[0], "generator": "python"}


def measure(kind: str, body: str, duration: int, levels: list[int], headline: int,
            progress: report.Progress) -> dict:
    """Cold start, then load at each concurrency level; the result's top-level figures are
    the headline level's, and ``sweep`` holds every level's."""
    port = free_port()
    with progress.step(f"{kind}: start to first prediction"):
        proc, cold = cold_start(kind, port, body)
    try:
        load = load_wrk if shutil.which("wrk") else load_python
        sweep = []
        for concurrency in levels:
            with progress.step(f"{kind}: {duration} s of load at concurrency {concurrency}"):
                sweep.append({"concurrency": concurrency,
                              **load(port, PATHS[kind], body, duration, concurrency)})
        result = {k: v for k, v in sweep[levels.index(headline)].items() if k != "concurrency"}
        result["sweep"] = sweep
        result["cold_start_s"] = cold
        result["peak_rss_mb_per_worker"] = max(peak_rss_mb(p) for p in worker_pids(proc))
        result["workers"] = len(worker_pids(proc))
    finally:
        stop(proc)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per server")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="the headline level: table, ratios and targets")
    parser.add_argument("--sweep", default="1,64",
                        help="more concurrency levels for the figure, comma-separated ('' for none)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    try:
        levels = sorted({args.concurrency, *(int(c) for c in args.sweep.split(",") if c.strip())})
    except ValueError:
        parser.error(f"--sweep must be comma-separated whole numbers; got {args.sweep!r}")
    if not 1 <= args.duration <= 300 or not all(1 <= c <= 256 for c in levels):
        parser.error("--duration must be 1..300 s and --concurrency and --sweep levels 1..256")

    body = sample_body()
    kinds = ("ours", "noop", "baseline")
    progress = report.Progress("bench", [
        (step, seconds) for kind in kinds
        for step, seconds in [("start", 5 if kind == "baseline" else 1)]
        + [("load", args.duration + 1)] * len(levels)])
    results = {}
    for kind in kinds:
        results[kind] = measure(kind, body, args.duration, levels, args.concurrency, progress)

    ours, noop, base = results["ours"], results["noop"], results["baseline"]
    ratios = {
        "ours_vs_baseline_rps": ours["rps"] / base["rps"] if base["rps"] else None,
        "ours_vs_noop_rps": ours["rps"] / noop["rps"] if noop["rps"] else None,
        "baseline_vs_ours_cold_start": base["cold_start_s"] / ours["cold_start_s"],
    }
    targets = {
        "ours >= 50x baseline req/s": ratios["ours_vs_baseline_rps"] >= 50,
        "ours >= 70% of no-op req/s": ratios["ours_vs_noop_rps"] >= 0.70,
        "zero errors": ours["errors"] == 0,
        "cold start < 1 s": ours["cold_start_s"] < 1.0,
        "RSS per worker < 150 MB": ours["peak_rss_mb_per_worker"] < 150,
    }

    header = f"{'server':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cold s':>8}{'RSS MB':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for kind, r in results.items():
        print(f"{kind:<10}{r['rps']:>10.1f}{r['p50_ms'] or 0:>9.2f}{r['p99_ms'] or 0:>9.2f}"
              f"{r['errors']:>8}{r['cold_start_s']:>8.2f}{r['peak_rss_mb_per_worker']:>8.0f}")
    print(f"\nours / baseline req/s:      {ratios['ours_vs_baseline_rps']:.1f}x")
    print(f"ours / no-op ceiling req/s: {ratios['ours_vs_noop_rps']:.0%}")
    print(f"baseline / ours cold start: {ratios['baseline_vs_ours_cold_start']:.1f}x")
    for name, ok in targets.items():
        print(f"  [{'ok' if ok else 'MISS'}] {name}")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"serving-{stamp}.json"
    data = {"when": stamp, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "duration_s": args.duration, "concurrency": args.concurrency,
            "results": results, "ratios": ratios, "targets": targets}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    figures = report.serving_figures(data)
    print("drew " + ", ".join(str(f.relative_to(ROOT)) for f in figures))
    progress.finish(report.serving_summary(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
