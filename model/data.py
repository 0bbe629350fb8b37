"""The training data: scikit-learn's bundled digits, with a fixed held-out split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

INPUT_SHAPE = (8, 8)
VALUE_MIN = 0.0
VALUE_MAX = 16.0
LABELS = tuple(str(d) for d in range(10))
TEST_FRACTION = 0.2
SPLIT_SEED = 0
SPLIT_DESCRIPTION = (f"stratified train_test_split(test_size={TEST_FRACTION}, "
                     f"random_state={SPLIT_SEED})")


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def load_split() -> Split:
    """The fixed split every training run and test uses (x as float32 of shape (n, 8, 8))."""
    from sklearn.model_selection import train_test_split

    x, y = load()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    return Split(x_train, y_train, x_test, y_test)


def fingerprint() -> str:
    """sha256 over the raw data and labels: proves which data a version was trained on."""
    x, y = load()
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return "sha256:" + h.hexdigest()
