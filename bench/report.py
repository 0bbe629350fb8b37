"""What the benchmarks show people: progress while they run, one summary line at the end, and
figures drawn from the JSON results of the same run (so figures and tables always agree).

    python -m bench.report serving bench/results/serving-<stamp>.json    redraw from a result
    python -m bench.report image bench/results/image.json

Figures go to docs/figures/ as SVG with text kept as text (small, sharp, diffable) and no
timestamp inside, so the same JSON always gives the same file. matplotlib is a development
dependency (requirements-dev.txt); the serving image never sees this module.

The serving figures plot every server found in the results (ours, the no-op ceiling, the
baseline and any peer a benchmark adds), so a new server needs no change here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"

# Names and colours for the servers the benchmarks know; any other key is drawn as itself.
LABELS = {"ours": "ours (nginx + granian + LiteRT)",
          "ours-2models": "ours serving 2 models (digits + diabetes)",
          "noop": "no-op ceiling (same server)",
          "baseline": "baseline (Flask dev server + Keras predict)", "seed": "seed-style image"}
COLOURS = {"ours": "#2563eb", "ours-2models": "#60a5fa", "noop": "#9ca3af", "baseline": "#dc2626", "seed": "#dc2626"}
PEER_COLOURS = ["#16a34a", "#9333ea", "#ea580c", "#0891b2", "#a16207"]


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Numbered steps on stderr with time so far and an estimate of the time left.

    ``plan`` is a list of (step name, expected seconds); the estimate scales what is left of
    the plan by how the steps so far compared with theirs. On a terminal the current step's
    line also ticks its own seconds; in a log each step is one line.
    """

    def __init__(self, name: str, plan: list[tuple[str, float]], stream=None):
        self.name, self.plan = name, plan
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.done_steps = 0
        self.planned_done = 0.0

    def _prefix(self) -> str:
        elapsed = time.monotonic() - self.started
        left = sum(seconds for _, seconds in self.plan[self.done_steps:])
        if self.planned_done > 0:
            left *= elapsed / self.planned_done
        n = len(self.plan)
        return (f"[{self.name} {min(self.done_steps + 1, n)}/{n} {_minutes(elapsed)}"
                f"{f', ~{_minutes(left)} left' if self.done_steps else ''}]")

    @contextlib.contextmanager
    def step(self, message: str):
        """``with progress.step("ours: 15 s of load"):`` around one step of the plan."""
        line = f"{self._prefix()} {message}"
        t0 = time.monotonic()
        stop = threading.Event()
        ticker = None
        if self.stream.isatty():
            def tick():
                while not stop.wait(1.0):
                    self.stream.write(f"\r{line} {time.monotonic() - t0:.0f}s")
                    self.stream.flush()
            self.stream.write(line)
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        try:
            yield
        finally:
            stop.set()
            if ticker:
                ticker.join()
                self.stream.write(f"\r{line} {time.monotonic() - t0:.1f}s\n")
                self.stream.flush()
            self.planned_done += self.plan[min(self.done_steps, len(self.plan) - 1)][1]
            self.done_steps += 1

    def finish(self, summary: str) -> None:
        """The last line of the run, on stdout: what it found, in one line."""
        print(f"{self.name}: {summary} ({_minutes(time.monotonic() - self.started)})", flush=True)


# --- what every benchmark ends with ------------------------------------------------------------

def print_targets(targets: dict[str, bool]) -> None:
    """Each target (name -> met) on its own line, marked ok or MISS."""
    for name, ok in targets.items():
        print(f"  {'ok  ' if ok else 'MISS'}  {name}")


def targets_met(targets: dict[str, bool]) -> str:
    """``targets 3/4 met``, for a summary line."""
    return f"targets {sum(bool(ok) for ok in targets.values())}/{len(targets)} met"


def write_results(data: dict, path: Path) -> None:
    """The run's JSON (the figures are drawn from it), and a line saying where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nresults: {_shown(path)}")


def print_drawn(figures: list[Path]) -> None:
    print("drew " + ", ".join(_shown(f) for f in figures))


def _shown(path: Path) -> str:
    """Relative to the repository when it is inside it (shorter to read)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- serving -----------------------------------------------------------------------------------

