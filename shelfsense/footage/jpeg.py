"""The one JPEG encoder: video footage, capture, the camera agent, synth and the bench scripts encode through it."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["encode_jpeg"]


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """A BGR (or grey) image as JPEG bytes at `quality` (1..100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a {'x'.join(map(str, image.shape))} image")
    return buf.tobytes()
