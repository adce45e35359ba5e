"""Ground truth of footage: the product in each slot of each frame, as JSON Lines (docs/footage.md).

Optional per row: `states` (what each slot shows: product, empty, occluded) and `events` (take, restock, swap
happening in that frame), which synthetic footage writes and the shelf-state scoring reads."""

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
    states: tuple[str, ...] | None = None  # "product" | "empty" | "occluded" per slot, when known
    events: tuple[dict[str, Any], ...] = ()  # {"type": "take"|"restock"|"swap", "slot", "before", "after"}


def write_truth(path: str | Path, rows: Iterable[TruthRow | Mapping[str, Any]]) -> int:
    """Write ground truth as JSON Lines; returns the number of rows written."""
    path = Path(path)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            if isinstance(row, TruthRow):
                out: dict[str, Any] = {"camera": row.camera, "frame": row.frame, "slots": list(row.slots)}
                if row.states is not None:
                    out["states"] = list(row.states)
                if row.events:
                    out["events"] = list(row.events)
            else:
                out = {"camera": str(row["camera"]), "frame": int(row["frame"]), "slots": list(row["slots"])}
            f.write(json.dumps(out) + "\n")
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
                states = raw.get("states")
                if states is not None and (not isinstance(states, list) or len(states) != len(slots)):
                    raise TypeError("states must be a list with one entry per slot")
                events = raw.get("events", [])
                if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                    raise TypeError("events must be a list of objects")
                rows.append(
                    TruthRow(
                        str(raw["camera"]),
                        int(raw["frame"]),
                        tuple(slots),
                        None if states is None else tuple(states),
                        tuple(events),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a truth row ({e})") from None
    return rows
