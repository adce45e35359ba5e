"""Model tooling from the shell: `shelfsense model inspect|eval` and `shelfsense classify`.

They work on any TFLite image classifier with a labels file, through the same runtime the service uses.
`eval` reads a folder laid out as the grocery-store dataset (`<split>.txt` lines "path, fine id, coarse id" and
`classes.csv`), or else a folder of class sub-folders, and reports top-1/top-5 (and coarse top-1 when the model
has a coarse labels file beside it: one coarse name per fine label).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .errors import ModelError
from .runtime import Classifier, read_labels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    label: str
    coarse: str | None


def inspect_model(path: Path, labels: Path | None = None, runtime: str = "auto") -> dict:
    c = Classifier(path, labels, backend=runtime)
    s = c.spec

    def tensor(t) -> dict:
        return {"shape": list(t.shape), "dtype": t.dtype, "scale": t.scale, "zero_point": t.zero_point}

    return {
        "path": str(s.path),
        "size_bytes": s.size_bytes,
        "sha256": s.sha256,
        "runtime": str(c.backend),
        "input": tensor(s.input),
        "output": tensor(s.output),
        "labels": len(s.labels),
        "first_labels": list(s.labels[:5]),
        "ops": s.op_count,
    }


def coarse_labels_for(model: Path) -> tuple[str, ...] | None:
    candidate = model.parent / f"{model.stem.split('_')[0]}_coarse_labels.txt"
    return read_labels(candidate) if candidate.is_file() else None


def _splits(data: Path) -> list[str]:
    """Split names a dataset folder offers: `<split>.txt` index files and the folders they point into."""
    found = {p.stem for p in data.glob("*.txt") if p.stem in ("train", "val", "test") or (data / p.stem).is_dir()}
    return sorted(found)


def resolve_split(data: Path, split: str | None = None) -> str:
    """The split to read: as named, else `val` when the folder has one; "" means every class folder under data.

    A split that is named but absent is an error, not a silent fallback to every image (train images included).
    """
    if not data.is_dir():
        raise ModelError(f"Dataset folder {data} does not exist")
    if split is None:
        return "val" if (data / "val.txt").is_file() or (data / "val").is_dir() else ""
    if split and not ((data / f"{split}.txt").is_file() or (data / split).is_dir()):
        offered = _splits(data)
        raise ModelError(
            f"No split '{split}' in {data} (no {split}.txt and no {split}/ folder)"
            + (f"; it has: {', '.join(offered)}" if offered else "; without --split every class folder is used")
        )
    return split


def load_samples(data: Path, split: str | None = None) -> list[Sample]:
    """Samples of a grocery-store style dataset split, or of a folder of class folders (see resolve_split)."""
    split = resolve_split(data, split)
    index = data / f"{split}.txt"
    if index.is_file():
        fine, coarse = {}, {}
        classes = data / "classes.csv"
        if classes.is_file():
            with classes.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    fine[row["Class ID (int)"].strip()] = row["Class Name (str)"].strip()
                    coarse[row["Coarse Class ID (int)"].strip()] = row["Coarse Class Name (str)"].strip()
        samples = []
        for line in index.read_text().splitlines():
            if not line.strip():
                continue
            rel, fine_id, coarse_id = (part.strip() for part in line.split(","))
            path = data / rel
            samples.append(Sample(path, fine.get(fine_id, path.parent.name), coarse.get(coarse_id)))
        return samples
    folder = data / split if split else data
    samples = [
        Sample(p, p.parent.name, None)
        for p in sorted(folder.rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != folder
    ]
    if not samples:
        raise ModelError(f"No {split + '.txt and no ' if split else ''}class folders of images under {folder}")
    return samples


def evaluate(
    model: Path,
    data: Path,
    *,
    labels: Path | None = None,
    split: str | None = None,
    runtime: str = "auto",
    threads: int = 1,
    progress: bool = True,
    worst: int = 5,
) -> dict:
    c = Classifier(model, labels, backend=runtime, num_threads=threads)
    names = c.spec.labels
    coarse_of = coarse_labels_for(model)
    split = resolve_split(data, split)
    samples = load_samples(data, split)
    known = set(names)
    classes = {s.label for s in samples}
    top1 = top5 = coarse_hits = coarse_total = 0
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    invoke_ms = []
    bar = tqdm(
        samples, desc=f"eval {model.name}", unit="img", disable=not progress or not sys.stderr.isatty(), file=sys.stderr
    )
    for sample in bar:
        image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"Cannot read image {sample.path}")
        t0 = time.perf_counter()
        scores = c.scores(image)
        invoke_ms.append((time.perf_counter() - t0) * 1000.0)
        order = np.argsort(-scores)[:5]
        hit = names[order[0]] == sample.label
        top1 += hit
        top5 += sample.label in {names[i] for i in order}
        per_class[sample.label][0] += hit
        per_class[sample.label][1] += 1
        if coarse_of is not None and sample.coarse is not None:
            sums: dict[str, float] = defaultdict(float)
            for i, s in enumerate(scores):
                sums[coarse_of[i]] += float(s)
            coarse_hits += max(sums, key=sums.__getitem__) == sample.coarse
            coarse_total += 1
    n = len(samples)
    worst = sorted(per_class.items(), key=lambda kv: (kv[1][0] / kv[1][1], kv[0]))[:worst]
    return {
        "model": str(model),
        "data": str(data),
        "split": split or "all class folders",
        "images": n,
        # A model whose labels share no name with the dataset's classes scores 0 by construction, not by mistake.
        "classes_in_model_labels": len(classes & known),
        "classes": len(classes),
        "top1": round(top1 / n, 4),
        "top5": round(top5 / n, 4),
        "coarse_top1": round(coarse_hits / coarse_total, 4) if coarse_total else None,
        "worst_classes": [{"label": k, "correct": v[0], "total": v[1]} for k, v in worst],
        "ms_per_image_p50": round(float(np.median(invoke_ms)), 3),
    }


def _inspect(args: argparse.Namespace) -> int:
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


def _classify(args: argparse.Namespace) -> int:
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="a .tflite image classifier")
        p.add_argument("--labels", help="labels file (default: found beside the model)")
        p.add_argument("--runtime", default="auto", choices=["auto", "litert", "tflite-runtime"])

    model = sub.add_parser("model", help="inspect, evaluate or train models")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = msub.add_parser("inspect", help="input/output spec, quantization, labels, SHA-256, op count")
    common(p)
    p.add_argument("--json", action="store_true", help="print the spec as JSON")
    p.set_defaults(func=_inspect)
    p = msub.add_parser("eval", help="top-1/top-5 on a labelled image folder")
    common(p)
    p.add_argument("--data", required=True, help="dataset folder (grocery-store layout or class folders)")
    p.add_argument(
        "--split", help="split to score: <split>.txt or <split>/ under --data (default: val if present, else all)"
    )
    p.add_argument("--threads", type=_positive, default=1, help="interpreter threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval)
    from . import training  # TensorFlow itself is imported only when training runs

    p = msub.add_parser("train", help="train and export the bundled grocery INT8 model (needs the train extra)")
    training.add_arguments(p)
    p.set_defaults(func=training.run)
    p = sub.add_parser("classify", help="classify image files with a model")
    common(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=_positive, default=3, help="labels to print per image (default 3)")
    p.set_defaults(func=_classify)
