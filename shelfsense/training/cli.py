"""`shelfsense model train` / `python -m shelfsense.training`: arguments, run, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from shelfsense.errors import ShelfSenseError

from .config import TrainConfig, smoke

DEFAULT_BACKBONE = Path("../shared/models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
DEFAULT_BACKBONE_V2 = Path("../shared/models/mobilenet_v2_1.0_224_quant.tflite")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", type=Path, required=True, help="grocery-store dataset folder")
    p.add_argument(
        "--backbone",
        type=Path,
        default=DEFAULT_BACKBONE,
        help=f"MobileNetV1 1.0 quantised embedding extractor .tflite (default {DEFAULT_BACKBONE})",
    )
    p.add_argument(
        "--backbone-v2",
        type=Path,
        default=DEFAULT_BACKBONE_V2,
        help=f"MobileNetV2 1.0 quantised ImageNet classifier .tflite (default {DEFAULT_BACKBONE_V2})",
    )
    p.add_argument(
        "--branches",
        default=",".join(d.branches),
        help=f"comma-separated branches to train and fuse (default {','.join(d.branches)}; one alone exports it alone)",
    )
    p.add_argument("--retrain", action="store_true", help="train every top even when the cache holds one")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models)")
    p.add_argument(
        "--cache", type=Path, default=Path("../traincache"), help="trunk activation cache folder, outside the repo"
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--views", type=int, default=d.views, help="cached views per training image")
    p.add_argument("--size", type=int, default=d.size, help="model input side in pixels")
    p.add_argument("--split", type=int, default=d.split, help="blocks 1..SPLIT frozen, the rest fine-tuned")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the fine-tuned blocks")
    p.add_argument("--coarse-weight", type=float, default=d.coarse_weight, help="weight of the coarse-class loss")
    p.add_argument(
        "--holdout-every", type=int, default=d.holdout_every, help="hold out every k-th train image per class (0: none)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--smoke", action="store_true", help="tiny input, few images, 1 epoch: checks the export path")
    p.add_argument("--no-eval", action="store_true", help="skip the LiteRT evaluation on val after export")
    p.add_argument("--report", type=Path, help="write the training report (JSON) here")
    p.add_argument("--quiet", action="store_true")


def config_from(args: argparse.Namespace) -> TrainConfig:
    cfg = replace(
        TrainConfig(),
        size=args.size,
        split=args.split,
        views=args.views,
        epochs=args.epochs,
        lr=args.lr,
        coarse_weight=args.coarse_weight,
        holdout_every=args.holdout_every,
        seed=args.seed,
        threads=args.threads,
        branches=tuple(b.strip() for b in args.branches.split(",") if b.strip()),
        retrain=args.retrain,
    )
    return smoke(cfg) if args.smoke else cfg


def run(args: argparse.Namespace) -> int:
    from .pipeline import MODEL_NAME, train_and_export

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cfg = config_from(args)
    backbones = {"v1": args.backbone, "v2": args.backbone_v2}
    report = train_and_export(args.data, backbones, args.out, args.cache, cfg, quiet=args.quiet)
    model = args.out / MODEL_NAME
    line = f"{model}: {report['model_bytes'] / 1e6:.2f} MB, {report['seconds']['total']:.0f} s"
    if not args.no_eval:
        # The service's own runtime and preprocessing: what is reported is what `shelfsense model eval` says.
        from shelfsense.tools.modeltools import evaluate

        result = evaluate(model, args.data, threads=cfg.threads, progress=not args.quiet, worst=10)
        report["val_int8"] = {k: result[k] for k in ("images", "top1", "top5", "coarse_top1", "worst_classes")}
        line += f", val fine top-1 {result['top1']:.3f} top-5 {result['top5']:.3f}, coarse top-1 "
        line += f"{result['coarse_top1']:.3f}" if result["coarse_top1"] is not None else "n/a"
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m shelfsense.training", description="Train and export the default grocery INT8 model."
    )
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except ShelfSenseError as exc:  # `shelfsense model train` reports it through the CLI's one error format
        print(f"shelfsense: error: {exc}", file=sys.stderr)
        return 2