def _servers(data: dict) -> dict[str, dict]:
    return data["results"]


def _label(kind: str, result: dict) -> str:
    return result.get("label") or LABELS.get(kind, kind)


def _colour(kind: str, index: int) -> str:
    return COLOURS.get(kind) or PEER_COLOURS[index % len(PEER_COLOURS)]


def _sweep(data: dict, result: dict) -> list[dict]:
    """The server's points by concurrency; a result without a sweep is its one point."""
    points = result.get("sweep") or [{"concurrency": data["concurrency"], **result}]
    return sorted(points, key=lambda p: p["concurrency"])


def _caption(data: dict, what: str) -> str:
    machine = data.get("machine", {})
    cpus = machine.get("cpus") or data.get("cpus")
    parts = [f"{what} run {data.get('when', '?')}"]
    if cpus:
        parts.append(f"{cpus} CPUs")
    if data.get("duration_s"):
        parts.append(f"{data['duration_s']} s of load per point")
    return ", ".join(parts)


def serving_summary(data: dict) -> str:
    """``ours 3,052 req/s at c=8: 139x baseline, 78% of noop; cold start 0.27 s; ...``"""
    servers = _servers(data)
    ours = servers["ours"]
    parts = []
    for kind, r in servers.items():
        # ours-2models is compared with ours in paired rounds (its ratio below), not here
        if kind not in ("ours", "ours-2models") and r.get("rps"):
            ratio = ours["rps"] / r["rps"]
            parts.append(f"{ratio:.0f}x {kind}" if ratio >= 10 else f"{ratio:.0%} of {kind}")
    paired = data.get("ratios", {}).get("two_models_vs_one_rps")
    if paired:
        parts.append(f"with a second model {paired:.0%} of its req/s")
    return (f"ours {ours['rps']:,.0f} req/s at c={data['concurrency']} ({', '.join(parts) or 'alone'}); "
            f"cold start {ours['cold_start_s']:.2f} s; {ours['errors']} errors; "
            f"{targets_met(data.get('targets', {}))}")


