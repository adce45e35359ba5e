"""Shelf frames drawn for the shelf-state tests (test helper): products, empty facings and arms on a 2x4 shelf.

Products are textured boxes (a printed band, stripes, lettering) in the fixture colour model's colours, so the
model names them and they read as products; an empty facing shows the shelf's back panel. Two backs differ in
colour and pattern (`plain` and `wood`), so a test can check that nothing is tuned to one shelf.
"""

from __future__ import annotations

import cv2
import numpy as np

COLOURS = {"red": (40, 40, 200), "green": (40, 170, 40), "blue": (190, 70, 30)}  # BGR
SIZE = (640, 480)
CELL = (160, 240)
GRID = {"grid": {"rows": 2, "cols": 4}, "width": 640, "height": 480}


def back(kind: str = "plain") -> np.ndarray:
    w, h = SIZE
    if kind == "plain":  # light grey panel, lit from above
        panel = np.linspace(185, 150, h, dtype=np.float32)[:, None].repeat(w, 1)
        return np.dstack([panel * 0.97, panel, panel * 1.02]).clip(0, 255).astype(np.uint8)
    # dark brown, softly grained: another store's shelf
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = 60 + 6 * np.sin(xx * 0.02 + 2 * np.sin(yy * 0.05))
    return np.dstack([grain * 0.55, grain * 0.8, grain * 1.15]).clip(0, 255).astype(np.uint8)


def product(colour: str) -> np.ndarray:
    cw, ch = CELL
    img = np.zeros((ch - 30, cw - 30, 3), np.uint8)
    img[:] = COLOURS[colour]
    h, w = img.shape[:2]
    cv2.rectangle(img, (0, h // 3), (w, h // 3 + 22), (245, 245, 245), -1)
    # One print for every colour, as flavours of one brand: only the colour tells them apart.
    cv2.putText(img, "MILK", (8, h // 3 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 2)
    for x in range(6, w, 14):
        cv2.line(img, (x, h - 50), (x + 6, h - 10), (255, 255, 255), 2)
    return img


def shelf(slots: list[str | None], *, kind: str = "plain", seed: int = 0, arm: int | None = None) -> np.ndarray:
    """A 640x480 frame: slot i shows `slots[i]` (None: empty); `arm` draws an arm reaching into that slot,
    at a position that changes with `seed` (so consecutive frames of a reach differ, as a moving arm does)."""
    rng = np.random.default_rng(seed)
    frame = back(kind).copy()
    cw, ch = CELL
    for i, colour in enumerate(slots):
        if colour is None:
            continue
        r, c = divmod(i, 4)
        p = product(colour)
        y0, x0 = r * ch + (ch - p.shape[0]), c * cw + 15
        frame[y0 : y0 + p.shape[0], x0 : x0 + p.shape[1]] = p
    if arm is not None:
        r, c = divmod(arm, 4)
        target = (c * cw + cw // 2 + int(rng.integers(-30, 30)), r * ch + ch // 2 + int(rng.integers(-40, 40)))
        entry = (int(rng.integers(100, 540)), 520)
        cv2.line(frame, entry, target, (60, 60, 170), 70)  # sleeve
        cv2.circle(frame, target, 38, (120, 160, 215), -1)  # hand
    noise = rng.normal(0, 2.0, frame.shape)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
