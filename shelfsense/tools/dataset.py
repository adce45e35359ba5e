"""The one reader of labelled image folders: the grocery-store dataset layout, or a folder of class folders.

Grocery-store layout (github.com/marcusklasson/GroceryStoreDataset)::

    classes.csv    Class Name (str), Class ID (int), Coarse Class Name (str), Coarse Class ID (int), ...
    <split>.txt    one image a line: "relative/path.jpg, fine id, coarse id"

Any other folder: every image below it, labelled with the name of the folder holding it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLASSES_NAME",
    "IMAGE_SUFFIXES",
    "GroceryClass",
    "SplitImage",
    "labelled_images",
    "read_classes",
    "read_split",
]

CLASSES_NAME = "classes.csv"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})


@dataclass(frozen=True, slots=True)
class GroceryClass:
    fine_id: int
    name: str
    coarse_id: int
    coarse_name: str


@dataclass(frozen=True, slots=True)
class SplitImage:
    path: Path
    fine_id: int
    coarse_id: int


def read_classes(path: Path) -> dict[int, GroceryClass]:
    """The rows of a grocery-store `classes.csv`, by fine class id."""
    classes: dict[int, GroceryClass] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            fine = GroceryClass(
                fine_id=int(row["Class ID (int)"]),
                name=row["Class Name (str)"].strip(),
                coarse_id=int(row["Coarse Class ID (int)"]),
                coarse_name=row["Coarse Class Name (str)"].strip(),
            )
            classes[fine.fine_id] = fine
    return classes


def read_split(root: Path, split: str) -> list[SplitImage]:
    """The images `<root>/<split>.txt` lists, with paths made absolute against `root`."""
    images = []
    for line in (root / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rel, fine, coarse = (part.strip() for part in line.split(","))
            images.append(SplitImage(root / rel, int(fine), int(coarse)))
    return images


def labelled_images(folder: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[tuple[Path, str]]:
    """(image, label) for every image below `folder`, in path order; the label is its folder's name."""
    return [(p, p.parent.name) for p in sorted(folder.rglob("*")) if p.suffix.lower() in suffixes and p.is_file()]
