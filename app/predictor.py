"""Runs model.tflite with Google's LiteRT runtime (no TensorFlow in the serving image)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from app.manifest import ModelIntegrityError, ServingSpec


class Predictor:
    """One LiteRT interpreter per model version per process. The interpreter is not
    thread-safe, so calls are serialised with a lock (uncontended: each granian worker runs
    one request at a time)."""

    def __init__(self, folder: Path, spec: ServingSpec):
        from ai_edge_litert.interpreter import Interpreter

        path = folder / "model.tflite"
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
            inp = self._interpreter.get_input_details()[0]
            self._input = inp["index"]
            self._output = self._interpreter.get_output_details()[0]["index"]
        except (ValueError, RuntimeError, IndexError) as exc:
            # The bytes match the manifest, so the release itself is broken: say so, once.
            raise ModelIntegrityError(
                f"{path}: matches its manifest but LiteRT cannot load it "
                f"({' '.join(str(exc).split())[:300]}); release a new model version") from None
        # The manifest is what requests are validated against: it must describe this file.
        declared = [int(d) for d in inp.get("shape_signature", inp["shape"])[1:]]
        if np.dtype(inp["dtype"]) != np.dtype(spec.dtype) or any(
                d not in (-1, want) for d, want in zip(declared, spec.shape)) \
                or len(declared) != len(spec.shape):
            raise ModelIntegrityError(
                f"{path}: takes {np.dtype(inp['dtype']).name} {declared} per instance but "
                f"manifest.json declares input {spec.dtype} {list(spec.shape)}; the version "
                "folder is inconsistent: release the model again (`make release`)")
        self._batch = 0
        self._lock = threading.Lock()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: shape (n, *input_shape) in the input's dtype; returns shape (n, *output_shape)."""
        with self._lock:
            if x.shape[0] != self._batch:
                # Resizing re-plans the graph (~tens of microseconds): only when n changes.
                self._interpreter.resize_tensor_input(self._input, list(x.shape))
                self._interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()
