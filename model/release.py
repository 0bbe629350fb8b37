"""Release any Keras model as a served version folder: convert to LiteRT, prove parity, write.

    python -m model.release MODEL --name NAME [--version V] --input-min LO --input-max HI
        [--sample FILE | --samples N] [--labels A,B,...] [--input-name N] [--input-shape D,D]
        [--output-name N] [--description TEXT] [--metrics FILE] [--atol A] [--rtol R]
        [--signature KEY] [--seed S] [--out DIR]

MODEL is a Keras 3 ``.keras`` file, a legacy Keras ``.h5`` file, or a TensorFlow SavedModel
directory. The release converts it to ``model.tflite`` with TensorFlow's LiteRT converter
(built-in operations only: what the serving runtime can run), runs the original and the
LiteRT model on representative inputs (a sample file, or inputs generated inside the declared
input range) and refuses to write anything unless they agree. The version folder
``<out>/<name>/<version>/`` then holds ``model.tflite``, the original model and
``manifest.json`` (docs/model.md, "The manifest"). It is built in a hidden folder beside the
target and renamed into place at the end, so a version folder is complete or absent; an
existing version is never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from model.errors import ReleaseError, dims, first_line
from model.manifest import (MANIFEST_NAME, NAME_RULE, TENSOR_NAME_RULE, VERSION_RULE,
                            file_entry, schema_problems)
from model.parity import (DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SAMPLES, MAX_SAMPLES, Inputs,
                          convert, generated_inputs, prove_parity, sample_inputs)
from model.sources import InputSpec, load_source, quiet_native_stderr, resolve_input

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCHEMA_VERSION = 2  # docs/model.md, "The manifest"; absent means schema 1 (digits/1)


def name_problems(name: str, version: str | None = None) -> list[str]:
    """What is wrong with a model name and (when given) a version: the service's own rules
    (app/manifest.py), which infra/releases.py also applies to the entries of ml-app:models."""
    problems = []
    if not NAME_RULE.fullmatch(name or ""):
        problems.append(f"name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit (it becomes a folder, an S3 prefix and a URL "
                        "segment)")
    if version and not VERSION_RULE.fullmatch(version):
        problems.append(f"version {version!r}: versions are positive integers without leading "
                        "zeros (TF Serving's rule), at most 64 digits")
    return problems


def next_version(out: Path, name: str) -> str:
    """The highest released version plus one (hidden work-in-progress folders do not count)."""
    existing = [int(p.name) for p in (out / name).glob("*") if p.name.isdigit()]
    return str(max(existing, default=0) + 1)


def refuse_existing(target: Path) -> None:
    if target.exists():
        raise ReleaseError(f"{target} already exists; released versions are never overwritten. "
                           "Release a new version (VERSION=, or leave it out for the next one)")


def framework_versions(**extra: str) -> dict:
    from importlib.metadata import version

    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "ai_edge_litert": version("ai-edge-litert"),
            "numpy": np.__version__, **extra}


def publish(source, spec: InputSpec, inputs: Inputs, *, name: str, version: str, out: Path,
            labels: list[str] | None = None, output_name: str | None = None,
            atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
            metrics: dict | None = None, sections: dict | None = None,
            framework: dict | None = None, log: Callable[[str], None] = print) -> Path:
    """Convert, prove parity, and write ``<out>/<name>/<version>/`` atomically; return it.

    Everything is built in a hidden folder beside the target and renamed into place only when
    complete; on any failure (or Ctrl-C) the hidden folder is removed, and so is the model's
    folder if this release created it."""
    target = out / name / version
    refuse_existing(target)
    output_name = output_name or source.output_name
    if not TENSOR_NAME_RULE.fullmatch(output_name):
        raise ReleaseError(f"output name {output_name!r} is not usable as a response key; name "
                           "it with --output-name (letters, digits, _ . -)")
    created = _missing_folders(target.parent)  # removed again if the release fails
    staging = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=target.parent))
        log(f"converting to LiteRT (built-in operations only) with input {spec.name!r} "
            f"{spec.dtype} {list(spec.shape)} in [{spec.min:g}, {spec.max:g}]")
        convert(source, spec, staging / "model.tflite")
        log(f"checking parity on {len(inputs.x)} inputs ({inputs.description.split(':')[0]})")
        proof = prove_parity(source, staging / "model.tflite", spec, inputs, atol, rtol,
                             classifier=labels is not None)
        if labels is not None and proof.output_shape != [len(labels)]:
            raise ReleaseError(f"{len(labels)} labels given, but the model's output has shape "
                               f"{dims(proof.output_shape)}; labels name the entries of a "
                               "one-dimensional output, one label per entry")
        log(f"parity: max abs diff {proof.max_abs_diff:.2e} (allowed {atol:g} + {rtol:g} x "
            f"|original|) at batch sizes {', '.join(map(str, proof.batch_sizes))}")
        kept = source.keep(staging)
        files = {f: file_entry(staging / f) for f in ("model.tflite", kept)}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "framework": framework or framework_versions(),
            "source": {**source.describe(), "file": kept},
            "input": spec.as_manifest(),
            "output": {"name": output_name, "shape": proof.output_shape,
                       "dtype": proof.output_dtype},
            **({"labels": list(labels)} if labels is not None else {}),
            "metrics": {**(metrics or {}),
                        "parity_max_abs_diff": proof.max_abs_diff,
                        **({"parity_argmax_agreement": proof.argmax_agreement}
                           if proof.argmax_agreement is not None else {}),
                        "parity_samples": len(inputs.x)},
            "parity": {"inputs": inputs.description, "atol": atol, "rtol": rtol,
                       "batch_sizes": proof.batch_sizes},
            **(sections or {}),
            "files": files,
        }
        problems = schema_problems(manifest)
        if problems:  # a bug here, not the user's: never release a manifest off the contract
            raise ReleaseError("the manifest breaks its schema: " + "; ".join(problems))
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it 0700; the image and readers need r-x
        refuse_existing(target)  # another release may have finished meanwhile
        os.rename(staging, target)  # atomic; fails rather than replace a non-empty folder
    except OSError as exc:
        raise ReleaseError(f"cannot write {target}: {exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not target.exists():
            for folder in created:  # deepest first; rmdir leaves anything non-empty alone
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return target


def _missing_folders(path: Path) -> list[Path]:
    """The folders mkdir(parents=True) would create for path, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


