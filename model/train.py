"""Train the digits model and release it as a version folder.

    python -m model.train [--name digits] [--version V] [--epochs N] [--seed S] [--out DIR]

Training is this module's; releasing is model/release.py's, the same code that releases any
Keras model: ``<out>/<name>/<version>/`` gets ``model.keras`` (kept for retraining and
audit), ``model.tflite`` (what the service runs with LiteRT) and ``manifest.json``, only
when LiteRT and Keras agree on the held-out set (design.md section 3). An existing version is
never overwritten (design.md section 4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from model import data
# model.sources quiets TensorFlow's start-up (before TensorFlow is imported).
from model.errors import ReleaseError
from model.parity import Inputs
from model.release import (ARTIFACTS, framework_versions, name_problems, next_version, publish,
                           refuse_existing, summary)
from model.sources import KerasSource, quiet_native_stderr, resolve_input

DEFAULT_NAME = "digits"
DEFAULT_EPOCHS = 40
DEFAULT_SEED = 1234
MIN_ACCURACY = 0.95


class TrainingError(ReleaseError):
    """A training run that must not produce a version."""


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
    with quiet_native_stderr():  # TensorFlow's C++ chatter; Keras' per-epoch lines are stdout
        model.fit(
            split.x_train, split.y_train,
            epochs=epochs, batch_size=32, shuffle=True, verbose=verbose,
            validation_data=(split.x_test, split.y_test),
        )
        probs = model.predict(split.x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == split.y_test))
    return model, split, accuracy


def release(name: str, version: str, epochs: int, seed: int, out: Path,
            verbose: int = 2) -> Path:
    """Train, then release through the same code as any Keras model (model/release.py): the
    held-out set is the parity check's representative input. Return the version folder."""
    started = time.perf_counter()
    target = out / name / version
    refuse_existing(target)  # before training, not after

    def log(message: str) -> None:
        print(f"[train] {message}", flush=True)

    log(f"{name} version {version}: {epochs} epochs, seed {seed}")
    model, split, accuracy = train(seed, epochs, verbose=verbose)
    log(f"held-out accuracy {accuracy:.4f} on {len(split.y_test)} samples")
    if accuracy < MIN_ACCURACY:
        raise TrainingError(f"held-out accuracy {accuracy:.4f} is below the {MIN_ACCURACY} "
                            "release bar; train longer (--epochs) or change the model")
    import sklearn

    source = KerasSource(model)
    spec = resolve_input(source, lo=data.VALUE_MIN, hi=data.VALUE_MAX,
                         description="8x8 grayscale digit, row-major, 0 = background, 16 = ink")
    heldout = Inputs(split.x_test, f"held-out set: {len(split.y_test)} samples of "
                                   f"sklearn.datasets.load_digits, {data.SPLIT_DESCRIPTION}")
    publish(source, spec, heldout, name=name, version=version, out=out,
            labels=list(data.LABELS), log=log,
            framework=framework_versions(scikit_learn=sklearn.__version__),
            metrics={"heldout_accuracy": round(accuracy, 6),
                     "heldout_samples": int(len(split.y_test)),
                     "train_samples": int(len(split.y_train))},
            sections={"training": {
                "seed": seed,
                "epochs": epochs,
                "data": "sklearn.datasets.load_digits",
                "data_fingerprint": data.fingerprint(),
                "split": data.SPLIT_DESCRIPTION,
            }})
    print(f"trained and {summary(target, started)}; held-out accuracy {accuracy:.4f}",
          flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--version", help="new version (default: highest existing + 1)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=ARTIFACTS)
    args = parser.parse_args(argv)
    problems = name_problems(args.name, args.version)
    if args.epochs < 1:
        problems.append(f"--epochs {args.epochs}: must be at least 1")
    if problems:
        parser.error("; ".join(problems))
    version = args.version or next_version(args.out, args.name)
    try:
        release(args.name, version, args.epochs, args.seed, args.out)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
