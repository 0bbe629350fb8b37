"""The model as the user gives it: a Keras file, a legacy .h5 or a SavedModel directory.

A source says what it takes and gives (from its signature), runs the original for the parity
check, converts itself to LiteRT, and keeps a copy of itself in the version folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

# Quieter TensorFlow start-up; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model.errors import ReleaseError, dims, first_line  # noqa: E402
# An input or output name is a key in request and response bodies (TENSOR_NAME_RULE); the
# input types are those the service converts request numbers to (DTYPES).
from model.manifest import DTYPES, MANIFEST_NAME, TENSOR_NAME_RULE  # noqa: E402

# Names Keras makes up for unnamed inputs: not worth showing clients.
KERAS_AUTO_NAME = re.compile(r"^(keras_tensor|input_layer)(_\d+)?$")
DEFAULT_INPUT_NAME = "input"
ALLOWED_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
FORMAT_NAMES = {"keras": "Keras 3 .keras file", "h5": "legacy Keras .h5 file"}
PREDICT_BATCH = 256       # the original model runs in batches of this many inputs


@dataclass(frozen=True)
class Tensor:
    """One model input or output, without the batch dimension (None: any size)."""

    name: str | None          # None: unnamed (Keras made a name up)
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class InputSpec:
    """The input contract written to the manifest: what the service accepts per instance."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    min: float
    max: float
    description: str | None = None

    def as_manifest(self) -> dict:
        number = float if self.dtype.startswith("float") else int
        spec = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "min": number(self.min), "max": number(self.max)}
        if self.description:
            spec["description"] = self.description
        return spec


class KerasSource:
    """A Keras model (from a .keras or .h5 file, or just trained). Converted through Keras'
    own LiteRT export (ExportArchive -> SavedModel -> converter), the path Keras maintains;
    a concrete-function conversion produced NaNs after a batch resize here."""

    def __init__(self, model, fmt: str = "keras", path: Path | None = None):
        self.model = model
        self.format = fmt
        self.path = path
        inputs = getattr(model, "inputs", None)
        outputs = getattr(model, "outputs", None)
        if not inputs or not outputs:
            raise ReleaseError(
                "the Keras model does not declare its inputs and outputs (a subclassed model "
                "that was never built on a keras.Input); build it functionally on keras.Input, "
                "or export a SavedModel with a serving signature (model.export(DIR)) and "
                "release that directory")
        _one("input", [t.name for t in inputs])
        _one("output", [t.name for t in outputs])
        tensor = inputs[0]
        name = tensor.name if not KERAS_AUTO_NAME.match(tensor.name) else None
        self.input = Tensor(name, tuple(tensor.shape[1:]), _dtype_name(tensor.dtype))
        self.batch = tensor.shape[0]
        names = getattr(model, "output_names", None) or [model.layers[-1].name]
        self.output_name = names[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, batch_size=PREDICT_BATCH, verbose=0))

    def to_litert(self, spec: InputSpec, path: Path) -> None:
        import tensorflow as tf

        # Our own signature: batch always None (the service resizes to each request's batch),
        # the declared shape and the input's name.
        signature = [tf.TensorSpec((None, *spec.shape), spec.dtype, name=spec.name)]
        self.model.export(str(path), format="litert", verbose=False,
                          input_signature=signature,
                          target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})

    def keep(self, folder: Path) -> str:
        """Write the original model into the version folder; return its file name."""
        if self.path is None:
            self.model.save(folder / "model.keras")
            return "model.keras"
        name = "model.keras" if self.format == "keras" else "model.h5"
        shutil.copyfile(self.path, folder / name)
        return name

    def describe(self) -> dict:
        return {"format": self.format}


