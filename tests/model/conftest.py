"""Small models in every form a user may bring, built once per session (a few seconds), and a
helper that runs the release command in-process the way the command line does."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """name -> path. ``keras``, ``h5`` and ``saved_model`` are the same classifier (6 float
    readings -> 3 softmax scores) saved three ways; the others each break one rule."""
    import keras
    import tensorflow as tf
    from keras import layers

    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    paths: dict[str, Path] = {}

    reading = keras.Input((6,), name="reading")
    scores = layers.Dense(3, activation="softmax", name="scores")(
        layers.Dense(8, activation="tanh")(reading))
    classifier = keras.Model(reading, scores)
    paths["keras"] = root / "classifier.keras"
    classifier.save(paths["keras"])
    paths["h5"] = root / "classifier.h5"
    classifier.save(paths["h5"])  # Keras' legacy HDF5 format
    paths["saved_model"] = root / "classifier_savedmodel"
    classifier.export(str(paths["saved_model"]), format="tf_saved_model", verbose=False)

    # Unnamed input, open time dimension, integer token ids.
    tokens = keras.Sequential([keras.Input((None,), dtype="int32"), layers.Embedding(10, 4),
                               layers.GlobalAveragePooling1D(), layers.Dense(2)])
    paths["tokens"] = root / "tokens.keras"
    tokens.save(paths["tokens"])

    a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
    paths["two_inputs"] = root / "two_inputs.keras"
    keras.Model([a, b], layers.Dense(1)(layers.Concatenate()([a, b]))).save(paths["two_inputs"])

    # A custom Keras layer whose operation LiteRT has no kernel for (registered for this
    # process, where the release runs in-process).
    @keras.saving.register_keras_serializable(package="ml_app_tests")
    class Determinant(layers.Layer):
        def call(self, x):
            return keras.ops.expand_dims(keras.ops.det(x), -1)

    matrix = keras.Input((3, 3), name="matrix")
    paths["keras_det"] = root / "det.keras"
    keras.Model(matrix, Determinant()(matrix)).save(paths["keras_det"])

    class Module(tf.Module):
        def __init__(self, fn, spec):
            super().__init__()
            self.serve = tf.function(fn, input_signature=[spec])

    def saved(name, fn, spec):
        module = Module(fn, spec)
        tf.saved_model.save(module, str(root / name), signatures={"serving_default": module.serve})
        paths[name] = root / name

    # TensorFlow's determinant: a Select (Flex) op, which the serving runtime lacks.
    saved("sm_det", lambda m: {"det": tf.linalg.det(m)},
          tf.TensorSpec([None, 3, 3], tf.float32, name="m"))
    saved("sm_fixed_batch", lambda x: {"y": x * 2.0}, tf.TensorSpec([1, 4], tf.float32, name="x"))
    saved("sm_log", lambda x: {"y": tf.math.log(x)}, tf.TensorSpec([None, 4], tf.float32, name="x"))
    return paths


@pytest.fixture
def release(capsys):
    """release(*argv) -> (exit code, stdout, stderr) of ``python -m model.release``."""
    from model.release import main

    def run(*argv) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def tree(folder: Path) -> list[str]:
    """Everything under folder, hidden entries included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def litert(path: Path, x):
    """Run a model.tflite at x's batch size, as the service does."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
