"""Train, export and release a digits model version.

    python -m model.train [--name digits] [--version V] [--epochs N] [--seed S] [--out DIR]

Writes ``<out>/<name>/<version>/`` with ``model.keras`` (TensorFlow's format, kept for
retraining and audit), ``model.tflite`` (what the service runs with LiteRT) and
``manifest.json``. The export succeeds only when LiteRT and Keras agree on the held-out set
(design.md section 3). An existing version is never overwritten (design.md section 4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# Quieter TensorFlow start-up; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model import data  # noqa: E402
from model.manifest import MANIFEST_NAME, file_entry  # noqa: E402

DEFAULT_NAME = "digits"
DEFAULT_EPOCHS = 40
DEFAULT_SEED = 1234
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

MIN_ACCURACY = 0.95
PARITY_MAX_ABS_DIFF = 1e-4


class TrainingError(Exception):
    """A training or export run that must not produce a version."""


def build_model(seed: int):
    """A small CNN; its first layer rescales raw pixel values 0..16 to 0..1, so callers
    send the same numbers scikit-learn's digits hold."""
    import keras
    from keras import layers

    init = keras.initializers.GlorotUniform(seed=seed)
    model = keras.Sequential(
        [
            keras.Input(shape=data.INPUT_SHAPE, name="pixels"),
            layers.Rescaling(1.0 / data.VALUE_MAX),
            layers.Reshape((*data.INPUT_SHAPE, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init),
            layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=init),
            layers.GlobalAveragePooling2D(),
            layers.Dense(64, activation="relu", kernel_initializer=init),
            layers.Dense(len(data.LABELS), activation="softmax", kernel_initializer=init,
                         name="probabilities"),
        ],
        name="digits_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(seed: int, epochs: int, verbose: int = 2):
    """Train deterministically; return (model, split, held-out accuracy)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    split = data.load_split()
    model = build_model(seed)
    model.fit(
        split.x_train, split.y_train,
        epochs=epochs, batch_size=32, shuffle=True, verbose=verbose,
        validation_data=(split.x_test, split.y_test),
    )
    probs = model.predict(split.x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == split.y_test))
    return model, split, accuracy


def export_tflite(model, path: Path) -> None:
    """Keras 3's LiteRT export keeps the batch dimension dynamic, so the service can resize
    the interpreter to a whole batch."""
    model.export(str(path), format="litert", verbose=False)


def litert_predict(tflite_path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"]).copy()


def check_parity(keras_probs: np.ndarray, litert_probs: np.ndarray) -> dict:
    """Fail unless LiteRT reproduces Keras within tolerance and picks the same classes."""
    max_abs = float(np.max(np.abs(keras_probs - litert_probs)))
    agree = float(np.mean(np.argmax(keras_probs, 1) == np.argmax(litert_probs, 1)))
    problems = []
    if max_abs > PARITY_MAX_ABS_DIFF:
        problems.append(f"max abs difference {max_abs:.3g} exceeds {PARITY_MAX_ABS_DIFF:g} "
                        f"by {max_abs - PARITY_MAX_ABS_DIFF:.3g}")
    if agree < 1.0:
        n = int(round((1.0 - agree) * len(keras_probs)))
        problems.append(f"argmax agreement {agree:.2%}: {n} of {len(keras_probs)} held-out "
                        "samples get a different class")
    if problems:
        raise TrainingError("LiteRT export does not match Keras: " + "; ".join(problems))
    return {"max_abs_diff": max_abs, "argmax_agreement": agree}


def release(name: str, version: str, epochs: int, seed: int, out: Path,
            verbose: int = 2) -> Path:
    """Train, export, verify and write one version folder; return its path."""
    target = out / name / version
    if target.exists():
        raise TrainingError(
            f"{target} already exists; released versions are never overwritten. "
            "Pick a new --version (see docs/model.md)."
        )
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    print(f"[train] {name} v{version}: {epochs} epochs, seed {seed}", flush=True)
    model, split, accuracy = train(seed, epochs, verbose=verbose)
    print(f"[train] held-out accuracy {accuracy:.4f} on {len(split.y_test)} samples", flush=True)
    if accuracy < MIN_ACCURACY:
        raise TrainingError(f"held-out accuracy {accuracy:.4f} is below the {MIN_ACCURACY} "
                            "release bar; train longer (--epochs) or change the model")

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=out))
    try:
        model.save(staging / "model.keras")
        export_tflite(model, staging / "model.tflite")
        print("[export] checking LiteRT parity on the held-out set", flush=True)
        parity = check_parity(model.predict(split.x_test, verbose=0),
                              litert_predict(staging / "model.tflite", split.x_test))
        print(f"[export] parity: max abs diff {parity['max_abs_diff']:.2e}, "
              f"argmax agreement {parity['argmax_agreement']:.0%}", flush=True)
        import ai_edge_litert
        import sklearn

        manifest = {
            "name": name,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "framework": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "scikit_learn": sklearn.__version__,
                "ai_edge_litert": getattr(ai_edge_litert, "__version__", "2.3.0"),
            },
            "input": {
                "shape": list(data.INPUT_SHAPE),
                "dtype": "float32",
                "min": data.VALUE_MIN,
                "max": data.VALUE_MAX,
                "description": "8x8 grayscale digit, row-major, 0 = background, 16 = ink",
            },
            "output": {"name": "probabilities", "shape": [len(data.LABELS)]},
            "labels": list(data.LABELS),
            "metrics": {
                "heldout_accuracy": round(accuracy, 6),
                "heldout_samples": int(len(split.y_test)),
                "train_samples": int(len(split.y_train)),
                "parity_max_abs_diff": parity["max_abs_diff"],
                "parity_argmax_agreement": parity["argmax_agreement"],
            },
            "training": {
                "seed": seed,
                "epochs": epochs,
                "data": "sklearn.datasets.load_digits",
                "data_fingerprint": data.fingerprint(),
                "split": data.SPLIT_DESCRIPTION,
            },
            "files": {f: file_entry(staging / f) for f in ("model.tflite", "model.keras")},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.chmod(0o755)  # mkdtemp makes it 0700; the image and readers need r-x
        os.rename(staging, target)  # atomic: a version folder is complete or absent
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"[done] wrote {target} in {time.perf_counter() - started:.1f}s", flush=True)
    return target


def next_version(out: Path, name: str) -> str:
    existing = [int(p.name) for p in (out / name).glob("*") if p.name.isdigit()]
    return str(max(existing, default=0) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--version", help="new version (default: highest existing + 1)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=ARTIFACTS)
    args = parser.parse_args(argv)
    if not args.name.replace("-", "").replace("_", "").isalnum():
        parser.error(f"--name {args.name!r}: use letters, digits, '-' or '_'")
    version = args.version or next_version(args.out, args.name)
    if not version.isdigit() or int(version) < 1:
        parser.error(f"--version {version!r}: versions are positive integers (TF Serving's rule)")
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: must be at least 1")
    try:
        release(args.name, version, args.epochs, args.seed, args.out)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