def serving_figures(data: dict, out: Path = FIGURES) -> list[Path]:
    """serving-throughput.svg (req/s and p99 against concurrency) and serving-start.svg
    (cold start and memory per worker), one line or bar per server in the results."""
    plt = _pyplot()
    servers = _servers(data)
    paths = []

    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    levels = sorted({p["concurrency"] for r in servers.values() for p in _sweep(data, r)})
    for i, (kind, result) in enumerate(servers.items()):
        points = _sweep(data, result)
        style = dict(marker="o", color=_colour(kind, i), label=_label(kind, result),
                     linestyle="--" if kind == "noop" else "-")
        x = [p["concurrency"] for p in points]
        rps_ax.plot(x, [p["rps"] for p in points], **style)
        p99 = [(p["concurrency"], p["p99_ms"]) for p in points if p.get("p99_ms")]
        if p99:
            p99_ax.plot(*zip(*p99), **style)
    ticker = _ticker()
    for ax, title in ((rps_ax, "throughput (requests/s, log scale)"),
                      (p99_ax, "p99 latency (ms, log scale)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        ax.set_xlabel("concurrent connections")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    rps_ax.legend(fontsize=8, loc="best")
    fig.suptitle(_caption(data, "make bench:"), fontsize=9, color="#4b5563")
    paths.append(_save(fig, out / "serving-throughput.svg"))

    fig, (cold_ax, rss_ax) = plt.subplots(1, 2, figsize=(9, 0.9 + 0.45 * len(servers)))
    kinds = list(servers)
    names = [_label(k, servers[k]) for k in kinds]
    colours = [_colour(k, i) for i, k in enumerate(kinds)]
    for ax, key, unit, title in (
            (cold_ax, "cold_start_s", "s", "cold start: process start to first prediction"),
            (rss_ax, "peak_rss_mb_per_worker", "MB", "peak memory per worker")):
        values = [servers[k].get(key) or 0 for k in kinds]
        _bars(ax, names, values, colours, unit, title)
    rss_ax.set_yticks([])
    fig.suptitle(_caption(data, "make bench:"), fontsize=9, color="#4b5563")
    paths.append(_save(fig, out / "serving-start.svg"))
    return paths


# --- image -------------------------------------------------------------------------------------

def image_summary(data: dict) -> str:
    ours, seed = data["ours"], data["seed"]
    return (f"ours {size_text(ours['size_bytes'])} vs {size_text(seed['size_bytes'])} "
            f"({seed['size_bytes'] / ours['size_bytes']:.1f}x smaller); code-only rebuild "
            f"{ours['code_rebuild_s']:.1f} s vs {seed['code_rebuild_s']:.1f} s; first prediction "
            f"{ours['first_prediction_s']:.2f} s vs {seed['first_prediction_s']:.2f} s; "
            f"{ours['load']['rps']:,.0f} vs {seed['load']['rps']:,.0f} req/s; "
            f"{targets_met(data.get('targets', {}))}")


def image_figures(data: dict, out: Path = FIGURES) -> list[Path]:
    """image.svg: size, build and rebuild time, time to first prediction, req/s; ours
    against the seed-style image, each panel with its ratio."""
    plt = _pyplot()
    ours, seed = data["ours"], data["seed"]
    panels = [("image size", "MB", ours["size_bytes"] / 1e6, seed["size_bytes"] / 1e6, "smaller")]
    if "cold_build_s" in ours and "cold_build_s" in seed:
        panels.append(("cold build (no cache)", "s", ours["cold_build_s"], seed["cold_build_s"], "faster"))
    panels += [
        ("rebuild after a code-only change", "s", ours["code_rebuild_s"], seed["code_rebuild_s"], "faster"),
        ("docker run to first prediction", "s", ours["first_prediction_s"],
         seed["first_prediction_s"], "faster"),
        ("requests/s at concurrency 8", "req/s", ours["load"]["rps"], seed["load"]["rps"], "more"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 0.25 + 1.05 * len(panels)))
    for ax, (title, unit, mine, theirs, better) in zip(axes, panels):
        ratio = mine / theirs if better == "more" else theirs / mine
        _bars(ax, [LABELS["ours"].split(" (")[0], LABELS["seed"]], [mine, theirs],
              [COLOURS["ours"], COLOURS["seed"]], unit, f"{title}: ours {ratio:.1f}x {better}")
    fig.suptitle(_caption(data, "make bench-image:"), fontsize=9, color="#4b5563")
    return [_save(fig, out / "image.svg")]


# --- drawing helpers ---------------------------------------------------------------------------

def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit(f"drawing the figures needs matplotlib ({exc}): it is in "
                         "requirements-dev.txt; `make setup` installs it") from None
    matplotlib.use("svg")  # no display, no GUI toolkit
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ml-app",
                                "font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False})
    import matplotlib.pyplot as plt

    return plt


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def size_text(n: float) -> str:
    """Bytes as GB or MB, as the image benchmark's table and summary show them."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _bars(ax, names, values, colours, unit, title) -> None:
    """Horizontal bars, each with its value written beside it (a small bar stays readable)."""
    y = range(len(values))
    ax.barh(y, values, color=colours, height=0.6)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    top = max(values) if values and max(values) > 0 else 1
    ax.set_xlim(0, top * 1.25)
    for i, v in zip(y, values):
        text = f"{v:,.0f} {unit}" if v >= 100 else f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}"
        ax.text(v + top * 0.01, i, text, va="center", fontsize=8)
    ax.set_title(title, fontsize=9, loc="left")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("serving", "image"))
    ap.add_argument("results", type=Path, help="a JSON file written by bench/serving.py or bench/image.py")
    ap.add_argument("--out", type=Path, default=FIGURES)
    args = ap.parse_args(argv)
    data = json.loads(args.results.read_text())
    draw = serving_figures if args.kind == "serving" else image_figures
    summary = serving_summary if args.kind == "serving" else image_summary
    for path in draw(data, args.out):
        print(f"wrote {path}")
    print(summary(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
