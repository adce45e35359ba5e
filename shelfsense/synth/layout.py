"""The shelf a synthetic camera looks at: slot boxes, the empty shelf's picture, and the files beside the footage."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from shelfsense.footage.format import INDEX_NAME, META_NAME, SEGMENT_PREFIX
from shelfsense.types import Box

__all__ = ["CAMERA_TOML", "TRUTH_NAME", "background", "camera_toml", "prepare_out", "price_labels", "shelf_slots"]

CAMERA_TOML = "camera.toml"
TRUTH_NAME = "truth.jsonl"


def shelf_slots(size: tuple[int, int], rows: int, cols: int) -> list[Box]:
    """Slot boxes (x, y, w, h) of a rows x cols shelf filling a frame of `size` (w, h)."""
    w, h = size
    margin_x, top, bottom = round(0.05 * w), round(0.05 * h), round(0.03 * h)
    row_h = (h - top - bottom) / rows
    col_w = (w - 2 * margin_x) / cols
    board = round(0.11 * row_h)
    head = round(0.05 * row_h)
    gap = max(1, round(0.03 * col_w))
    boxes = []
    for r in range(rows):
        y0 = round(top + r * row_h) + head
        y1 = round(top + (r + 1) * row_h) - board
        for c in range(cols):
            x0 = round(margin_x + c * col_w) + gap
            x1 = round(margin_x + (c + 1) * col_w) - gap
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def background(size: tuple[int, int], rows: int, rng: np.random.Generator) -> np.ndarray:
    """Brushed-metal back panel, wooden shelf boards with price rails, metal uprights, vignetting."""
    w, h = size
    margin_x, top, bottom = round(0.05 * w), round(0.05 * h), round(0.03 * h)
    row_h = (h - top - bottom) / rows
    board = round(0.11 * row_h)

    # Brushed metal: noise smeared along x, so streaks run horizontally.
    streaks = cv2.blur(rng.normal(0, 9, (h, w)).astype(np.float32), (max(3, w // 8), 1))
    panel = 158 + streaks + np.linspace(-10, 6, h, dtype=np.float32)[:, None]
    img = np.repeat(panel[:, :, None], 3, axis=2) * np.array([1.0, 0.99, 0.96], np.float32)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for r in range(rows + 1):
        y1 = round(top + r * row_h)
        y0 = max(0, y1 - board) if r else 0
        if r == 0:
            y1 = top  # the top edge is a plain dark header, not a board
            img[0:y1] = np.array([70, 72, 75], np.float32)
            continue
        # Wood: warped sine grain plus fine noise, lit from above.
        grain = np.sin(xx[y0:y1] * 0.045 + 4.0 * np.sin(yy[y0:y1] * 0.35 + r) + rng.uniform(0, 6.28))
        fine = cv2.blur(rng.normal(0, 6, (y1 - y0, w)).astype(np.float32), (9, 1))
        wood = (1.0 + 0.10 * grain + fine / 100.0)[:, :, None] * np.array([60, 105, 150], np.float32)
        wood *= np.linspace(1.08, 0.82, y1 - y0, dtype=np.float32)[:, None, None]
        img[y0:y1] = wood
        # Shadow the board above casts onto the back panel of the next row.
        if r < rows:
            shade = min(h, y1 + round(0.12 * row_h))
            img[y1:shade] *= np.linspace(0.72, 1.0, shade - y1, dtype=np.float32)[:, None, None]
    img[:, :margin_x] = img[:, :margin_x] * 0.35 + 40
    img[:, w - margin_x :] = img[:, w - margin_x :] * 0.35 + 40

    # Vignetting of a cheap wide lens.
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1.0 - 0.12 * r2)[:, :, None]
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out


def price_labels(img: np.ndarray, slots: Sequence[Box], rng: np.random.Generator) -> None:
    h = img.shape[0]
    for x, y, w, hh in slots:
        top = y + hh + 2
        lw, lh = max(12, w // 3), max(6, round(0.055 * h / 2))
        if top + lh >= h:
            continue
        x0 = x + (w - lw) // 2
        cv2.rectangle(img, (x0, top), (x0 + lw, top + lh), (235, 240, 240), -1)
        price = f"{rng.integers(0, 10)}.{rng.integers(0, 100):02d}"
        scale = lh / 30
        cv2.putText(img, price, (x0 + 2, top + lh - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def camera_toml(camera: str, slots: Sequence[Box], size: tuple[int, int], note: str = "") -> str:
    """The camera's section as it goes into config.toml."""
    key = camera if all(c.isalnum() or c in "-_" for c in camera) else f'"{camera}"'
    lines = [
        f"# Written by `shelfsense footage synth`{': ' + note if note else ''}.",
        "# Slot boxes are [x, y, w, h] in frame pixels, row-major from the top-left slot.",
        f"[cameras.{key}]",
        f"width = {size[0]}",
        f"height = {size[1]}",
        "slots = [",
    ]
    lines += [f"  [{x}, {y}, {w}, {h}]," for x, y, w, h in slots]
    lines.append("]")
    return "\n".join(lines) + "\n"


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output folder {out} is not empty (use --force to replace earlier footage)")
        # Only what synth writes is removed, so a mistaken --out cannot wipe unrelated files.
        ours = {INDEX_NAME, META_NAME, META_NAME + ".tmp", CAMERA_TOML, TRUTH_NAME, "frames"}
        foreign = [p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(SEGMENT_PREFIX)]
        if foreign:
            raise FileExistsError(f"output folder {out} holds files synth did not write: {', '.join(foreign[:5])}")
        for p in out.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
