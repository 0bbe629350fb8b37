"""Serving benchmark: our service against the fronts it was chosen over and against peer
model servers, side by side, in one run.

    python bench/serving.py [--duration 15] [--slow-seconds 30]      (make bench)

Starts, one at a time on loopback, each serving digits v1 with two workers:
  ours              python -m app.server: nginx + granian + the app (production)
  ours-2models      the same, serving diabetes v1 beside digits v1 (MODEL_URI=digits,diabetes);
                    the load goes to digits, the default: what a second model costs it.
                    Measured paired with ours: both run, and take the load in alternating
                    rounds (AB BA AB ...) at each level, so the machine's drift hits both alike
  noop              the same front and app with a no-op endpoint (the ceiling of that stack)
  baseline          Flask's development server calling Keras model.predict per request
  gunicorn-sync     the previous front: gunicorn, 2 sync workers, the same app
  gunicorn-gthread  gunicorn's threaded worker (4 threads, timeouts), the same app
  nginx+gunicorn    gunicorn sync behind the same nginx (SageMaker's BYOC pattern)
  granian           granian alone (SERVER_FRONT=none), the same app
  fastapi           peer: FastAPI + uvicorn[standard], same LiteRT call (bench/peers/)
  kserve            peer: KServe 0.21's model server, same LiteRT call (bench/peers/)
The peers run in their own virtualenvs under bench/.venvs/, made on first use from
bench/peers/*-requirements.txt (never the project's requirements).

Each gets the same load (wrk, one digit per request) at the headline concurrency (8) and
each --sweep level (1 and 64); CPU time per request is the server's whole process tree's
user+system time over the requests served. Then every front faces 64 slow-header and 64
slow-body clients while a normal client keeps predicting (ours for --slow-seconds, the
others for a third of it). Then the memory each model adds: fresh processes load digits and
diabetes in both orders and read their RSS after each (a model loaded first also pays
LiteRT's own start; loaded second, only itself). Progress on stderr; prints tables, ratios
and targets; writes everything as JSON under bench/results/ and draws the figures of
docs/performance.md from that JSON (bench/report.py).
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
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from bench.targets import free_port  # noqa: E402
from tests.rawhttp import SlowClients, p99, timed_predictions  # noqa: E402

MODEL_DIR = ROOT / "model" / "artifacts" / "digits" / "1"
SECOND_MODEL_DIR = ROOT / "model" / "artifacts" / "diabetes" / "1"
BIN = Path(sys.executable).parent
PEERS = ROOT / "bench" / "peers"
VENVS = ROOT / "bench" / ".venvs"
PATH = "/v1/models/digits:predict"
FRONTS = ("ours", "gunicorn-sync", "gunicorn-gthread", "nginx+gunicorn", "granian")
PEER_NAMES = ("fastapi", "kserve")
KINDS = ("ours", "ours-2models", "noop", "baseline", *FRONTS[1:], *PEER_NAMES)
TICKS = os.sysconf("SC_CLK_TCK")


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


def peer_python(name: str) -> Path:
    """The peer's virtualenv, made on first use (pip's cache makes later ones quick)."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    reqs = PEERS / f"{name}-requirements.txt"
    if not stamp.exists() or stamp.read_text() != reqs.read_text():
        print(f"[bench] making {venv.relative_to(ROOT)} from {reqs.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(reqs)], check=True, timeout=900)
        stamp.write_text(reqs.read_text())
    return python


def command(kind: str, port: int, runtime: Path) -> tuple[list[str], dict, Path]:
    """(argv, extra environment, working directory) of one server."""
    bind = f"127.0.0.1:{port}"
    gunicorn = [str(BIN / "gunicorn"), "--workers", "2", "--no-control-socket",
                "--access-logfile", "-", "--graceful-timeout", "25", "--keep-alive", "75"]
    if kind in ("ours", "granian"):
        return ([sys.executable, "-m", "app.server"],
                {"BIND": bind, "SERVER_FRONT": "nginx" if kind == "ours" else "none"}, ROOT)
    if kind == "ours-2models":
        return ([sys.executable, "-m", "app.server"],
                {"BIND": bind, "SERVER_FRONT": "nginx",
                 "MODEL_URI": f"{MODEL_DIR},{SECOND_MODEL_DIR}"}, ROOT)
    if kind == "noop":
        return ([sys.executable, "-c", "import sys; from app.server import main; "
                 "sys.exit(main(target='bench.noop_app:app'))"],
                {"BIND": bind, "SERVER_FRONT": "nginx"}, ROOT)
    if kind == "baseline":
        return [sys.executable, str(ROOT / "bench" / "baseline_app.py"), str(MODEL_DIR), str(port)], {}, ROOT
    if kind == "gunicorn-sync":
        return [*gunicorn, "--worker-class", "sync", "--bind", bind, "app.wsgi:app"], {}, ROOT
    if kind == "gunicorn-gthread":
        return [*gunicorn, "--worker-class", "gthread", "--threads", "4", "--timeout", "30",
                "--bind", bind, "app.wsgi:app"], {}, ROOT
    if kind == "nginx+gunicorn":
        from app.config import load_server_settings, load_settings
        from app.server import render_nginx

        conf = runtime / "nginx.conf"
        conf.write_text(render_nginx(load_settings({}), load_server_settings({"BIND": bind}), runtime))
        script = (f"{' '.join(gunicorn)} --worker-class sync --bind unix:{runtime}/app-0.sock "
                  f"app.wsgi:app & while [ ! -S {runtime}/app-0.sock ]; do sleep 0.01; done; "
                  f"exec nginx -e stderr -p {runtime} -c {conf}")
        return ["bash", "-c", script], {}, ROOT
    python = peer_python(kind)
    if kind == "fastapi":
        return ([str(python), "-m", "uvicorn", "fastapi_app:app", "--workers", "2", "--host",
                 "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                {}, PEERS)
    return ([str(python), "kserve_app.py", "--http_port", str(port), "--workers", "2",
             "--enable_grpc", "false"], {}, PEERS)


def start(kind: str, port: int, runtime: Path) -> subprocess.Popen:
    argv, extra, cwd = command(kind, port, runtime)
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_URI", "WEB_CONCURRENCY")}
    env.update(PYTHONPATH=str(ROOT), MODEL_URI=str(MODEL_DIR), BENCH_MODEL_DIR=str(MODEL_DIR),
               METRICS_ENABLED="true")
    env.update(extra)
    # Logs to /dev/null: the benchmark measures serving, and an unread pipe would block.
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def cold_start(kind: str, port: int, body: str, runtime: Path,
               limit: float = 120) -> tuple[subprocess.Popen, float]:
    """Start the server and poll with a real prediction until one succeeds."""
    path = "/bench/noop" if kind == "noop" else PATH
    t0 = time.perf_counter()
    proc = start(kind, port, runtime)
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode} during start-up")
        try:
            if post(port, body, timeout=2, path=path) == 200:
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


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICKS


def worker_rss_mb(root: int) -> float:
    """The largest peak RSS (VmHWM) in the tree: a worker holding the model."""
    peaks = []
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=float("nan"))


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(port: int, path: str, body: str, duration: int, concurrency: int) -> dict:
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
            "errors": errors}


