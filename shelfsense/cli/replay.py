"""`shelfsense replay`: post footage to a running server as one or many cameras and report what came back."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path

from shelfsense.cli.errors import fail
from shelfsense.cli.signals import on_stop_signals


def _speed(text: str) -> float | None:
    if text.lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--speed must be a positive number or 'max', got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="post recorded footage to a server as one or many cameras and report hit rate, latency, accuracy",
        description=(
            "Replay footage (recordings, folders of frames, video files) against a running server. "
            "Exit status 1 when any frame failed, 2 on bad arguments (such as a --url that is not http(s)://) "
            "or unreadable footage."
        ),
    )
    p.add_argument("footage", nargs="+", type=Path, help="recording folder, folder of frames or video file")
    p.add_argument("--url", required=True, help="server base URL (http:// or https://), e.g. http://127.0.0.1:8080")
    p.add_argument("--camera", help="camera id to post as (and to pick from a multi-camera recording)")
    p.add_argument("--cameras", type=int, default=1, help="fan each footage out as K cameras <camera>-0..K-1")
    p.add_argument("--speed", type=_speed, default=1.0, help="1.0 = recorded pace, 2.0 = twice as fast, max")
    p.add_argument("--concurrency", type=int, help="requests in flight across cameras (default: one per camera)")
    p.add_argument("--truth", type=Path, help="truth.jsonl: adds slot-label accuracy (null entries skipped)")
    p.add_argument("--warmup", type=int, default=1, help="frames per camera left out of the warm hit rate")
    p.add_argument("--token", default="", help="bearer token for the cameras")
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of footage without timestamps")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--report", type=Path, help="write the summary as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from shelfsense.tools.replay import ReplayReport, replay

    async def main() -> ReplayReport:
        stop = asyncio.Event()
        # Ctrl-C (or SIGTERM) ends the replay early but still prints the figures of what was sent.
        with on_stop_signals(stop.set, asyncio.get_running_loop()):
            return await replay(
                args.footage,
                args.url,
                camera=args.camera,
                cameras=args.cameras,
                speed=args.speed,
                concurrency=args.concurrency,
                truth=args.truth,
                warmup=args.warmup,
                token=args.token,
                fps=args.fps,
                timeout_s=args.timeout,
                progress=not args.quiet,
                stop=stop,
            )

    try:
        report = asyncio.run(main())
    except (ValueError, OSError) as exc:
        return fail(exc)
    print(report.table())
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.sent and report.ok == report.sent else 1
