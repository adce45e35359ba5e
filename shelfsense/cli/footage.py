"""`shelfsense footage synth`: synthetic fixed-camera shelf footage with ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shelfsense.cli.errors import fail


def _pair(text: str, what: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must look like 2x4, got {text!r}") from None
    if a < 1 or b < 1:
        raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
    return a, b


def register(sub: argparse._SubParsersAction) -> None:
    footage = sub.add_parser("footage", help="synthetic shelf footage with ground truth (synth)")
    commands = footage.add_subparsers(dest="footage_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "synth",
        help="generate synthetic fixed-camera shelf footage with ground truth",
        description="Write a ShelfSense recording, camera.toml (slot boxes) and truth.jsonl into --out.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--products", type=Path, help="folder of product photos; class = parent folder name")
    src.add_argument("--tiny", action="store_true", help="draw built-in products instead of using photos")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty)")
    p.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    for flag, default, metavar, what in (
        ("--slots", (2, 4), "RxC", "shelf rows x slots per row (default 2x4)"),
        ("--size", (640, 480), "WxH", "frame size in pixels (default 640x480)"),
    ):
        p.add_argument(flag, type=lambda s, f=flag: _pair(s, f), default=default, metavar=metavar, help=what)
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of the timestamps (default 2)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--camera", default="cam-0", help="camera id (default cam-0)")
    p.add_argument(
        "--swap-rate",
        type=float,
        default=0.0,
        help="share of takes that put another product back in the same reach (default 0: none)",
    )
    p.add_argument("--force", action="store_true", help="replace footage synth wrote earlier in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from shelfsense.synth.synth import synthesize

    rows, cols = args.slots
    try:
        result = synthesize(
            None if args.tiny else args.products,
            args.out,
            frames=args.frames,
            rows=rows,
            cols=cols,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            camera=args.camera,
            swap_rate=args.swap_rate,
            overwrite=args.force,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as exc:
        return fail(exc)
    if not args.quiet:
        print(
            f"wrote {result.frames} frames of {result.camera} to {result.out} ({rows}x{cols} slots, "
            f"{len(set(result.truth[0]) - {None})} of {len(result.classes)} product classes on the shelf at first, "
            f"{result.takes} taken, {result.restocks} restocked, "
            + (f"{result.swaps} swapped, " if args.swap_rate else "")
            + f"{result.arms} arms)",
            file=sys.stderr,
        )
    return 0
