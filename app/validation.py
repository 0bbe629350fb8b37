"""Turn a TF Serving request body into a batch for one model, or a 4xx with a precise reason.

Accepted (TensorFlow Serving REST, design.md section 5), for a model whose input is named
``<name>`` in its manifest (``pixels`` for digits, ``features`` for diabetes):
  {"instances": [X, ...]}                 row format
  {"instances": [{"<name>": X}, ...]}     row format, named input
  {"inputs": [X, ...]}                    columnar format
  {"inputs": {"<name>": [X, ...]}}        columnar format, named input
where each X is one instance of the manifest's input shape, flat (all its numbers in
row-major order) or nested to that shape (8 rows of 8 numbers), every number within the
manifest's range, and a whole number when the input's type is an integer one.
"""

from __future__ import annotations

import math
import re

import numpy as np
import orjson

from app.manifest import ServingSpec


class BadRequest(Exception):
    """A client error: ``status`` and a message saying what was wrong and where."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


_NON_FINITE = (b"-Infinity", b"Infinity", b"NaN")


def parse_json(raw: bytes):
    """Strict JSON (orjson: no NaN or Infinity, 1024 levels deep at most), ~3x faster than
    the standard library on a predict body; errors are rephrased for clients."""
    if not raw.strip():
        raise BadRequest('empty request body; send a JSON object such as {"instances": '
                         "[<instance>, ...]} (GET /v1/models/<name>/metadata describes an "
                         "instance)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson stops at the token (NaN, Infinity) or just after its sign (-Infinity)
        token = next((t for at in (exc.pos - 1, exc.pos) for t in _NON_FINITE
                      if at >= 0 and raw.startswith(t, at)), None)
        if token is not None:
            raise BadRequest(f"{token.decode()} is not a valid JSON number; send finite "
                             "numbers only") from None
        if "UTF-8" in exc.msg:
            raise BadRequest("request body is not UTF-8 (JSON must be UTF-8 encoded)") from None
        raise BadRequest(f"malformed JSON: {exc}") from None


def _type_name(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__)


def describe_shape(shape: tuple[int, ...]) -> str:
    """How an instance of ``shape`` may be written: '10 numbers', '64 numbers or 8 rows of 8
    numbers', '96 numbers or a nested list of shape [4, 8, 3]'."""
    size = math.prod(shape)
    if len(shape) == 1:
        return f"{size} number{'s' if size != 1 else ''}"
    if len(shape) == 2:
        return f"{size} numbers or {shape[0]} rows of {shape[1]} numbers"
    return f"{size} numbers or a nested list of shape {list(shape)}"


