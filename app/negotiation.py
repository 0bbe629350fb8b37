"""Which media type /invocations answers in: the client's Accept header, negotiated.

SageMaker passes InvokeEndpoint's ``Accept`` to the container. The answer is JSON (the
default: no Accept, ``*/*``, ``application/*``) or CSV (``text/csv``, ``text/*``): one line
per instance, the model's outputs comma-separated in float32's shortest form, the numbers
the JSON answer holds. Anything else is a 406 naming both.

Accept's grammar (q-values, wildcards) is parsed by Werkzeug, already loaded by Flask: no
new import, ~20 us for a header with q-values; the three common headers skip it.
"""

from __future__ import annotations

import numpy as np
import orjson
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from app.validation import BadRequest

JSON = "application/json"
CSV = "text/csv"
ANSWER_TYPES = (JSON, CSV)            # in order of preference: the first is the default


def answer_type(environ: dict) -> str:
    """The media type to answer in, or a 406 BadRequest naming the ones on offer."""
    accept = environ.get("HTTP_ACCEPT", "").strip()
    if accept in ("", "*/*", JSON):
        return JSON
    if accept == CSV:
        return CSV
    # Media-type parameters (charset, header=...) are not ours to honour or refuse: the CSV
    # is ASCII without a header row. Werkzeug would match them strictly, so drop them.
    ranges = MIMEAccept([(value.split(";", 1)[0].strip(), quality)
                         for value, quality in parse_accept_header(accept, MIMEAccept)])
    best = ranges.best_match(ANSWER_TYPES)
    if best is None:
        raise BadRequest(f"cannot answer in {accept[:100]!r} (Accept): /invocations answers in "
                         f"{' or '.join(ANSWER_TYPES)}; send one of those, */*, or no Accept", 406)
    return best


def csv_body(outputs: np.ndarray) -> bytes:
    """One CSV line per instance: its outputs, comma-separated (as the JSON answer writes them)."""
    rows = outputs.reshape(len(outputs), -1)
    return b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] + b"\n"
                    for row in rows)
