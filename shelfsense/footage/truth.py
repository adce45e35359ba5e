"""Ground truth of footage: the product in each slot of each frame, as JSON Lines (docs/footage.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TruthRow:
    camera: str
    frame: int  # Frame.index of the frame this row describes
    slots: tuple[str | None, ...]  # class per slot in camera-config order; None = empty or occluded


def write_truth(path: str | Path, rows: Iterable[TruthRow | Mapping[str, Any]]) -> int:
    """Write ground truth as JSON Lines; returns the number of rows written."""
    path = Path(path)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            if isinstance(row, TruthRow):
                camera, frame, slots = row.camera, row.frame, list(row.slots)
            else:
                camera, frame, slots = str(row["camera"]), int(row["frame"]), list(row["slots"])
            f.write(json.dumps({"camera": camera, "frame": frame, "slots": slots}) + "\n")
            n += 1
    return n


def read_truth(path: str | Path) -> list[TruthRow]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"truth file {path} does not exist")
    rows = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                slots = raw["slots"]
                if not isinstance(slots, list) or not all(s is None or isinstance(s, str) for s in slots):
                    raise TypeError("slots must be a list of class names or null")
                rows.append(TruthRow(str(raw["camera"]), int(raw["frame"]), tuple(slots)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a truth row ({e})") from None
    return rows
