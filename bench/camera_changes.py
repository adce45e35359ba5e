"""What a fixed camera does to an unchanged facing between frames, for the measurement scripts (measure_memo.py,
measure_looks.py): shake, JPEG and sensor noise, none of which may count as a change of product."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

SLOT = (136, 186)  # w, h of the synthetic footage's slots
Change = Callable[[np.ndarray], np.ndarray]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def window(img: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    """The SLOT-sized facing inside a picture 4 px larger each way, moved by (dx, dy): a shake of the mount."""
    w, h = SLOT
    return img[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def camera_changes(rng: np.random.Generator) -> dict[str, Change]:
    """Named changes of a (SLOT + 4 px) picture into the facing a camera would see on another frame."""

    def noisy(img: np.ndarray, sigma: float) -> np.ndarray:
        return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)

    return {
        "1 px shift": lambda im: window(im, 1, 0),
        "2 px shift": lambda im: window(im, 2, 1),
        "JPEG q75": lambda im: jpeg(window(im), 75),
        "noise 3": lambda im: noisy(window(im), 3),
        "shift+JPEG+noise": lambda im: noisy(jpeg(window(im, 1, 1), 80), 2),
    }
