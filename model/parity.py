"""Conversion to LiteRT and the proof that it changed nothing: representative inputs, the
converted model run as the service runs it, and the comparison with the original.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import ReleaseError, dims, first_line
from model.manifest import sha256_file
from model.sources import InputSpec, quiet_native_stderr

DEFAULT_SAMPLES = 256
MAX_SAMPLES = 100_000
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
LITERT_BATCH = 256        # parity runs LiteRT in batches of up to this many inputs ...
LITERT_SINGLE = 4         # ... then this many again one by one (a batch resize must not break it)

OPS_HELP = ("What to do: replace these operations with ones LiteRT has built in "
            "(https://ai.google.dev/edge/litert/models/ops_compatibility), or move them out "
            "of the model (into the client, before or after the prediction); then save the "
            "model and release it again. The serving runtime (ai-edge-litert) has no "
            "TensorFlow kernels, so 'Select TF ops' cannot run there.")


class UnsupportedOpsError(ReleaseError):
    """The model uses operations the LiteRT runtime cannot run."""

    def __init__(self, ops: dict[str, str], where: str):
        self.ops = ops
        listed = "; ".join(f"{op} ({why})" for op, why in sorted(ops.items()))
        super().__init__(f"LiteRT cannot run this model: {where} {len(ops)} unsupported "
                         f"operation{'s' if len(ops) != 1 else ''}: {listed}. {OPS_HELP}")


class ParityError(ReleaseError):
    """LiteRT does not reproduce the original model within the tolerance."""


@dataclass
class Inputs:
    """Representative inputs for the parity check, and a line saying where they came from."""

    x: np.ndarray
    description: str


def generated_inputs(spec: InputSpec, n: int, seed: int) -> Inputs:
    """n inputs uniform inside the declared range, the first three all-min, all-max and
    midpoint (the edges are real inputs too: a blank digit is all zeros)."""
    rng = np.random.default_rng(seed)
    size = (n, *spec.shape)
    if spec.dtype.startswith("float"):
        x = rng.uniform(spec.min, spec.max, size)
    else:
        x = rng.integers(int(spec.min), int(spec.max), size, endpoint=True)
    for i, value in enumerate((spec.min, spec.max, (spec.min + spec.max) / 2)[:n]):
        x[i] = value if spec.dtype.startswith("float") else math.floor(value)
    return Inputs(x.astype(spec.dtype),
                  f"generated: {n} inputs uniform in [{spec.min:g}, {spec.max:g}] (seed "
                  f"{seed}), the first three all-min, all-max and midpoint")


def sample_inputs(path: Path, spec: InputSpec) -> Inputs:
    """Inputs from a file: .npy (an array), .json (a list of instances, or a TF Serving body
    {"instances": [...]}) or .csv (one flattened instance per line). Every value must be
    inside the declared range: the service would reject anything else."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            body = json.loads(path.read_text())
            raw = body["instances"] if isinstance(body, dict) and "instances" in body else body
        elif suffix == ".csv":
            raw = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            raise ReleaseError(f"--sample {path}: unsupported file type {suffix or '(none)'!r}; "
                               "use .npy, .json (a list of instances or {\"instances\": [...]}) "
                               "or .csv (one instance per line)")
        x = np.asarray(raw, dtype=np.float64)
    except ReleaseError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ReleaseError(f"--sample {path}: cannot read it as {suffix[1:]} numbers: "
                           f"{first_line(exc)}") from None
    shape = spec.shape
    if x.shape == shape:
        x = x[None]  # one instance
    size = math.prod(shape)
    if x.ndim == 2 and x.shape[1] == size and len(shape) > 1:
        x = x.reshape(len(x), *shape)  # flattened instances, as the service also accepts
    if x.shape[1:] != shape or len(x) == 0:
        raise ReleaseError(f"--sample {path}: holds an array of shape {dims(x.shape)}; the "
                           f"model takes instances of shape {dims(shape)} (or {size} numbers "
                           "each), at least one")
    flat = x.reshape(len(x), -1)
    bad = ~np.isfinite(flat) | (flat < spec.min) | (flat > spec.max)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise ReleaseError(f"--sample {path}: instance {i}, value {j} = {flat[i, j]:g} is "
                           f"outside the declared input range [{spec.min:g}, {spec.max:g}]; "
                           "fix the sample or the range (--input-min/--input-max)")
    if not spec.dtype.startswith("float") and not np.array_equal(flat, np.round(flat)):
        i, j = (int(v[0]) for v in np.nonzero(flat != np.round(flat)))
        raise ReleaseError(f"--sample {path}: instance {i}, value {j} = {flat[i, j]:g} is not "
                           f"a whole number; the model's input dtype is {spec.dtype}")
    return Inputs(x.astype(spec.dtype), f"sample file {path.name}: {len(x)} inputs "
                                        f"(sha256 {sha256_file(path)})")