class InstanceParser:
    """Validates instances against one model's input spec (shape, range, type, name) and
    builds the batch its interpreter takes."""

    def __init__(self, spec: ServingSpec, max_batch: int):
        self.shape = spec.shape
        self.size = math.prod(spec.shape)
        self.rows = spec.shape[0] if len(spec.shape) > 1 else None
        self.lo, self.hi = spec.lo, spec.hi
        self.dtype = np.dtype(spec.dtype)
        self.whole = spec.whole_numbers
        self.input_name = spec.input_name
        self.max_batch = max_batch
        self.number = "a whole number" if self.whole else "a number"
        self.range_text = f"from {self.lo:g} to {self.hi:g}"
        self.expected = (f"{describe_shape(spec.shape)}, each "
                         f"{'a whole number ' if self.whole else ''}{self.range_text}")
        # Who expects it, for the shape error: a request meant for another model says so.
        self.owner = (f"the input {spec.input_name!r} of model {spec.name!r} version "
                      f"{spec.version}")

    def _shape_error(self, where: str, value: list) -> BadRequest:
        return BadRequest(f"{where}: expected {self.expected} ({self.owner}); got a list of "
                          f"{len(value)} items"
                          + (" that are not all rows" if len(value) == self.rows else ""))

    def _nested(self, value: list, dims: tuple[int, ...], where: str) -> list:
        """Flatten a list nested to ``dims``, naming the first place where it is not."""
        if len(value) != dims[0]:
            if len(dims) == 1:
                raise BadRequest(f"{where}: expected {dims[0]} numbers per row, got {len(value)}")
            raise BadRequest(f"{where}: expected {dims[0]} lists at this depth (shape "
                             f"{list(self.shape)}), got {len(value)}")
        if len(dims) == 1:
            return value      # numbers; the caller checks each
        flat: list = []
        for r, item in enumerate(value):
            if type(item) is not list:
                raise BadRequest(f"{where}[{r}]: expected a list (shape {list(self.shape)}), "
                                 f"got {_type_name(item)}")
            flat += self._nested(item, dims[1:], f"{where}[{r}]")
        return flat

    def _flat(self, value, where: str) -> list:
        if isinstance(value, dict):
            if set(value) != {self.input_name}:
                raise BadRequest(f"{where}: an object instance must have exactly one key "
                                 f"'{self.input_name}', got {sorted(value)[:5]}")
            value = value[self.input_name]
            where = f"{where}.{self.input_name}"
        if type(value) is not list:
            raise BadRequest(f"{where}: expected {self.expected}; got {_type_name(value)}")
        if len(value) == self.size and all(type(v) is not list for v in value):
            flat = value
        elif self.rows is not None and len(value) == self.rows \
                and all(type(r) is list for r in value):
            flat = self._nested(value, self.shape, where)
        else:
            raise self._shape_error(where, value)
        lo, hi = self.lo, self.hi
        for i, v in enumerate(flat):
            t = type(v)
            if t is not int and t is not float:
                raise BadRequest(f"{where}: value {i} is {_type_name(v)}; expected "
                                 f"{self.number} {self.range_text}")
            if not (lo <= v <= hi):  # also false for NaN
                shown = v if math.isfinite(v) else str(v)
                raise BadRequest(f"{where}: value {i} = {shown} is outside the input range "
                                 f"[{lo:g}, {hi:g}]")
        if self.whole:
            for i, v in enumerate(flat):
                if type(v) is float and not v.is_integer():
                    raise BadRequest(f"{where}: value {i} = {v} is not a whole number; this "
                                     f"model's input is {self.dtype.name}")
        return flat

    def parse(self, body) -> tuple[np.ndarray, str]:
        """Return (batch of shape (n, *input shape) in the input's dtype, "instances" or
        "inputs")."""
        if not isinstance(body, dict):
            raise BadRequest(f"request body must be a JSON object with 'instances' or "
                             f"'inputs'; got {_type_name(body)}")
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows == has_cols:
            raise BadRequest("send exactly one of 'instances' (row format) or 'inputs' "
                             "(columnar format)" + (", not both" if has_rows else ""))
        unknown = set(body) - {"instances", "inputs", "signature_name"}
        if unknown:
            raise BadRequest(f"unknown request keys {sorted(unknown)}; allowed: instances, "
                             "inputs, signature_name")
        sig = body.get("signature_name", "serving_default")
        if sig != "serving_default":
            raise BadRequest(f"signature_name {sig!r} not found; this model has "
                             "'serving_default' only")
        key = "instances" if has_rows else "inputs"
        batch = body[key]
        if key == "inputs" and isinstance(batch, dict):
            if set(batch) != {self.input_name}:
                raise BadRequest(f"inputs: a named input object must have exactly one key "
                                 f"'{self.input_name}', got {sorted(batch)[:5]}")
            batch = batch[self.input_name]
            key_path = f"inputs.{self.input_name}"
        else:
            key_path = key
        if type(batch) is not list:
            raise BadRequest(f"{key_path}: expected a list of instances; got {_type_name(batch)}")
        if not batch:
            raise BadRequest(f"{key_path}: empty batch; send at least one instance")
        if len(batch) > self.max_batch:
            raise BadRequest(f"{key_path}: batch of {len(batch)} instances exceeds the maximum "
                             f"of {self.max_batch} (MAX_BATCH_SIZE); split the request", 413)
        rows = [self._flat(item, f"{key_path}[{i}]") for i, item in enumerate(batch)]
        return np.asarray(rows, dtype=self.dtype).reshape(len(rows), *self.shape), key

    def parse_csv(self, raw: bytes) -> np.ndarray:
        """SageMaker's text/csv: one instance per line, all its numbers comma-separated.

        Numbers are ASCII decimals only (``12``, ``-0.5``, ``1e3``): Python's float() would
        also take ``٥``, ``１``, ``1_0``, ``nan`` and ``inf``. Line and cell counts are checked
        on the raw bytes before any number is parsed, so an oversized body costs a count."""
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if not lines:
            raise BadRequest(f"empty CSV body; send one line of {self.size} comma-separated "
                             "numbers per instance")
        if len(lines) > self.max_batch:
            raise BadRequest(f"batch of {len(lines)} lines exceeds the maximum of "
                             f"{self.max_batch} (MAX_BATCH_SIZE)", 413)
        for n, line in enumerate(lines):
            cells = line.count(b",") + 1
            if cells != self.size:
                raise BadRequest(f"line {n + 1}: expected {self.expected}; got {cells} "
                                 "comma-separated values")
        rows = []
        for n, line in enumerate(lines):
            values = []
            for cell in line.split(b","):
                if not _ASCII_DECIMAL.fullmatch(cell):
                    shown = cell.strip()[:20].decode("utf-8", "replace")
                    raise BadRequest(f"line {n + 1}: {shown!r} is not a number (ASCII decimal "
                                     "digits, optional sign, point and exponent)")
                v = float(cell)
                values.append(int(v) if v.is_integer() else v)
            rows.append(self._flat(values, f"line {n + 1}"))
        return np.asarray(rows, dtype=self.dtype).reshape(len(rows), *self.shape)


# An ASCII decimal number, optionally padded with blanks: what CSV writers emit. Not
# Python's float() grammar, which also accepts other scripts' digits, underscores, nan, inf.
_ASCII_DECIMAL = re.compile(rb"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
