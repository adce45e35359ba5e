"""GroceryStoreDataset listings, image reading, and the held-out part of train used for every choice."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shelfsense.errors import ShelfSenseError


@dataclass(frozen=True)
class GroceryData:
    root: Path
    fine_names: list[str]
    coarse_of_fine: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]


def load_grocery(root: Path) -> GroceryData:
    """Read classes.csv and the train/val listings of a GroceryStoreDataset checkout."""
    classes = root / "classes.csv"
    if not classes.is_file():
        raise ShelfSenseError(f"{classes} not found: --data must point at the grocery-store dataset folder")
    rows: dict[int, tuple[str, str]] = {}
    with classes.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            rows[int(row[1])] = (row[0].strip(), row[2].strip())
    ids = sorted(rows)
    if ids != list(range(len(ids))):
        raise ShelfSenseError(f"{classes}: fine class ids are not 0..N-1")

    def split(name: str) -> list[tuple[Path, int]]:
        out = []
        for line in (root / f"{name}.txt").read_text().splitlines():
            if line.strip():
                rel, fine, _coarse = (p.strip() for p in line.split(","))
                out.append((root / rel, int(fine)))
        return out

    return GroceryData(
        root=root,
        fine_names=[rows[i][0] for i in ids],
        coarse_of_fine=[rows[i][1] for i in ids],
        train=split("train"),
        val=split("val"),
    )


def holdout_mask(labels: np.ndarray, every: int) -> np.ndarray:
    """True for every `every`-th image of each class (in listing order): the held-out part of train.

    Train images of one class come in shooting order, so neighbours look alike; taking every k-th spreads the
    held-out images over each class's sessions. 0 holds nothing out.
    """
    mask = np.zeros(len(labels), bool)
    if every <= 0:
        return mask
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[idx[every // 2 :: every]] = True
    return mask


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ShelfSenseError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_input(img: np.ndarray, size: int) -> np.ndarray:
    """What shelfsense.runtime does to a crop: INTER_AREA when shrinking either side, else INTER_LINEAR."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if w > size or h > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)