_OP_PATTERNS = (
    (re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"), None),
    (re.compile(r"failed to legalize operation 'tf\.(\w+)'"), "no LiteRT kernel"),
    (re.compile(r"Didn't find op for builtin opcode '(\w+)'"), "not in this LiteRT runtime"),
    (re.compile(r"Node number \d+ \((\w+)\) failed to prepare"), "LiteRT cannot prepare it"),
    (re.compile(r"Encountered unresolved custom op: (\w+)"), "custom op unknown to LiteRT"),
)
_ERROR_CODE_REASONS = {
    "ERROR_NEEDS_FLEX_OPS": "a TensorFlow op with no LiteRT built-in",
    "ERROR_NEEDS_CUSTOM_OPS": "no LiteRT or TensorFlow Select kernel",
    "ERROR_UNSUPPORTED_CONTROL_FLOW_V1": "TF1 control flow: re-save the model with TF2",
}


def unsupported_ops(exc: Exception) -> dict[str, str]:
    """Operation -> reason, from a converter or interpreter error (empty: none named)."""
    ops: dict[str, str] = {}
    for err in getattr(exc, "errors", None) or ():  # the converter's structured errors
        op = err.operator.name.removeprefix("tf.")
        if op:
            code = err.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_number
            code_name = code[err.error_code].name if err.error_code in code else ""
            ops[op] = _ERROR_CODE_REASONS.get(code_name, "LiteRT cannot convert it")
    text = str(exc)
    for pattern, reason in _OP_PATTERNS:
        for op in pattern.findall(text):
            ops.setdefault(op, reason or "a TensorFlow op with no LiteRT built-in")
    return ops


def convert(source, spec: InputSpec, path: Path) -> None:
    """Write model.tflite with LiteRT's built-in operations only, or refuse naming the ops."""
    try:
        with quiet_native_stderr():
            source.to_litert(spec, path)
    except ReleaseError:
        raise
    except Exception as exc:  # converter errors come as several types
        ops = unsupported_ops(exc)
        if ops:
            raise UnsupportedOpsError(ops, "it uses") from None
        raise ReleaseError(f"conversion to LiteRT failed: {first_line(exc)}") from None


class LiteRTModel:
    """The converted model in the serving runtime, run as the service runs it."""

    def __init__(self, path: Path, spec: InputSpec):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
        except (RuntimeError, ValueError) as exc:
            raise self._refusal(exc) from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ReleaseError(f"the converted model has {len(inputs)} inputs and "
                               f"{len(outputs)} outputs; the service runs one of each")
        self._input, self.output = inputs[0], outputs[0]
        signature = [int(d) for d in self._input["shape_signature"]]
        if signature[0] != -1:
            raise ReleaseError(f"the converted model's batch dimension is fixed at "
                               f"{signature[0]}; the service needs it resizable (None)")
        dtype = np.dtype(self._input["dtype"]).name
        if dtype != spec.dtype or len(signature) != len(spec.shape) + 1:
            raise ReleaseError(f"the converted model takes {dtype} of shape {signature}, not "
                               f"the declared {spec.dtype} {list(spec.shape)}")
        self._batch = None

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            if x.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], list(x.shape))
                self._interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self._interpreter.set_tensor(self._input["index"], x)
            self._interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise self._refusal(exc) from None
        return self._interpreter.get_tensor(self.output["index"]).copy()

    @staticmethod
    def _refusal(exc: Exception) -> ReleaseError:
        ops = unsupported_ops(exc)
        if ops:
            return UnsupportedOpsError(ops, "the LiteRT runtime cannot run")
        return ReleaseError(f"the LiteRT runtime cannot run the converted model: "
                            f"{first_line(exc)}")


