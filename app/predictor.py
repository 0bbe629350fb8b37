"""Runs model.tflite with Google's LiteRT runtime (no TensorFlow in the serving image)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from app.manifest import ModelIntegrityError


class Predictor:
    """One LiteRT interpreter per process. The interpreter is not thread-safe, so calls are
    serialised with a lock (uncontended: each granian worker runs one request at a time)."""

    def __init__(self, folder: Path, manifest: dict):
        from ai_edge_litert.interpreter import Interpreter

        self.name = manifest["name"]
        self.version = str(manifest["version"])
        self.input_shape = tuple(manifest["input"]["shape"])
        self.labels = list(manifest["labels"])
        path = folder / "model.tflite"
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
            self._input = self._interpreter.get_input_details()[0]["index"]
            self._output = self._interpreter.get_output_details()[0]["index"]
        except (ValueError, RuntimeError, IndexError) as exc:
            # The bytes match the manifest, so the release itself is broken: say so, once.
            raise ModelIntegrityError(
                f"{path}: matches its manifest but LiteRT cannot load it "
                f"({' '.join(str(exc).split())[:300]}); release a new model version") from None
        self._batch = 0
        self._lock = threading.Lock()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: float32 of shape (n, *input_shape); returns probabilities of shape (n, labels)."""
        with self._lock:
            if x.shape[0] != self._batch:
                # Resizing re-plans the graph (~tens of microseconds): only when n changes.
                self._interpreter.resize_tensor_input(self._input, list(x.shape))
                self._interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()