# --- command line -----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.release", description=__doc__.split("\n\n")[2].replace("\n", " "),
        epilog="make release MODEL=<path> NAME=<name> [VERSION=N] [INPUT_MIN=.. INPUT_MAX=..] "
               "[SAMPLE=file] [LABELS=a,b,..] [ARGS='other flags'] runs this. docs/model.md "
               "explains every flag.")
    p.add_argument("model", type=Path, help="a .keras file, a .h5 file or a SavedModel directory")
    p.add_argument("--name", required=True, help="model name (folder under --out)")
    p.add_argument("--version", help="new version (default: highest existing + 1)")
    p.add_argument("--input-min", type=float, help="smallest value of one input element")
    p.add_argument("--input-max", type=float, help="largest value of one input element")
    p.add_argument("--input-shape", help="per-instance shape without the batch, e.g. 8,8 "
                                         "(needed only where the model leaves it open)")
    p.add_argument("--input-name", help="the input's name in requests (default: the model's)")
    p.add_argument("--output-name", help="the output's name (default: the model's)")
    p.add_argument("--labels", help="class labels, one per output entry: a,b,c or @FILE "
                                    "(one per line, or a JSON list); omit for regressors")
    p.add_argument("--description", help="what one input is, for the API's metadata")
    p.add_argument("--sample", type=Path, help="representative inputs for the parity check: "
                                              ".npy, .json or .csv (default: generated)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"how many inputs to generate without --sample ({DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="parity: absolute tolerance")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="parity: relative tolerance")
    p.add_argument("--signature", default="serving_default", help="SavedModel signature to serve")
    p.add_argument("--metrics", type=Path, help="JSON object of your own figures (e.g. held-out "
                                               "accuracy) to record in the manifest's metrics")
    p.add_argument("--out", type=Path, default=ARTIFACTS, help="where version folders go")
    return p


def _flag_problems(args) -> tuple[list[str], dict]:
    """Check every flag before TensorFlow loads; return (problems, parsed values)."""
    problems = name_problems(args.name, args.version)
    parsed: dict = {}
    if str(args.model) in ("", "."):
        problems.append("MODEL is empty: give the path of a .keras or .h5 file or a SavedModel "
                        "directory")
    elif not args.model.exists():
        problems.append(f"MODEL {args.model}: no such file or directory")
    bounds = [(flag, v) for flag, v in (("--input-min", args.input_min),
                                        ("--input-max", args.input_max)) if v is not None]
    for flag, value in bounds:
        if not math.isfinite(value):
            problems.append(f"{flag} {value}: must be a finite number")
    if len(bounds) == 1:
        problems.append(f"{bounds[0][0]} given without "
                        f"{'--input-max' if bounds[0][0] == '--input-min' else '--input-min'}: "
                        "the range needs both ends")
    elif len(bounds) == 2 and all(math.isfinite(v) for _, v in bounds) \
            and not args.input_min < args.input_max:
        problems.append(f"--input-min {args.input_min:g} must be below --input-max "
                        f"{args.input_max:g}")
    if args.input_shape is not None:
        try:
            shape = tuple(int(d) for d in args.input_shape.replace("x", ",").split(","))
            if min(shape) < 1:
                raise ValueError
            parsed["shape"] = shape
        except ValueError:
            problems.append(f"--input-shape {args.input_shape!r}: give positive whole numbers "
                            "separated by commas, without the batch dimension (e.g. 8,8)")
    for flag, value in (("--input-name", args.input_name), ("--output-name", args.output_name)):
        if value is not None and not TENSOR_NAME_RULE.fullmatch(value):
            problems.append(f"{flag} {value!r}: use letters, digits, '_', '.' or '-', starting "
                            "with a letter or '_' (it is a key in request and response bodies)")
    if not 3 <= args.samples <= MAX_SAMPLES:
        problems.append(f"--samples {args.samples}: must be from 3 to {MAX_SAMPLES}")
    for flag, value in (("--atol", args.atol), ("--rtol", args.rtol)):
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{flag} {value}: must be a finite number >= 0")
    if args.sample is not None and not args.sample.is_file():
        problems.append(f"--sample {args.sample}: no such file")
    for key, value, parse in (("labels", args.labels, _parse_labels),
                              ("metrics", args.metrics, _parse_metrics)):
        if value is not None:
            parsed[key], problem = parse(value)
            if problem:
                problems.append(problem)
    return problems, parsed


def _parse_labels(value: str) -> tuple[list[str] | None, str | None]:
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            return None, f"--labels {value}: cannot read {path}: {exc.strerror}"
        try:
            labels = json.loads(text) if text.lstrip().startswith("[") else text.splitlines()
        except ValueError as exc:
            return None, f"--labels {value}: not a JSON list ({exc})"
        labels = [str(v).strip() for v in labels if str(v).strip()]
    else:
        labels = [v.strip() for v in value.split(",")]
    if not labels or any(not v for v in labels):
        return None, (f"--labels {value!r}: give one non-empty label per output entry, "
                      "separated by commas (or @FILE with one per line)")
    duplicates = sorted({v for v in labels if labels.count(v) > 1})
    if duplicates:
        return None, f"--labels: {', '.join(map(repr, duplicates))} appear more than once"
    return labels, None


def _parse_metrics(path: Path) -> tuple[dict | None, str | None]:
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"--metrics {path}: cannot read a JSON object ({first_line(exc)})"
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and not k.startswith("parity_") and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v) for k, v in metrics.items()):
        return None, (f"--metrics {path}: must be a JSON object of finite numbers, keys not "
                      "starting with 'parity_' (those are the release's own)")
    return metrics, None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    problems, parsed = _flag_problems(args)
    if problems:
        parser.error("\n  - ".join([f"{len(problems)} problem(s):", *problems]))
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[release] {message}", flush=True)

    try:
        version = args.version or next_version(args.out, args.name)
        refuse_existing(args.out / args.name / version)
        log(f"loading {args.model}")
        with quiet_native_stderr():
            source = load_source(args.model, args.signature)
        spec = resolve_input(source, name=args.input_name, shape=parsed.get("shape"),
                             lo=args.input_min, hi=args.input_max,
                             description=args.description)
        inputs = (sample_inputs(args.sample, spec) if args.sample
                  else generated_inputs(spec, args.samples, args.seed))
        target = publish(source, spec, inputs, name=args.name, version=version, out=args.out,
                         labels=parsed.get("labels"), output_name=args.output_name,
                         atol=args.atol, rtol=args.rtol, metrics=parsed.get("metrics"), log=log)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        log(f"failed after {time.perf_counter() - started:.1f}s; nothing was written")
        return 1
    print(summary(target, started), flush=True)
    return 0


def summary(target: Path, started: float) -> str:
    """The one line a release ends with."""
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    files = [p for p in target.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return (f"released {manifest['name']} version {manifest['version']} to {shown_path(target)}: "
            f"{len(files)} files, {size / 1024:.0f} KiB, parity max abs diff "
            f"{manifest['metrics']['parity_max_abs_diff']:.1e} on "
            f"{manifest['metrics']['parity_samples']} inputs, in "
            f"{time.perf_counter() - started:.1f}s")


def shown_path(path: Path) -> str:
    """The path relative to the working directory when it is below it (shorter to read)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
