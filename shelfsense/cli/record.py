"""`shelfsense record`: capture a camera, stream or video file into a ShelfSense recording."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shelfsense.cli.errors import fail
from shelfsense.cli.signals import interrupt, on_stop_signals


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
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
    p.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from shelfsense.tools.record import record

    try:
        # Ctrl-C or SIGTERM ends a recording without --duration; what was written is kept.
        with on_stop_signals(interrupt):
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
        return fail(exc)
    if not args.quiet:
        print(
            f"recorded {result.frames} frames ({result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s) "
            f"of {result.camera} from {args.source} to {result.out}",
            file=sys.stderr,
        )
    return 0
