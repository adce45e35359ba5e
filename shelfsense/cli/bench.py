"""`shelfsense bench`: the offline cache benchmark over one footage."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from shelfsense.bench import benchmark
from shelfsense.bench.baselines import MOTION_THRESHOLD
from shelfsense.bench.setup import TRUTH_NAME


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="offline cache benchmark: no cache vs exact-bytes vs motion-gated vs perceptual cache",
        description=benchmark.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("footage", type=Path, help="recording folder, folder of frames or video file")
    p.add_argument("--config", type=Path, help="config file (model, cache, cameras; default: the bundled one)")
    p.add_argument("--camera", help="camera id (default: the footage's only camera)")
    p.add_argument("--truth", type=Path, help=f"ground truth JSONL (default: {TRUTH_NAME} beside the footage)")
    p.add_argument("--report", type=Path, help="write the full report as JSON here")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=benchmark.MODES,
        default=list(benchmark.MODES),
        help="modes to run (no-cache always runs: it is the baseline and the audit)",
    )
    p.add_argument("--threads", type=int, help="inference worker threads (default: model.threads)")
    p.add_argument(
        "--motion-threshold",
        type=float,
        default=MOTION_THRESHOLD,
        help=f"motion-gated mode: mean absolute grey-level difference that triggers re-inference "
        f"(default {MOTION_THRESHOLD:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars and no start-up log lines")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    package_log = logging.getLogger("shelfsense")
    level = package_log.level
    if args.quiet:
        # Each mode opens a recognizer, whose start-up lines would interleave with the table.
        package_log.setLevel(logging.WARNING)
    try:
        return _run(args)
    finally:
        package_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from shelfsense.bench.report import format_report
    from shelfsense.config import load_config

    config = load_config(args.config) if args.config else None
    report = benchmark.run_benchmark(
        args.footage,
        config=config,
        config_given=args.config is not None,
        camera=args.camera,
        truth=args.truth,
        modes=args.modes,
        threads=args.threads,
        motion_threshold=args.motion_threshold,
        progress=not args.quiet,
    )
    print(format_report(report, args.motion_threshold))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nreport written to {args.report}")
    return 0
