"""Drawing on the demo page's pad as a person would: a mouse, a finger or the keyboard.

A digit comes from scikit-learn's own 8x8 images: upsampled, its inked area (values above
half of 16) is painted with horizontal pen strokes spaced closer than the pen is wide, into
the middle three quarters of the pad, so the page sees a filled shape of the digit.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom

INK_THRESHOLD = 8.0      # of 0..16
RESOLUTION = 96          # upsampled pixels per side
STROKE_ROWS = 16         # strokes per digit height; the pen (18 of 256) overlaps its neighbours


def typical_digits(images: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """For each class, the image closest to that class's mean image: the most typical one."""
    chosen = {}
    for digit in np.unique(labels):
        members = images[labels == digit]
        distance = ((members - members.mean(axis=0)) ** 2).sum(axis=(1, 2))
        chosen[int(digit)] = members[int(np.argmin(distance))]
    return chosen


def strokes(image: np.ndarray, box: dict) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Start and end points (page coordinates) of strokes painting ``image`` inside ``box``."""
    inked = zoom(image.astype(float), RESOLUTION / image.shape[0], order=1, grid_mode=True,
                 mode="nearest") > INK_THRESHOLD
    span = 0.75 * min(box["width"], box["height"])
    left = box["x"] + (box["width"] - span) / 2
    top = box["y"] + (box["height"] - span) / 2
    scale = span / RESOLUTION
    out = []
    for row in np.linspace(0, RESOLUTION - 1, STROKE_ROWS).round().astype(int):
        y = top + (row + 0.5) * scale
        ink = np.flatnonzero(inked[row])
        if ink.size == 0:
            continue
        # runs of consecutive inked pixels: one stroke each
        for run in np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1):
            out.append(((left + (run[0] + 0.5) * scale, y), (left + (run[-1] + 0.5) * scale, y)))
    return out


def pad_box(page) -> dict:
    box = page.locator("#pad").bounding_box()
    assert box and box["width"] > 0, "the drawing pad is not on screen"
    return box


def draw_with_mouse(page, image: np.ndarray) -> None:
    for start, end in strokes(image, pad_box(page)):
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=2)
        page.mouse.up()


def draw_with_touch(page, image: np.ndarray) -> None:
    """One finger per stroke, through the DevTools protocol's touch input (Playwright's own
    touchscreen only taps); the page sees pointer events of type "touch"."""
    cdp = page.context.new_cdp_session(page)
    try:
        for (x0, y0), (x1, y1) in strokes(image, pad_box(page)):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
            for t in (0.5, 1.0):
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                    {"x": x0 + (x1 - x0) * t, "y": y0 + (y1 - y0) * t}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def press_keys(page, script: str) -> None:
    """``"ArrowUp*10 Space ArrowDown*20"``: each key, repeated ``*n`` times."""
    for token in script.split():
        key, _, times = token.partition("*")
        for _ in range(int(times or 1)):
            page.keyboard.press(key)
