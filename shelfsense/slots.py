"""Shelf slots: the product facings of one camera, as pixel boxes of its frames."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import Box, CameraConfig
from .errors import ConfigError


@lru_cache(maxsize=256)
def slot_boxes(camera: CameraConfig, width: int, height: int) -> tuple[Box, ...]:
    """The camera's slot boxes for a `width` x `height` frame.

    Explicit `slots` are used as given, a `grid` divides its region of interest (default: the whole frame) into
    rows x cols equal cells, and a camera with neither is one slot covering the frame. A box reaching outside the
    frame is a ConfigError naming the camera and the slot.
    """
    if camera.slots:
        boxes = camera.slots
    elif camera.grid is not None:
        rx, ry, rw, rh = camera.grid.roi or (0, 0, width, height)
        rows, cols = camera.grid.rows, camera.grid.cols
        xs = np.linspace(rx, rx + rw, cols + 1).round().astype(int)
        ys = np.linspace(ry, ry + rh, rows + 1).round().astype(int)
        boxes = tuple(
            (int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
            for r in range(rows)
            for c in range(cols)
        )
        if any(w < 1 or h < 1 for _, _, w, h in boxes):
            raise ConfigError(f"Camera '{camera.id}': grid {rows}x{cols} is finer than its {rw}x{rh} region")
    else:
        boxes = ((0, 0, width, height),)
    for i, (x, y, w, h) in enumerate(boxes):
        if x + w > width or y + h > height:
            expected = (
                f" (its slots are configured for {camera.width}x{camera.height} frames)"
                if camera.width and camera.height and (camera.width, camera.height) != (width, height)
                else ""
            )
            raise ConfigError(
                f"Camera '{camera.id}' slot {i} [{x}, {y}, {w}, {h}] lies outside its {width}x{height} frame"
                + expected
            )
    return boxes


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return frame[y : y + h, x : x + w]
