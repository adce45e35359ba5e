"""Capture sources: V4L2 devices, RTSP/HTTP streams and video files through OpenCV, and footage folders.

`record` writes what a source gives into a recording; the camera agent posts it (`FrameSource`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfsense.errors import SourceError
from shelfsense.footage import Footage, open_footage, video_frames
from shelfsense.footage.jpeg import encode_jpeg

__all__ = ["FrameSource", "Source", "open_capture", "parse_source", "sample_frames"]

# Streams name their protocol; anything else is a device or a file.
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
OPEN_TIMEOUT_MS = 10_000  # an unreachable RTSP camera otherwise blocks for FFmpeg's default ~30 s


@dataclass(frozen=True)
class Source:
    """A parsed `--source`: what to hand to cv2.VideoCapture and whether it is a live camera."""

    text: str
    target: int | str
    live: bool

    def __str__(self) -> str:
        return self.text


def parse_source(text: str) -> Source:
    """`0` / `/dev/video0` (V4L2), `rtsp://...` / `http://...` (streams, live) or a video file path."""
    text = str(text).strip()
    if not text:
        raise SourceError("the capture source is empty: give a device index, a device path, a URL or a file")
    if text.isdigit():
        return Source(text, int(text), True)
    if _URL.match(text):
        return Source(text, text, True)
    if text.startswith("/dev/"):
        if not Path(text).exists():
            raise SourceError(f"camera device {text} does not exist (is the camera connected?)")
        return Source(text, text, True)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"capture source {text} does not exist (expected a device, a stream URL or a video file)")
    if path.is_dir():
        raise SourceError(f"capture source {text} is a folder: record and camera read a device, a URL or a video file")
    return Source(text, str(path), False)


def open_capture(source: Source) -> Any:
    """An opened cv2.VideoCapture, or SourceError saying which source failed and why it may have."""
    import cv2

    if source.live and isinstance(source.target, str) and _URL.match(source.target):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
        cap = cv2.VideoCapture(source.target, cv2.CAP_ANY, params)
    else:
        cap = cv2.VideoCapture(source.target)
    if not cap.isOpened():
        cap.release()
        hint = (
            "check the URL, the network and the camera's credentials"
            if isinstance(source.target, str) and _URL.match(source.target)
            else "is it in use by another program, and may this user open it?"
            if source.live
            else "unknown or unsupported video format"
        )
        raise SourceError(f"cannot open capture source {source}: {hint}")
    if source.live:
        # A camera's driver queue holds old frames; with one buffer the next read is (nearly) current.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def sample_frames(
    cap: Any,
    source: Source,
    *,
    fps: float,
    duration: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[float, Any]]:
    """(t seconds since the first frame, BGR image) at about `fps`, from an opened capture.

    Live sources are grabbed continuously (cheap, keeps the driver queue drained) and decoded only when a
    frame is due, with t on the wall clock. Files are decoded in order with t from the container's
    timestamps, as fast as possible. A live source that stops delivering raises SourceError; a file ends.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    period = 1.0 / fps
    due = 0.0
    start: float | None = None
    frames = None if source.live else video_frames(cap, fps)
    while True:
        if frames is None:
            if not cap.grab():
                raise SourceError(f"capture source {source} stopped delivering frames")
            now = clock()
            if start is None:
                start = now
            t = now - start
            if duration is not None and t >= duration:
                return
            if t + 1e-6 < due:
                continue
            ok, image = cap.retrieve()
            if not ok:
                raise SourceError(f"capture source {source} delivered a frame that could not be decoded")
        else:
            t, image = next(frames, (None, None))
            if t is None or (duration is not None and t >= duration - 1e-6):
                return
            if t + 1e-6 < due:
                continue
        # Behind schedule (a slow read) the next frame is due one period from now, not in a catch-up burst.
        due = max(due + period, t + period / 2)
        yield t, image


class FrameSource:
    """Frames as (t seconds since start, encoded bytes, content type) from a blocking iterator.

    Capture sources (devices, streams, video files) go through OpenCV and are JPEG-encoded; footage
    folders (recordings, folders of frames) are sent as stored, one every 1/fps seconds, which makes them
    a camera stand-in for tests. Files and footage can loop; live sources run until they fail.
    """

    def __init__(self, source: str | Path, *, fps: float, jpeg_quality: int = 85, loop: bool = False) -> None:
        source = str(source)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.jpeg_quality = jpeg_quality
        self.loop = loop
        self.footage: Footage | None = None
        self.capture: Source | None = None
        path = Path(source)
        if not source.isdigit() and path.is_dir():
            self.footage = open_footage(path, fps=fps, jpeg_quality=jpeg_quality)
        else:
            self.capture = parse_source(source)
            open_capture(self.capture).release()  # fail now, with the reason, rather than inside the run
        self.name = str(source)

    @property
    def live(self) -> bool:
        return self.capture is not None and self.capture.live

    def frames(self) -> Iterator[tuple[float, bytes, str]]:
        offset = 0.0
        while True:
            t = 0.0
            for t, data, ctype in self._pass():
                yield offset + t, data, ctype
            if not self.loop or self.live:
                return
            offset += t + 1.0 / self.fps

    def _pass(self) -> Iterator[tuple[float, bytes, str]]:
        if self.footage is not None:
            for i, frame in enumerate(self.footage):
                yield i / self.fps, frame.data, frame.content_type
            return
        assert self.capture is not None
        cap = open_capture(self.capture)
        try:
            for t, image in sample_frames(cap, self.capture, fps=self.fps):
                yield t, self._encode(image), "image/jpeg"
        finally:
            cap.release()

    def _encode(self, image: Any) -> bytes:
        try:
            return encode_jpeg(image, self.jpeg_quality)
        except ValueError as exc:  # a source fault like any other: the agent reopens it
            raise SourceError(f"capture source {self.capture}: {exc}") from None

    def close(self) -> None:
        if self.footage is not None:
            self.footage.close()
