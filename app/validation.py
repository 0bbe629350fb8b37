"""Turn a TF Serving request body into a float32 batch, or a 4xx with a precise reason.

Accepted (TensorFlow Serving REST, design.md section 5):
  {"instances": [X, ...]}                 row format
  {"instances": [{"pixels": X}, ...]}     row format, named input
  {"inputs": [X, ...]}                    columnar format
  {"inputs": {"pixels": [X, ...]}}        columnar format, named input
where each X is 64 numbers or 8 rows of 8 numbers, within the manifest's value range.
"""

from __future__ import annotations

import math
import re

import numpy as np
import orjson

INPUT_NAME = "pixels"


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
        raise BadRequest("empty request body; send a JSON object such as "
                         '{"instances": [[0, 0, 5, ...64 numbers]]}')
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


class InstanceParser:
    """Validates instances against the model's input spec (shape (8, 8), value range)."""

    def __init__(self, shape: tuple[int, int], lo: float, hi: float, max_batch: int):
        self.rows, self.cols = shape
        self.size = self.rows * self.cols
        self.lo, self.hi = lo, hi
        self.max_batch = max_batch
        self.expected = (f"{self.size} numbers or {self.rows} rows of {self.cols} numbers, "
                         f"each from {lo:g} to {hi:g}")

    def _flat(self, value, where: str) -> list:
        if isinstance(value, dict):
            if set(value) != {INPUT_NAME}:
                raise BadRequest(f"{where}: an object instance must have exactly one key "
                                 f"'{INPUT_NAME}', got {sorted(value)[:5]}")
            value = value[INPUT_NAME]
            where = f"{where}.{INPUT_NAME}"
        if type(value) is not list:
            raise BadRequest(f"{where}: expected {self.expected}; got {_type_name(value)}")
        if len(value) == self.size and all(type(v) is not list for v in value):
            flat = value
        elif len(value) == self.rows and all(type(r) is list for r in value):
            for r, row in enumerate(value):
                if len(row) != self.cols:
                    raise BadRequest(f"{where}[{r}]: expected {self.cols} numbers per row, "
                                     f"got {len(row)}")
            flat = [v for row in value for v in row]
        else:
            raise BadRequest(f"{where}: expected {self.expected}; got a list of {len(value)} "
                             "items" + ("" if len(value) != self.rows else " that are not all rows"))
        for i, v in enumerate(flat):
            t = type(v)
            if t is not int and t is not float:
                raise BadRequest(f"{where}: value {i} is {_type_name(v)}; expected a number "
                                 f"from {self.lo:g} to {self.hi:g}")
            if not (self.lo <= v <= self.hi):  # also false for NaN
                shown = v if math.isfinite(v) else str(v)
                raise BadRequest(f"{where}: value {i} = {shown} is outside the input range "
                                 f"[{self.lo:g}, {self.hi:g}]")
        return flat

    def parse(self, body) -> tuple[np.ndarray, str]:
        """Return (batch of shape (n, rows, cols), "instances" or "inputs")."""
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
            if set(batch) != {INPUT_NAME}:
                raise BadRequest(f"inputs: a named input object must have exactly one key "
                                 f"'{INPUT_NAME}', got {sorted(batch)[:5]}")
            batch = batch[INPUT_NAME]
            key_path = f"inputs.{INPUT_NAME}"
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
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.rows, self.cols)
        return x, key

    def parse_csv(self, raw: bytes) -> np.ndarray:
        """SageMaker's text/csv: one instance per line, 64 comma-separated numbers.

        Numbers are ASCII decimals only (``12``, ``-0.5``, ``1e3``): Python's float() would
        also take ``٥``, ``１``, ``1_0``, ``nan`` and ``inf``. Line and cell counts are checked
        on the raw bytes before any number is parsed, so an oversized body costs a count."""
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if not lines:
            raise BadRequest("empty CSV body; send one line of 64 numbers per instance")
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
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.rows, self.cols)


# An ASCII decimal number, optionally padded with blanks: what CSV writers emit. Not
# Python's float() grammar, which also accepts other scripts' digits, underscores, nan, inf.
_ASCII_DECIMAL = re.compile(rb"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
