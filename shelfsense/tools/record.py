"""Capture a real camera (or a video file) into a ShelfSense recording (`shelfsense record`).

Sources are whatever OpenCV's VideoCapture opens (see `capture`). Frames are sampled at `fps`, JPEG-encoded
and appended with `RecordingWriter`, so the result replays with `shelfsense replay` like any recording.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shelfsense.config import check_camera_id
from shelfsense.footage import RecordingWriter
from shelfsense.footage.jpeg import encode_jpeg
from shelfsense.tools.capture import Source, open_capture, parse_source, sample_frames


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
