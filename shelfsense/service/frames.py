"""The frame handler's one hook into shelf state: `observe_frame()` after each answered frame.

Kept apart from service/shelves.py (the shelf routes), which imports the handlers' token check: the handlers
import this module, so the two never import each other.
"""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np

from shelfsense.recognition.result import FrameResult
from shelfsense.service.state import Service

__all__ = ["observe_frame"]

SNAPSHOT_EVERY_S = 1.0  # the dashboard's latest frame per camera is refreshed at most this often


def observe_frame(service: Service, result: FrameResult, frame: int, image: bytes) -> None:
    """After a frame's result: shelf state and events, and now and then the dashboard's snapshot."""
    hub = service.shelves
    # Shelf state is kept for configured cameras: ids let in by server.allow_unknown_cameras come and go, and each
    # would add a camera to the state file, the retained MQTT topics and the dashboard for good.
    if hub is None or result.camera not in service.config.cameras:
        return
    hub.observe(result, frame)
    now = time.monotonic()
    if now - service.snapshot_at.get(result.camera, -SNAPSHOT_EVERY_S) >= SNAPSHOT_EVERY_S:
        service.snapshot_at[result.camera] = now
        task = asyncio.get_running_loop().run_in_executor(None, _snapshot, image, service.config.shelf.snapshot_width)
        task.add_done_callback(lambda f: _keep_snapshot(service, result, frame, f))


def _snapshot(image: bytes, width: int) -> bytes | None:
    """A small JPEG of the frame (decoded at reduced size: a quarter of the work of a full decode)."""
    frame = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
    if frame is None:
        return None
    h, w = frame.shape[:2]
    if w > width:
        frame = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return buf.tobytes() if ok else None


def _keep_snapshot(service: Service, result: FrameResult, frame: int, future: asyncio.Future) -> None:
    if future.cancelled() or future.exception() is not None or future.result() is None:
        return
    service.snapshots[result.camera] = (future.result(), frame, (result.width, result.height))
