"""The one exception a release raises, and the wording helpers its messages share."""

from __future__ import annotations


class ReleaseError(Exception):
    """A release that must not produce a version folder; the message says why and what to do."""


def first_line(exc: BaseException) -> str:
    """An exception's first line, bounded: TensorFlow's messages can run to pages."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]


def dims(shape) -> str:
    """A shape as people write it: (None, 8, 8)."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
