"""Model tooling from the shell: `shelfsense model inspect|eval` and `shelfsense classify`.

They work on any TFLite image classifier with a labels file, through the same runtime the service uses.
`eval` reads a folder laid out as the grocery-store dataset (`<split>.txt` lines "path, fine id, coarse id" and
`classes.csv`), or else a folder of class sub-folders, and reports top-1/top-5 (and coarse top-1 when the model
has a coarse labels file beside it: one coarse name per fine label).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from shelfsense.errors import ModelError
from shelfsense.recognition.runtime import Classifier, read_labels
from shelfsense.tools.dataset import CLASSES_NAME, labelled_images, read_classes, read_split


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
    if (data / f"{split}.txt").is_file():
        classes = read_classes(data / CLASSES_NAME) if (data / CLASSES_NAME).is_file() else {}
        coarse = {c.coarse_id: c.coarse_name for c in classes.values()}
        return [
            Sample(
                image.path,
                classes[image.fine_id].name if image.fine_id in classes else image.path.parent.name,
                coarse.get(image.coarse_id),
            )
            for image in read_split(data, split)
        ]
    folder = data / split if split else data
    samples = [Sample(path, label, None) for path, label in labelled_images(folder) if path.parent != folder]
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
