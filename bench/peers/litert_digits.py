"""The same LiteRT call as app/predictor.py, for the peer servers the benchmark runs in
their own virtualenvs (they cannot import app/): one interpreter per process, resized
only when the batch size changes, num_threads=1."""

import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter

_interpreter = Interpreter(model_path=os.path.join(os.environ["BENCH_MODEL_DIR"], "model.tflite"),
                           num_threads=1)
_input = _interpreter.get_input_details()[0]["index"]
_output = _interpreter.get_output_details()[0]["index"]
_batch = [0]


def predict(instances) -> list:
    x = np.asarray(instances, dtype=np.float32).reshape(-1, 8, 8)
    if x.shape[0] != _batch[0]:
        _interpreter.resize_tensor_input(_input, list(x.shape))
        _interpreter.allocate_tensors()
        _batch[0] = x.shape[0]
    _interpreter.set_tensor(_input, x)
    _interpreter.invoke()
    return _interpreter.get_tensor(_output).tolist()