class SavedModelSource:
    """A TensorFlow SavedModel directory, run and converted through one serving signature."""

    format = "saved_model"

    def __init__(self, path: Path, signature: str):
        import tensorflow as tf

        self.path = path
        self.signature = signature
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TensorFlow raises many types here; all mean "cannot load"
            raise ReleaseError(f"MODEL {path}: TensorFlow cannot load this SavedModel: "
                               f"{first_line(exc)}") from None
        available = sorted(loaded.signatures.keys())
        if signature not in loaded.signatures:
            raise ReleaseError(
                f"MODEL {path}: the SavedModel has no signature {signature!r} (it has: "
                f"{', '.join(available) or 'none'}); pick one with --signature")
        self._loaded = loaded  # the signature's function needs its variables alive
        self._fn = loaded.signatures[signature]
        _, kwargs = self._fn.structured_input_signature  # signatures take keywords only
        _one("input", sorted(kwargs))
        self._input_key, spec = next(iter(kwargs.items()))
        if spec.shape.rank is None or spec.shape.rank < 1:
            raise ReleaseError(f"MODEL {path}: signature {signature!r} input "
                               f"{self._input_key!r} has no batch dimension (shape "
                               f"{spec.shape}); the service sends batches")
        shape = tuple(spec.shape.as_list())
        self.batch = shape[0]
        self.input = Tensor(self._input_key, shape[1:], spec.dtype.name)
        _one("output", sorted(self._fn.structured_outputs))  # a dict for signatures
        self.output_name = next(iter(self._fn.structured_outputs))

    def predict(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        chunks = []
        for start in range(0, len(x), PREDICT_BATCH):
            result = self._fn(**{self._input_key: tf.constant(x[start:start + PREDICT_BATCH])})
            chunks.append(result[self.output_name].numpy())
        return np.concatenate(chunks)

    def to_litert(self, spec: InputSpec, path: Path) -> None:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(self.path), signature_keys=[self.signature])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True  # as Keras' export does
        path.write_bytes(converter.convert())

    def keep(self, folder: Path) -> str:
        """The SavedModel as one deterministic tar (a manifest lists files, not folders):
        sorted entries, no timestamps or owners, so the same directory gives the same sha256."""
        name = "saved_model.tar"
        with tarfile.open(folder / name, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.path.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=str(
                    Path("saved_model") / path.relative_to(self.path)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return name

    def describe(self) -> dict:
        return {"format": self.format, "signature": self.signature}


def load_source(path: Path, signature: str = "serving_default"):
    """Open MODEL as a Keras file or a SavedModel directory, or say clearly why not."""
    if not path.exists():
        raise ReleaseError(f"MODEL {path}: no such file or directory")
    if path.is_dir():
        if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
            hint = (" (it holds manifest.json: that is a released version folder, not a model)"
                    if (path / MANIFEST_NAME).is_file() else "")
            raise ReleaseError(
                f"MODEL {path}: a directory must be a TensorFlow SavedModel (with "
                f"saved_model.pb){hint}; give a .keras or .h5 file or a SavedModel directory")
        return SavedModelSource(path, signature)
    fmt = ALLOWED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        hint = {".tflite": " (a .tflite file cannot be checked against its original: release "
                           "the Keras model or SavedModel it came from)",
                ".pb": " (a frozen graph: export a SavedModel directory instead)"}
        raise ReleaseError(
            f"MODEL {path}: unsupported file type {path.suffix or '(none)'!r}"
            f"{hint.get(path.suffix.lower(), '')}; give a Keras 3 .keras file, a legacy "
            ".h5 file or a TensorFlow SavedModel directory")
    import keras

    try:
        # compile=False: serving needs no optimizer or loss (and custom losses would not load).
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError, zipfile errors...
        raise ReleaseError(
            f"MODEL {path}: Keras cannot load it as a {FORMAT_NAMES[fmt]}: {first_line(exc)}. "
            "If the model uses custom layers or Lambda layers, export it as a SavedModel (Keras 3: "
            "model.export(DIR); tf.keras: model.save(DIR)) where the code is importable, and "
            "release that directory: a SavedModel carries its graph and needs no Python code"
        ) from None
    return KerasSource(model, fmt, path)


def resolve_input(source, *, name: str | None = None, shape: tuple[int, ...] | None = None,
                  lo: float | None = None, hi: float | None = None,
                  description: str | None = None) -> InputSpec:
    """The model's signature, completed by the flags: the flags may name the input and fix
    the dimensions the model leaves open, never contradict it."""
    model_shape = source.input.shape
    if source.batch is not None:
        raise ReleaseError(
            f"the model's input has a fixed batch size of {source.batch}; the service sends "
            "batches of any size. Re-export it with a batch dimension of None (keras.Input "
            "without batch_size, or a tf.TensorSpec([None, ...]) signature)")
    if shape is not None:
        if len(shape) != len(model_shape) or any(
                m is not None and m != s for m, s in zip(model_shape, shape)):
            raise ReleaseError(f"--input-shape {dims(shape)} contradicts the model's input "
                               f"shape {dims(model_shape)} (None: any size)")
    elif any(d is None for d in model_shape):
        raise ReleaseError(f"the model's input shape {dims(model_shape)} has open dimensions "
                           "(None); fix them with --input-shape (e.g. ARGS='--input-shape "
                           f"{','.join(str(d or 8) for d in model_shape)}')")
    dtype = source.input.dtype
    if dtype not in DTYPES:
        raise ReleaseError(f"the model's input dtype {dtype} is not one the service accepts "
                           f"({', '.join(DTYPES)}); cast the input inside the model")
    if lo is None or hi is None:
        raise ReleaseError(
            "the model does not declare its input range: pass --input-min and --input-max "
            "(make release ... INPUT_MIN=.. INPUT_MAX=..), the smallest and largest value one "
            "input element may hold; the service rejects requests outside it")
    if dtype.startswith("int") or dtype.startswith("uint"):
        info = np.iinfo(dtype)
        if lo < info.min or hi > info.max:
            raise ReleaseError(f"input range [{lo:g}, {hi:g}] does not fit the model's input "
                               f"dtype {dtype} ({info.min} to {info.max})")
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise ReleaseError(f"input range [{lo:g}, {hi:g}]: the model's input dtype is "
                               f"{dtype}, so the bounds must be whole numbers")
    chosen = name or source.input.name or DEFAULT_INPUT_NAME
    if not TENSOR_NAME_RULE.fullmatch(chosen):
        raise ReleaseError(f"input name {chosen!r} is not usable as a request key; name it "
                           "with --input-name (letters, digits, _ . -, starting with a letter)")
    return InputSpec(chosen, tuple(shape or model_shape), dtype, lo, hi, description)


def _one(kind: str, names: list[str]) -> None:
    if len(names) != 1:
        raise ReleaseError(
            f"the model has {len(names)} {kind}s ({', '.join(map(str, names)) or 'none'}); the "
            f"service serves models with one {kind} tensor. Wrap the model so it takes and "
            "returns one tensor (e.g. concatenate inputs, select the output to serve) and "
            "release the wrapper")


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or np.dtype(dtype).name


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide what TensorFlow's C++ side writes to fd 2 (MLIR dumps, absl warnings) while it
    works; the Python exception it raises carries what matters. Set ML_APP_RELEASE_VERBOSE=1
    to see everything."""
    if os.environ.get("ML_APP_RELEASE_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