@dataclass
class Proof:
    """What the parity check measured, for the manifest."""

    output_shape: list[int]
    output_dtype: str
    max_abs_diff: float
    argmax_agreement: float | None
    batch_sizes: list[int]


def prove_parity(source, tflite: Path, spec: InputSpec, inputs: Inputs, atol: float,
                 rtol: float, classifier: bool = False) -> Proof:
    """Run the original and the LiteRT model on the same inputs; raise unless they agree."""
    with quiet_native_stderr():
        reference = source.predict(inputs.x)
        lite = LiteRTModel(tflite, spec)
        batched, singles, sizes = litert_outputs(lite, inputs.x)
    figures = check_parity(reference, batched, atol, rtol, classifier)
    check_parity(reference[:len(singles)], singles, atol, rtol)
    return Proof([int(d) for d in reference.shape[1:]], np.dtype(lite.output["dtype"]).name,
                 figures["max_abs_diff"], figures.get("argmax_agreement"), sizes)


def litert_outputs(model: LiteRTModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """All inputs in batches of up to LITERT_BATCH, then the first few again one at a time
    (the service resizes the interpreter to every request's batch size)."""
    batched = np.concatenate([model.run(x[i:i + LITERT_BATCH])
                              for i in range(0, len(x), LITERT_BATCH)])
    singles = np.concatenate([model.run(x[i:i + 1]) for i in range(min(LITERT_SINGLE, len(x)))])
    sizes = sorted({min(LITERT_BATCH, len(x)), len(x) % LITERT_BATCH or LITERT_BATCH, 1},
                   reverse=True)
    return batched, singles, sizes


def check_parity(reference: np.ndarray, litert: np.ndarray, atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL, classifier: bool = False) -> dict:
    """Fail unless every LiteRT output is within atol + rtol * |original| of the original's;
    return the figures the manifest records."""
    if reference.shape != litert.shape:
        raise ParityError(f"LiteRT returns outputs of shape {dims(litert.shape[1:])}, the "
                          f"original model {dims(reference.shape[1:])}")
    ref, lite = reference.astype(np.float64), litert.astype(np.float64)
    broken = ~np.isfinite(ref)
    if broken.any():
        first = int(np.nonzero(broken.reshape(len(ref), -1).any(1))[0][0])
        raise ParityError(
            f"the original model itself returns NaN or infinity for {int(broken.sum())} "
            f"output values (first at input {first}) on inputs inside the declared range; "
            "check --input-min/--input-max, or give a --sample of realistic inputs")
    diff = np.abs(lite - ref)  # NaN where LiteRT gave NaN
    bad = ~(diff <= atol + rtol * np.abs(ref))  # NaN compares false: counted as bad
    if bad.any():
        candidates = np.flatnonzero(bad)
        worst = candidates[np.argmax(np.nan_to_num(diff.ravel()[candidates], nan=np.inf))]
        sample, *index = np.unravel_index(worst, ref.shape)
        nan = int(np.isnan(lite).sum())
        raise ParityError(
            f"LiteRT does not reproduce the original model: {int(bad.sum())} of {bad.size} "
            f"output values differ by more than {atol:g} + {rtol:g} x |original| (worst: input "
            f"{sample}, output {[int(i) for i in index]}: original {ref.flat[worst]:.6g}, "
            f"LiteRT {lite.flat[worst]:.6g})" + (f"; {nan} LiteRT values are NaN" if nan else "")
            + ". A model that is random at inference (noise, dropout "
            "called with training=True) cannot match; if a larger gap is expected, pass "
            "--atol/--rtol (ARGS='--atol 1e-3')")
    max_abs = float(diff.max())
    figures = {"max_abs_diff": max_abs}
    if classifier:
        figures["argmax_agreement"] = float(np.mean(
            np.argmax(ref.reshape(len(ref), -1), 1) == np.argmax(lite.reshape(len(ref), -1), 1)))
    return figures
