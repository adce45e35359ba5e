"""`shelfsense record`: capture a real camera (or a video file) into a ShelfSense recording.

Sources are whatever OpenCV's VideoCapture opens: a V4L2 device index or path (`0`, `/dev/video0`), an
RTSP/HTTP stream URL, or a video file. Frames are sampled at `--fps`, JPEG-encoded and appended with
`RecordingWriter`, so the result replays with `shelfsense replay` like any recording. The capture
helpers here are shared with the camera agent (`agent.py`).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfsense.config import check_camera_id
from shelfsense.errors import SourceError
from shelfsense.footage import RecordingWriter, video_frames

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


def encode_jpeg(image: Any, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise SourceError("OpenCV could not JPEG-encode a captured frame")
    return buf.tobytes()


@dataclass(frozen=True)
class RecordResult:
    out: Path
    camera: str
    frames: int
    bytes: int
    seconds: float  # footage time this run covered (t of its last frame, from 0 even when continuing)


def record(
    source: str | Source,
    out: str | Path,
    *,
    fps: float = 2.0,
    duration: float | None = None,
    camera: str = "cam-0",
    max_bytes: int | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> RecordResult:
    """Capture `source` into the recording folder `out` until it ends, `duration` passes or `stop()` says so."""
    src = source if isinstance(source, Source) else parse_source(source)
    check_camera_id(camera)
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    if duration is not None and duration <= 0:
        raise ValueError(f"--duration must be positive, got {duration}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be within 1..100, got {jpeg_quality}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"--max-bytes must be positive, got {max_bytes}")
    cap = open_capture(src)
    frames = size = 0
    t = 0.0
    try:
        from tqdm import tqdm

        total = round(duration * fps) if duration is not None else None
        writer = RecordingWriter(out, max_bytes=max_bytes, source=f"shelfsense record {src}")
        try:
            with tqdm(
                total=total,
                desc=f"record {camera}",
                unit="frame",
                file=sys.stderr,
                disable=not progress or not sys.stderr.isatty(),
            ) as bar:
                try:
                    for t, image in sample_frames(cap, src, fps=fps, duration=duration):
                        data = encode_jpeg(image, jpeg_quality)
                        # t restarts at 0 each run; the writer moves it past frames already recorded.
                        writer.write(camera, data, "image/jpeg", t=t)
                        frames += 1
                        size += len(data)
                        bar.update(1)
                        bar.set_postfix_str(f"{size / 1e6:.1f} MB, t={t:.1f}s", refresh=False)
                        if stop is not None and stop():
                            break
                except KeyboardInterrupt:
                    pass  # Ctrl-C is how a recording without --duration ends; what was written is kept
        finally:
            writer.close()
    finally:
        cap.release()
    return RecordResult(Path(out), camera, frames, size, round(t, 6))


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record",
        help="capture a camera, stream or video file into a ShelfSense recording",
        description="Capture frames from --source at --fps, JPEG-encode them and write a recording into --out.",
    )
    p.add_argument(
        "--source", required=True, help="V4L2 device index or path (0, /dev/video0), RTSP/HTTP URL or video file"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="recording folder (new or empty; an earlier recording is continued)"
    )
    p.add_argument("--fps", type=_positive_float, default=2.0, help="frames kept per second (default 2)")
    p.add_argument(
        "--duration", type=_positive_float, help="seconds to record (default: until the source ends or Ctrl-C)"
    )
    p.add_argument("--camera", default="cam-0", help="camera id stored with each frame (default cam-0)")
    p.add_argument("--max-bytes", type=int, help="cap the recording at about this many bytes, oldest segments deleted")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        result = record(
            args.source,
            args.out,
            fps=args.fps,
            duration=args.duration,
            camera=args.camera,
            max_bytes=args.max_bytes,
            jpeg_quality=args.jpeg_quality,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as exc:
        print(f"shelfsense record: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"recorded {result.frames} frames ({result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s) "
            f"of {result.camera} from {args.source} to {result.out}",
            file=sys.stderr,
        )
    return 0
