"""`shelfsense model inspect|eval|train` and `shelfsense classify`: the model tooling from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .tflite image classifier")
    p.add_argument("--labels", help="labels file (default: found beside the model)")
    p.add_argument("--runtime", default="auto", choices=["auto", "litert", "tflite-runtime"])


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="inspect, evaluate or train models")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = msub.add_parser("inspect", help="input/output spec, quantization, labels, SHA-256, op count")
    _model_arguments(p)
    p.add_argument("--json", action="store_true", help="print the spec as JSON")
    p.set_defaults(func=_inspect)
    p = msub.add_parser("eval", help="top-1/top-5 on a labelled image folder")
    _model_arguments(p)
    p.add_argument("--data", required=True, help="dataset folder (grocery-store layout or class folders)")
    p.add_argument(
        "--split", help="split to score: <split>.txt or <split>/ under --data (default: val if present, else all)"
    )
    p.add_argument("--threads", type=_positive, default=1, help="interpreter threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval)
    from shelfsense import training  # its arguments only: TensorFlow is imported when training runs

    p = msub.add_parser("train", help="train and export the bundled grocery INT8 model (needs the train extra)")
    training.add_arguments(p)
    p.set_defaults(func=_train)
    p = sub.add_parser("classify", help="classify image files with a model")
    _model_arguments(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=_positive, default=3, help="labels to print per image (default 3)")
    p.set_defaults(func=_classify)


def _inspect(args: argparse.Namespace) -> int:
    from shelfsense.tools.modeltools import inspect_model

    info = inspect_model(Path(args.model), Path(args.labels) if args.labels else None, args.runtime)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    i, o = info["input"], info["output"]
    print(f"model    {info['path']}")
    print(f"size     {info['size_bytes'] / 1e6:.2f} MB   sha256 {info['sha256']}")
    print(f"runtime  {info['runtime']}   ops {info['ops']}")
    print(f"input    {i['shape']} {i['dtype']}  quantization scale={i['scale']:.6g} zero_point={i['zero_point']}")
    print(f"output   {o['shape']} {o['dtype']}  quantization scale={o['scale']:.6g} zero_point={o['zero_point']}")
    print(f"labels   {info['labels']} (first: {'; '.join(info['first_labels'])})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from shelfsense.tools.modeltools import evaluate

    report = evaluate(
        Path(args.model),
        Path(args.data),
        labels=Path(args.labels) if args.labels else None,
        split=args.split,
        runtime=args.runtime,
        threads=args.threads,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['model']} on {report['data']} ({report['split']}, {report['images']} images)")
    print(f"top-1        {report['top1'] * 100:.1f}%")
    print(f"top-5        {report['top5'] * 100:.1f}%")
    if report["coarse_top1"] is not None:
        print(f"coarse top-1 {report['coarse_top1'] * 100:.1f}%")
    if report["classes_in_model_labels"] < report["classes"]:
        print(
            f"note         only {report['classes_in_model_labels']} of the {report['classes']} dataset classes are "
            "among the model's labels; images of the others cannot score"
        )
    print(f"invoke p50   {report['ms_per_image_p50']:.2f} ms/image ({args.threads} thread(s), incl. preprocessing)")
    print("worst classes: " + ", ".join(f"{w['label']} {w['correct']}/{w['total']}" for w in report["worst_classes"]))
    return 0


def _train(args: argparse.Namespace) -> int:
    from shelfsense import training  # TensorFlow itself is imported only inside the training run

    return training.run(args)


def _classify(args: argparse.Namespace) -> int:
    import cv2

    from shelfsense.recognition.runtime import Classifier

    c = Classifier(Path(args.model), Path(args.labels) if args.labels else None, backend=args.runtime, top_k=args.top_k)
    status = 0
    for name in args.images:
        if not Path(name).is_file():
            print(f"{name}: no such file", file=sys.stderr)
            status = 1
            continue
        image = cv2.imread(name, cv2.IMREAD_COLOR)
        if image is None:
            print(f"{name}: not a readable image (JPEG, PNG or BMP)", file=sys.stderr)
            status = 1
            continue
        prediction = c.classify(image)
        print(f"{name}: " + ", ".join(f"{label} ({score:.3f})" for label, score in prediction))
    return status
