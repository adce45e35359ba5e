"""`shelfsense camera`: run the camera agent, posting a source's frames to a ShelfSense server."""

from __future__ import annotations

import argparse
import asyncio
import sys

from shelfsense.cli.errors import fail
from shelfsense.cli.signals import on_stop_signals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "camera",
        help="run the camera agent: grab frames and post them to a ShelfSense server",
        description=(
            "Grab frames from --source at --fps and POST them to --url as camera --camera, dropping stale frames "
            "and retrying through server restarts. Stops on Ctrl-C / SIGTERM, at the end of a file or footage "
            "without --loop, or after --max-frames. Exit status 0, 1 when frames were sent and none was "
            "delivered, 2 on bad arguments or a source that cannot be opened."
        ),
    )
    p.add_argument(
        "--source", required=True, help="V4L2 device (0, /dev/video0), RTSP/HTTP URL, video file or footage folder"
    )
    p.add_argument("--url", required=True, help="server base URL (http:// or https://), e.g. http://shelfpi.local:8080")
    p.add_argument("--camera", required=True, help="camera id as configured on the server")
    p.add_argument(
        "--fps",
        type=float,
        default=2.0,
        help="frames per second to send (default 2); a video file is paced by its own timestamps and only "
        "thinned to at most this rate, a footage folder is sent at exactly this rate",
    )
    p.add_argument("--token", default="", help="the camera's bearer token, if the server sets one")
    p.add_argument("--jpeg-quality", type=int, default=85)
    p.add_argument("--loop", action="store_true", help="replay a video file or footage folder endlessly")
    p.add_argument(
        "--max-frames",
        type=int,
        help="stop after grabbing this many frames, once each was sent (answered or given up) or dropped as stale; "
        "ends during a server outage too, with exit status 1 when none was delivered",
    )
    p.add_argument("--max-retries", type=int, default=3, help="retries per frame before it is given up")
    p.add_argument("--backoff-cap", type=float, default=10.0, help="longest wait between retries, seconds")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--summary-every", type=float, default=10.0, help="seconds between summary log lines")
    p.set_defaults(func=_camera)


def _camera(args: argparse.Namespace) -> int:
    from shelfsense.client import check_server_url
    from shelfsense.config import check_camera_id
    from shelfsense.tools.agent import AgentStats, run_agent
    from shelfsense.tools.capture import FrameSource

    if not 1 <= args.jpeg_quality <= 100:
        return fail(f"--jpeg-quality must be within 1..100, got {args.jpeg_quality}")
    if args.max_frames is not None and args.max_frames < 1:
        return fail(f"--max-frames must be at least 1, got {args.max_frames}")
    try:
        check_server_url(args.url)  # before the source: opening a stream may take seconds
        source = FrameSource(args.source, fps=args.fps, jpeg_quality=args.jpeg_quality, loop=args.loop)
        check_camera_id(args.camera)
    except (ValueError, OSError) as exc:
        return fail(exc)

    async def main() -> AgentStats:
        stop = asyncio.Event()
        with on_stop_signals(stop.set, asyncio.get_running_loop()):
            return await run_agent(
                source,
                args.url,
                args.camera,
                token=args.token,
                stop=stop,
                max_frames=args.max_frames,
                max_retries=args.max_retries,
                backoff_base_s=min(0.5, args.backoff_cap),
                backoff_cap_s=args.backoff_cap,
                timeout_s=args.timeout,
                summary_s=args.summary_every,
            )

    stats = asyncio.run(main())
    print(f"camera {args.camera}: {stats.line()}", file=sys.stderr)
    if stats.sent and not stats.ok:
        print(f"camera {args.camera}: nothing was delivered to {args.url} ({stats.sent} sent, 0 ok)", file=sys.stderr)
        return 1
    return 0
