"""A second model for the service: a small Keras regressor on scikit-learn's bundled diabetes
data (442 patients, 10 features, disease progression after one year).

    python -m model.examples.diabetes [--out DIR] [--epochs 60] [--seed 1234]

It trains, seeded, and writes what a user brings to ``make release``: ``DIR/diabetes.keras``,
the held-out features ``DIR/heldout.npy`` (representative inputs for the parity check) and
``DIR/metrics.json`` (held-out R^2 and MAE). Then it prints the release command; the
committed ``model/artifacts/diabetes/1/`` was made exactly so (docs/model.md).

Everything about it differs from digits on purpose: input shape (10,) not (8, 8), a small
signed float range, one float output, no labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# model.release quiets TensorFlow's start-up (before TensorFlow is imported).
from model.release import quiet_native_stderr, shown_path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "build" / "diabetes"
DEFAULT_EPOCHS = 60
DEFAULT_SEED = 1234
TEST_FRACTION = 0.2
SPLIT_SEED = 0
# scikit-learn scales every feature to mean 0 and norm 1 over the 442 patients, so one
# standard deviation is 1/sqrt(442) ~ 0.048: +-0.3 is +-6 standard deviations (the data's
# own extremes are -0.138 and 0.199). Requests outside it are not patients.
INPUT_MIN, INPUT_MAX = -0.3, 0.3
INPUT_NAME = "features"
OUTPUT_NAME = "progression"
# The target (25..346) is learnt standardised; the last layer maps it back.
TARGET_MEAN, TARGET_STD = 152.0, 77.0


def load_split():
    """The fixed split: (x_train, x_test, y_train, y_test), features float32 of shape (n, 10)."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    data = load_diabetes()
    return train_test_split(data.data.astype(np.float32), data.target.astype(np.float32),
                            test_size=TEST_FRACTION, random_state=SPLIT_SEED)


def build_model(seed: int):
    """10 features -> 16 ReLU units -> one standardised value -> the progression score."""
    import keras
    from keras import layers

    init = keras.initializers.GlorotUniform(seed=seed)
    model = keras.Sequential([
        keras.Input(shape=(10,), name=INPUT_NAME),
        layers.Dense(16, activation="relu", kernel_initializer=init),
        layers.Dense(1, kernel_initializer=init),
        layers.Rescaling(TARGET_STD, offset=TARGET_MEAN, name=OUTPUT_NAME),
    ], name="diabetes_mlp")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
    return model


def train(seed: int, epochs: int):
    """Train deterministically; return (model, x_test, metrics on the held-out set)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x_train, x_test, y_train, y_test = load_split()
    model = build_model(seed)
    with quiet_native_stderr():
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, shuffle=True, verbose=2)
        predicted = model.predict(x_test, verbose=0)[:, 0]
    residual = np.sum((predicted - y_test) ** 2)
    metrics = {
        "heldout_r2": round(float(1 - residual / np.sum((y_test - y_test.mean()) ** 2)), 6),
        "heldout_mae": round(float(np.mean(np.abs(predicted - y_test))), 4),
        "heldout_samples": int(len(y_test)),
        "train_samples": int(len(y_train)),
    }
    return model, x_test, metrics


def release_command(out: Path) -> str:
    out = Path(shown_path(out))
    return (f"make release MODEL={out / 'diabetes.keras'} NAME=diabetes "
            f"INPUT_MIN={INPUT_MIN} INPUT_MAX={INPUT_MAX} SAMPLE={out / 'heldout.npy'} "
            f"ARGS='--metrics {out / 'metrics.json'} --description \"10 baseline features "
            "(age, sex, bmi, bp, s1-s6), each mean-centred and scaled as in "
            "sklearn.datasets.load_diabetes\"'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.examples.diabetes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: must be at least 1")
    print(f"[diabetes] training {args.epochs} epochs, seed {args.seed}", flush=True)
    model, x_test, metrics = train(args.seed, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "diabetes.keras")
    np.save(args.out / "heldout.npy", x_test)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"trained diabetes: held-out R^2 {metrics['heldout_r2']:.3f}, MAE "
          f"{metrics['heldout_mae']:.1f} on {metrics['heldout_samples']} patients; wrote "
          f"{shown_path(args.out)}/diabetes.keras, heldout.npy, metrics.json. Release it with:\n  "
          f"{release_command(args.out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
