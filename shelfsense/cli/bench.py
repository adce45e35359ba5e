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
        epilog="`shelfsense bench capacity FOOTAGE ...` measures how many cameras one box serves instead "
        "(see `shelfsense bench capacity --help`).",
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


# `shelfsense bench capacity ...`: argparse cannot put a subcommand beside bench's FOOTAGE positional, so the
# word is routed here (main.route) to a command of its own.
CAPACITY_COMMAND = "bench-capacity"


def route(argv: list[str]) -> list[str]:
    """argv with `bench capacity` (after any global options) turned into the bench-capacity command."""
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            if word == "bench" and argv[i + 1 : i + 2] == ["capacity"]:
                return [*argv[:i], CAPACITY_COMMAND, *argv[i + 2 :]]
            return argv
    return argv


def register_capacity(sub: argparse._SubParsersAction) -> None:
    from shelfsense.bench import capacity

    p = sub.add_parser(
        CAPACITY_COMMAND,
        prog="shelfsense bench capacity",
        help="(shelfsense bench capacity) cameras one box serves: a real server on loopback, cameras stepped up",
        description=capacity.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("footage", type=Path, help="recording folder, folder of frames or video file")
    p.add_argument("--config", type=Path, help="config file (model, cache, admission; default: the bundled one)")
    p.add_argument("--camera", help="camera whose slots every simulated camera gets (default: the footage's)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH[:LABELS]",
        help="model to measure, repeatable (default: the config's model)",
    )
    p.add_argument("--fps", type=float, default=2.0, help="frames per second each camera posts (default 2)")
    p.add_argument("--p99-ms", type=float, default=250.0, help="client P99 a step must stay under (default 250)")
    p.add_argument(
        "--cameras",
        type=int,
        nargs="+",
        default=list(capacity.DEFAULT_STEPS),
        help=f"camera counts to step through (default {' '.join(map(str, capacity.DEFAULT_STEPS))})",
    )
    p.add_argument("--step-seconds", type=float, default=10.0, help="length of each step (default 10)")
    p.add_argument("--budget-s", type=float, default=300.0, help="time limit per model, warm-up included (300)")
    p.add_argument("--no-warm-up", action="store_true", help="start the steps on an empty cache")
    p.add_argument("--report", type=Path, help="write the steps as JSON here")
    p.set_defaults(func=_capacity)


def _capacity(args: argparse.Namespace) -> int:
    from shelfsense.bench import capacity
    from shelfsense.config import load_config

    results = capacity.run_capacity(
        args.footage,
        [capacity.ModelChoice.parse(m) for m in args.model],
        config=load_config(args.config) if args.config else None,
        config_given=args.config is not None,
        camera=args.camera,
        fps=args.fps,
        p99_ms=args.p99_ms,
        steps=tuple(args.cameras),
        step_seconds=args.step_seconds,
        budget_s=args.budget_s,
        warm_up=not args.no_warm_up,
    )
    print(capacity.format_capacity(results))
    if args.report:
        args.report.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n", encoding="utf-8")
        print(f"\nreport written to {args.report}")
    return 0