def load_with_cpu(proc: subprocess.Popen, port: int, path: str, body: str, duration: int,
                  concurrency: int) -> dict:
    """``load``'s figures and the server's CPU time per request over them (its whole
    process tree's user+system time)."""
    cpu0 = cpu_seconds(proc.pid)
    point = load(port, path, body, duration, concurrency)
    point["cpu_us_per_request"] = round(
        (cpu_seconds(proc.pid) - cpu0) / max(point["requests"], 1) * 1e6)
    return point


def slow_clients(port: int, seconds: float) -> dict:
    """64 slow-header + 64 slow-body clients held for ``seconds`` while a normal client
    predicts; whether the normal client kept succeeding, and how fast."""
    with SlowClients(port, 64, "header", limit=seconds + 30) as heads, \
            SlowClients(port, 64, "body", limit=seconds + 30) as bodies:
        time.sleep(1.0)
        results = timed_predictions(port, seconds=seconds)
        ready = _readyz(port)
    ok = [ms for status, ms in results if status == 200]
    return {"seconds": seconds, "requests": len(results), "succeeded": len(ok),
            "p99_ms": round(p99(ok), 2) if ok else None,
            "readyz_at_end": ready, "slow_connections": heads.connected + bodies.connected}


def _readyz(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def measure(kind: str, body: str, duration: int, levels: list[int], headline: int,
            slow_seconds: float | None, progress: report.Progress) -> dict:
    """Cold start, load at each concurrency level, then the slow-client scenario. The
    result's top-level figures are the headline level's; ``sweep`` holds every level's."""
    if kind in PEER_NAMES:
        peer_python(kind)       # made (or checked) before the cold-start clock runs
    port = free_port()
    runtime = Path(tempfile.mkdtemp(prefix="bench-"))
    with progress.step(f"{kind}: start to first prediction"):
        proc, cold = cold_start(kind, port, body, runtime)
    path = "/bench/noop" if kind == "noop" else PATH
    try:
        sweep = []
        for concurrency in levels:
            with progress.step(f"{kind}: {duration} s of load at concurrency {concurrency}"):
                point = load_with_cpu(proc, port, path, body, duration, concurrency)
                sweep.append({"concurrency": concurrency, **point})
        result = {k: v for k, v in sweep[levels.index(headline)].items() if k != "concurrency"}
        result.update(sweep=sweep, cold_start_s=round(cold, 3),
                      peak_rss_mb_per_worker=round(worker_rss_mb(proc.pid), 1))
        if slow_seconds:
            with progress.step(f"{kind}: {slow_seconds} s of 64 slow-header + 64 slow-body clients"):
                result["slow_clients"] = slow_clients(port, slow_seconds)
    finally:
        stop(proc)
        shutil.rmtree(runtime, ignore_errors=True)
    return result


# Run in a fresh interpreter: RSS after the service's imports, then after each model version
# is loaded (its interpreter allocated and warmed up), in the order given.
MEMORY_PROBE = """
import json, sys
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import app.registry
from app.config import load_settings
marks = [rss_mb()]
kept = []
for folder in sys.argv[1:]:
    kept.append(app.registry.load_models(load_settings({"MODEL_URI": folder})))
    marks.append(rss_mb())
print(json.dumps(marks))
"""


def compare_two_models(body: str, duration: int, levels: list[int], headline: int,
                       progress: report.Progress, rounds: int = 5) -> dict:
    """ours (digits) and ours-2models (digits + diabetes) side by side: both started, then at
    each level ``rounds`` alternating rounds of duration/rounds seconds each, load on
    digits. Returns ours-2models' result (medians of its rounds) and the paired rounds."""
    each = max(2, duration // rounds)
    kinds = ("ours", "ours-2models")
    ports = {kind: free_port() for kind in kinds}
    runtimes = {kind: Path(tempfile.mkdtemp(prefix="bench-")) for kind in kinds}
    procs, colds = {}, {}
    try:
        with progress.step("ours and ours-2models: start both"):
            for kind in kinds:
                procs[kind], colds[kind] = cold_start(kind, ports[kind], body, runtimes[kind])
        paired = []
        for concurrency in levels:
            runs: dict[str, list] = {kind: [] for kind in kinds}
            with progress.step(f"1 vs 2 models: {rounds} alternating rounds of {each} s each "
                               f"at concurrency {concurrency}"):
                for n in range(rounds):
                    for kind in (kinds if n % 2 == 0 else kinds[::-1]):
                        runs[kind].append(load_with_cpu(procs[kind], ports[kind], PATH, body,
                                                        each, concurrency))
            paired.append({"concurrency": concurrency, "rounds": runs})
        rss = {kind: round(worker_rss_mb(procs[kind].pid), 1) for kind in kinds}
    finally:
        for proc in procs.values():
            stop(proc)
        for runtime in runtimes.values():
            shutil.rmtree(runtime, ignore_errors=True)

    def medians(points: list[dict]) -> dict:
        return {"rps": median([p["rps"] for p in points]),
                "p50_ms": median([p["p50_ms"] for p in points]),
                "p99_ms": median([p["p99_ms"] for p in points]),
                "cpu_us_per_request": round(median([p["cpu_us_per_request"] for p in points])),
                "requests": sum(p["requests"] for p in points),
                "errors": sum(p["errors"] for p in points)}

    sweep = {kind: [{"concurrency": lv["concurrency"], **medians(lv["rounds"][kind])}
                    for lv in paired] for kind in kinds}
    ratios = {one["concurrency"]: {key: both[key] / one[key] for key in ("rps", "cpu_us_per_request")}
              for one, both in zip(sweep["ours"], sweep["ours-2models"])}
    results = {}
    for kind in kinds:
        results[kind] = {k: v for k, v in sweep[kind][levels.index(headline)].items()
                         if k != "concurrency"}
        results[kind].update(sweep=sweep[kind], cold_start_s=round(colds[kind], 3),
                             peak_rss_mb_per_worker=rss[kind], paired=True)
    return {"results": results, "paired": paired, "ratios_by_concurrency": ratios,
            "peak_rss": rss,
            "seconds_per_round": each, "memory": model_memory()}


def model_memory() -> dict:
    """What each model adds to a worker's RSS, loaded first and loaded second (MB)."""
    folders = {"digits": MODEL_DIR, "diabetes": SECOND_MODEL_DIR}
    added: dict = {name: {} for name in folders}
    for order in (("digits", "diabetes"), ("diabetes", "digits")):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *(str(folders[n]) for n in order)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        marks = json.loads(out.strip().splitlines()[-1])
        for position, name in zip(("first_mb", "second_mb"), order):
            step = order.index(name)
            added[name][position] = round(marks[step + 1] - marks[step], 1)
        added["imports_mb"] = round(marks[0], 1)
    return added


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per server and level")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="the headline level: table, ratios and targets")
    parser.add_argument("--sweep", default="1,64",
                        help="more concurrency levels for the figure, comma-separated ('' for none)")
    parser.add_argument("--slow-seconds", type=int, default=30, help="slow-client scenario for ours")
    parser.add_argument("--only", nargs="*", choices=KINDS, help="run only these servers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    try:
        levels = sorted({args.concurrency, *(int(c) for c in args.sweep.split(",") if c.strip())})
    except ValueError:
        parser.error(f"--sweep must be comma-separated whole numbers; got {args.sweep!r}")
    if not 1 <= args.duration <= 300 or not all(1 <= c <= 256 for c in levels):
        parser.error("--duration must be 1..300 s and --concurrency and --sweep levels 1..256")
    if not 5 <= args.slow_seconds <= 120:
        parser.error("--slow-seconds must be 5..120 s")
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        parser.error("needs wrk and nginx on PATH (Debian: apt-get install wrk nginx)")

    kinds = args.only or KINDS
    slow = {kind: args.slow_seconds if kind == "ours" else max(5, args.slow_seconds // 3)
            for kind in kinds if kind in FRONTS or kind in PEER_NAMES}
    progress = report.Progress("bench", [
        (step, seconds) for kind in kinds
        for step, seconds in [("start", 5 if kind in ("baseline", "kserve") else 1)]
        + [("load", args.duration + (args.duration if kind == "ours-2models" else 0) + 1)]
        * len(levels) + ([("slow", slow[kind] + 1)] if kind in slow else [])])
    body = sample_body()
    results = {kind: measure(kind, body, args.duration, levels, args.concurrency, slow.get(kind),
                             progress) for kind in kinds if kind != "ours-2models"}
    two_models = None
    if "ours-2models" in kinds:
        two_models = compare_two_models(body, args.duration, levels, args.concurrency, progress)
        paired = two_models.pop("results")
        results["ours-2models"] = paired["ours-2models"]
        results.setdefault("ours", paired["ours"])     # --only ours-2models: the paired one
    data = summarise(results, args, two_models)
    progress.finish(report.serving_summary(data))
    return 0


def _two_models_summary(two: dict, headline: int, ratios: dict, targets: dict) -> None:
    """The paired comparison: what serving diabetes beside digits costs digits, per level."""
    print(f"\n1 vs 2 models (paired, alternating rounds of {two['seconds_per_round']} s; load "
          "on digits, the default): req/s and CPU per request, medians of the rounds")
    for level in two["paired"]:
        c = level["concurrency"]
        r = two["ratios_by_concurrency"][c]
        one, both = ([round(p["rps"]) for p in level["rounds"][kind]]
                     for kind in ("ours", "ours-2models"))
        print(f"  c={c:<3} 1 model {median(one):>7.0f} {one}   2 models {median(both):>7.0f} "
              f"{both}   ratio {r['rps']:.2f}x req/s, {r['cpu_us_per_request']:.2f}x CPU "
              "per request")
    head = two["ratios_by_concurrency"][headline]
    ratios["two_models_vs_one_rps"] = head["rps"]
    ratios["two_models_vs_one_cpu_per_request"] = head["cpu_us_per_request"]
    # 5 %: within the noise of one run on a shared machine (docs/performance.md)
    targets[f"a second model costs the default one no throughput (c={headline}: req/s "
            ">= 95% and CPU per request <= 105% of one model's)"] = (
        head["rps"] >= 0.95 and head["cpu_us_per_request"] <= 1.05)
    memory = two["memory"]
    print("memory each model adds to a worker (MB RSS; loaded first it includes LiteRT's own "
          f"start; the service's imports: {memory['imports_mb']} MB): "
          + "; ".join(f"{name} {m['first_mb']} first, {m['second_mb']} second"
                      for name, m in memory.items() if name != "imports_mb"))
    rss = two["peak_rss"]
    print(f"peak RSS per worker in the paired run: 1 model {rss['ours']} MB, 2 models "
          f"{rss['ours-2models']} MB")


def _point(result: dict, concurrency: int) -> dict:
    return next((p for p in result.get("sweep", []) if p["concurrency"] == concurrency), {})


def summarise(results: dict, args, two_models: dict | None = None) -> dict:
    """Print the table, ratios and targets; write the JSON; draw the figures."""
    top = max(p["concurrency"] for r in results.values() for p in r["sweep"])
    c, t = args.concurrency, top
    header = (f"{'server':<17}{f'req/s c{c}':>9}{f'p99 c{c}':>8}{'CPU us':>8}{f'req/s c{t}':>10}"
              f"{f'p99 c{t}':>9}{'errors':>7}{'cold s':>7}{'RSS MB':>7}{'slow: ok/all, p99':>22}")
    print("\n" + header + "\n" + "-" * len(header))
    for kind, r in results.items():
        c64 = _point(r, top)
        slow = r.get("slow_clients")
        slow_text = (f"{slow['succeeded']}/{slow['requests']}, {slow['p99_ms'] or '-'} ms"
                     if slow else "")
        print(f"{kind:<17}{r['rps']:>9.0f}{r['p99_ms'] or 0:>8.2f}{r['cpu_us_per_request']:>8}"
              f"{c64.get('rps', 0):>10.0f}{c64.get('p99_ms') or 0:>9.2f}"
              f"{sum(p['errors'] for p in r['sweep']):>7}{r['cold_start_s']:>7.2f}"
              f"{r['peak_rss_mb_per_worker']:>7.0f}{slow_text:>22}")

    ours = results.get("ours")
    ratios, targets = {}, {}
    if ours and not ours.get("paired"):    # measured on its own, slow clients included
        peers = {k: results[k] for k in PEER_NAMES if k in results}
        fastest = max(peers.values(), key=lambda r: r["rps"], default=None)
        today = results.get("gunicorn-sync")
        if fastest:
            ratios["ours_vs_fastest_peer_rps"] = ours["rps"] / fastest["rps"]
            targets[f"req/s c={args.concurrency} >= the fastest peer's"] = ours["rps"] >= fastest["rps"]
        if today:
            ratios["ours_vs_gunicorn_sync_rps"] = ours["rps"] / today["rps"]
            if _point(ours, 64) and _point(today, 64):
                targets["p99 at c=64 <= gunicorn sync's (today's)"] = (
                    _point(ours, 64)["p99_ms"] <= _point(today, 64)["p99_ms"])
        if "baseline" in results:
            ratios["ours_vs_baseline_rps"] = ours["rps"] / results["baseline"]["rps"]
            targets["ours >= 50x baseline req/s"] = ratios["ours_vs_baseline_rps"] >= 50
        slow = ours.get("slow_clients") or {"succeeded": 0, "requests": 0, "p99_ms": None}
        targets["slow clients: every prediction 200, p99 < 100 ms, ready"] = (
            slow["succeeded"] == slow["requests"] > 0 and slow["p99_ms"] < 100
            and slow.get("readyz_at_end") == 200)
        targets["zero errors"] = all(p["errors"] == 0 for p in ours["sweep"])
        targets["cold start < 1 s"] = ours["cold_start_s"] < 1.0
        targets["RSS per worker < 150 MB"] = ours["peak_rss_mb_per_worker"] < 150
        for name, value in ratios.items():
            print(f"{name}: {value:.2f}x")
    if two_models:
        _two_models_summary(two_models, args.concurrency, ratios, targets)
    report.print_targets(targets)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    data = {"when": stamp, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "loadavg_at_end": os.getloadavg()},
            "duration_s": args.duration, "concurrency": args.concurrency,
            "slow_seconds": args.slow_seconds, "results": results, "ratios": ratios,
            "targets": targets, "two_models": two_models}
    report.write_results(data, args.out / f"serving-{stamp}.json")
    report.print_drawn(report.serving_figures(data))
    return data


if __name__ == "__main__":
    sys.exit(main())
