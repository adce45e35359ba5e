"""Shelf slots: the product facings of one camera, cut out of a decoded frame."""

from __future__ import annotations

import numpy as np

from shelfsense.types import Box


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return frame[y : y + h, x : x + w]
