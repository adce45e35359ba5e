"""Decode a posted frame and cut it into its slot crops: the one decode-and-crop of the service and the bench."""

from __future__ import annotations

import cv2
import numpy as np

from shelfsense.config import CameraConfig, slot_boxes
from shelfsense.errors import BadImageError, ConfigError
from shelfsense.recognition.slots import crop
from shelfsense.types import Box

__all__ = ["decode_frame", "slot_crops"]


def decode_frame(image: bytes) -> np.ndarray:
    """The frame as a BGR array; BadImageError when it is empty or not a decodable image."""
    if not image:
        raise BadImageError("The frame is empty (0 bytes)")
    frame = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise BadImageError(f"The frame ({len(image)} bytes) is not a decodable JPEG or PNG image")
    return frame


def slot_crops(frame: np.ndarray, camera: CameraConfig) -> tuple[tuple[Box, ...], list[np.ndarray]]:
    """The camera's slot boxes for this frame's size and a contiguous copy of each slot.

    Copies, so that a crop waiting in the inference queue does not pin the whole frame in memory.
    """
    height, width = frame.shape[:2]
    try:
        boxes = slot_boxes(camera, width, height)
    except ConfigError as exc:
        raise BadImageError(f"Frame size does not fit the camera's slots: {exc}") from None
    return boxes, [np.ascontiguousarray(crop(frame, box)) for box in boxes]
