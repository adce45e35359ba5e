"""Synthetic fixed-camera shelf footage with ground truth, for tests, benchmarks and replay.

One camera looks at a shelf of R x C slots. Between frames only what happens on a real shelf
changes: sensor noise, a slow exposure drift, JPEG artefacts, a pixel or two of camera shake,
shoppers' arms reaching in, products taken and restocked. A product left in its slot therefore
looks nearly the same frame after frame, which is what the perceptual cache relies on.

Output (see docs/footage.md): a ShelfSense recording, `camera.toml` with the slot boxes and
`truth.jsonl` with the class in each slot per frame (null when empty or hidden by an arm).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from shelfsense.config import check_camera_id
from shelfsense.footage.format import IMAGE_TYPES, INDEX_NAME, META_NAME, SEGMENT_PREFIX
from shelfsense.footage.truth import TruthRow, write_truth
from shelfsense.footage.writer import RecordingWriter

CAMERA_TOML = "camera.toml"
TRUTH_NAME = "truth.jsonl"
# A fixed wall clock for frame 0 keeps the output byte-identical from run to run.
SYNTH_EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
OCCLUDED_ABOVE = 0.30  # fraction of a slot an arm must hide before the slot has no truth

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class SynthResult:
    out: Path
    camera: str
    frames: int
    size: tuple[int, int]
    slots: tuple[Box, ...]  # [x, y, w, h] per slot, row-major
    classes: tuple[str, ...]  # every product class that can appear
    truth: tuple[tuple[str | None, ...], ...]  # per frame, per slot (same as truth.jsonl)
    coverage: tuple[tuple[float, ...], ...]  # per frame, per slot: fraction hidden by arms
    takes: int
    restocks: int
    arms: int


@dataclass
class _Sprite:
    image: np.ndarray  # BGR, slot-sized
    alpha: np.ndarray  # float32 0..1, slot-sized


@dataclass
class _Arm:
    start: int
    duration: int
    target: int
    entry: tuple[float, float]
    sleeve: tuple[int, int, int]
    skin: tuple[int, int, int]
    action: str  # "take" | "restock" | "look"


SKIN_TONES = [(172, 200, 238), (130, 165, 214), (95, 130, 190), (60, 90, 140), (45, 65, 105)]
SLEEVES = [(90, 50, 20), (40, 40, 170), (110, 110, 110), (40, 110, 40), (25, 25, 25), (215, 215, 215)]


# ---------------------------------------------------------------- layout and background


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


def _background(size: tuple[int, int], rows: int, rng: np.random.Generator) -> np.ndarray:
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


def _price_labels(img: np.ndarray, slots: Sequence[Box], rng: np.random.Generator) -> None:
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


# ---------------------------------------------------------------- products

TINY_PRODUCTS: dict[str, tuple[str, tuple[int, int, int], str]] = {
    # name: (shape, BGR body colour, label)
    "red-carton": ("carton", (45, 45, 200), "MILK"),
    "blue-carton": ("carton", (190, 95, 30), "MILK"),  # differs from red-carton only by colour
    "green-can": ("can", (60, 150, 40), "SODA"),
    "yellow-box": ("box", (40, 200, 235), "CORN"),
    "white-bottle": ("bottle", (235, 235, 230), "H2O"),
    "orange-bag": ("bag", (30, 130, 245), "CHIPS"),
    "purple-jar": ("jar", (130, 40, 110), "JAM"),
}


def _tiny_sprite(name: str, w: int, h: int) -> _Sprite:
    """A drawn product standing at the bottom of a w x h slot."""
    shape, colour, label = TINY_PRODUCTS[name]
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    dark = tuple(int(c * 0.6) for c in colour)
    white = (245, 245, 245)

    def body(pts: np.ndarray) -> None:
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)

    pw = round(w * 0.8)
    x0 = (w - pw) // 2
    if shape == "carton":
        ph = round(h * 0.92)
        y0 = h - ph
        roof = round(ph * 0.12)
        body(
            np.array(
                [[x0, y0 + roof], [x0 + pw // 2, y0], [x0 + pw, y0 + roof], [x0 + pw, h - 1], [x0, h - 1]],
                np.int32,
            )
        )
        cv2.rectangle(img, (x0, y0 + roof + ph // 5), (x0 + pw, y0 + roof + ph // 5 + ph // 10), white, -1)
        cv2.rectangle(img, (x0, h - ph // 6), (x0 + pw, h - ph // 6 + ph // 24), dark, -1)
        text_y = y0 + roof + ph // 2
    elif shape == "can":
        ph = round(h * 0.62)
        y0 = h - ph
        body(np.array([[x0, y0], [x0 + pw, y0], [x0 + pw, h - 1], [x0, h - 1]], np.int32))
        for yb in (y0, h - ph // 10):
            cv2.rectangle(img, (x0, yb), (x0 + pw, yb + ph // 10), (200, 200, 205), -1)
        cv2.line(img, (x0 + pw // 5, y0 + ph // 8), (x0 + pw // 5, h - ph // 8), white, max(1, pw // 16))
        text_y = y0 + ph // 2 + ph // 10
    elif shape == "box":
        ph = round(h * 0.96)
        y0 = h - ph
        body(np.array([[x0, y0], [x0 + pw, y0], [x0 + pw, h - 1], [x0, h - 1]], np.int32))
        cv2.ellipse(img, (x0 + pw // 2, y0 + ph // 3), (pw // 3, ph // 7), 0, 0, 360, (30, 70, 120), -1, cv2.LINE_AA)
        for k in range(3):
            yy = y0 + ph // 2 + k * ph // 9
            cv2.line(img, (x0, yy), (x0 + pw, yy + ph // 20), dark, max(1, ph // 40))
        text_y = y0 + ph - ph // 8
    elif shape == "bottle":
        ph = round(h * 0.9)
        y0 = h - ph
        neck = pw // 4
        cx = x0 + pw // 2
        body(
            np.array(
                [
                    [cx - neck // 2, y0],
                    [cx + neck // 2, y0],
                    [cx + neck // 2, y0 + ph // 5],
                    [x0 + pw, y0 + ph // 3],
                    [x0 + pw, h - 1],
                    [x0, h - 1],
                    [x0, y0 + ph // 3],
                    [cx - neck // 2, y0 + ph // 5],
                ],
                np.int32,
            )
        )
        cv2.rectangle(img, (cx - neck // 2, y0), (cx + neck // 2, y0 + ph // 14), (40, 40, 190), -1)
        cv2.rectangle(img, (x0, y0 + ph // 2), (x0 + pw, y0 + ph // 2 + ph // 4), (50, 50, 200), -1)
        text_y = y0 + ph // 2 + ph // 6
    elif shape == "bag":
        ph = round(h * 0.8)
        y0 = h - ph
        body(
            np.array(
                [
                    [x0 + pw // 10, y0],
                    [x0 + pw - pw // 10, y0],
                    [x0 + pw, y0 + ph // 8],
                    [x0 + pw, h - 1],
                    [x0, h - 1],
                    [x0, y0 + ph // 8],
                ],
                np.int32,
            )
        )
        cv2.circle(img, (x0 + pw // 2, y0 + ph // 3), pw // 4, (40, 200, 240), -1, cv2.LINE_AA)
        text_y = y0 + ph - ph // 5
    else:  # jar
        ph = round(h * 0.55)
        y0 = h - ph
        body(np.array([[x0, y0 + ph // 6], [x0 + pw, y0 + ph // 6], [x0 + pw, h - 1], [x0, h - 1]], np.int32))
        cv2.rectangle(img, (x0 + pw // 12, y0), (x0 + pw - pw // 12, y0 + ph // 6), (40, 170, 200), -1)
        cv2.rectangle(mask, (x0 + pw // 12, y0), (x0 + pw - pw // 12, y0 + ph // 6), 255, -1)
        cv2.rectangle(img, (x0, y0 + ph // 3), (x0 + pw, y0 + ph - ph // 6), white, -1)
        text_y = y0 + ph // 2 + ph // 10

    scale = max(0.25, pw / 110)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_DUPLEX, scale, 1)
    ink = (20, 20, 20) if sum(colour) > 450 or shape in ("jar", "bottle") else white
    cv2.putText(
        img,
        label,
        (x0 + max(0, (pw - tw) // 2), text_y),
        cv2.FONT_HERSHEY_DUPLEX,
        scale,
        ink,
        max(1, round(scale)),
        cv2.LINE_AA,
    )
    # A slight shading from left to right gives the drawing some volume.
    shade = np.linspace(1.05, 0.85, w, dtype=np.float32)[None, :, None]
    img = np.clip(img.astype(np.float32) * shade, 0, 255).astype(np.uint8)
    return _Sprite(img, mask.astype(np.float32) / 255.0)


def _photo_sprite(photo: np.ndarray, w: int, h: int) -> _Sprite:
    """A product photo scaled to fit the slot, standing on the shelf board, centred."""
    ph0, pw0 = photo.shape[:2]
    scale = min(0.92 * w / pw0, 0.96 * h / ph0)
    pw, ph = max(1, round(pw0 * scale)), max(1, round(ph0 * scale))
    small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.float32)
    x0, y0 = (w - pw) // 2, h - ph
    img[y0:, x0 : x0 + pw] = small
    alpha[y0:, x0 : x0 + pw] = 1.0
    return _Sprite(img, alpha)


def find_product_photos(products: Path) -> dict[str, list[Path]]:
    """Images under `products` (recursively) grouped by class = name of the folder holding them."""
    if not products.is_dir():
        raise FileNotFoundError(f"product photo folder {products} does not exist")
    by_class: dict[str, list[Path]] = {}
    for p in sorted(products.rglob("*")):
        if p.suffix.lower() in IMAGE_TYPES and p.is_file():
            by_class.setdefault(p.parent.name, []).append(p)
    if not by_class:
        raise ValueError(f"no .jpg/.jpeg/.png product photos under {products}")
    return by_class


def _photo_sprites(products: Path, count: int, w: int, h: int, rng: np.random.Generator) -> dict[str, _Sprite]:
    by_class = find_product_photos(products)
    names = sorted(by_class)
    chosen = [names[i] for i in rng.permutation(len(names))]
    sprites: dict[str, _Sprite] = {}
    for name in chosen:
        if len(sprites) == count:
            break
        photos = by_class[name]
        for i in rng.permutation(len(photos)):
            image = cv2.imread(str(photos[i]), cv2.IMREAD_COLOR)
            if image is not None:
                sprites[name] = _photo_sprite(image, w, h)
                break
    if not sprites:
        raise ValueError(f"none of the product photos under {products} could be decoded")
    return sprites


# ---------------------------------------------------------------- arms


def _draw_arm(
    layer: np.ndarray, mask: np.ndarray, arm: _Arm, reach: float, target: tuple[float, float], col_w: float
) -> None:
    ex, ey = arm.entry
    tx, ty = target
    px, py = ex + reach * (tx - ex), ey + reach * (ty - ey)
    elbow = (ex + 0.55 * (px - ex), ey + 0.55 * (py - ey))
    sleeve_w = max(3, round(0.42 * col_w))
    fore_w = max(2, round(0.30 * col_w))
    pts = [(round(ex), round(ey)), (round(elbow[0]), round(elbow[1])), (round(px), round(py))]
    for m, colour in ((mask, 255), (layer, arm.skin)):
        cv2.line(m, pts[1], pts[2], colour, fore_w, cv2.LINE_AA)
        angle = math.degrees(math.atan2(py - ey, px - ex))
        cv2.ellipse(m, pts[2], (round(0.2 * col_w), round(0.15 * col_w)), angle, 0, 360, colour, -1, cv2.LINE_AA)
    for m, colour in ((mask, 255), (layer, arm.sleeve)):
        cv2.line(m, pts[0], pts[1], colour, sleeve_w, cv2.LINE_AA)


# ---------------------------------------------------------------- main


def synthesize(
    products: Path | None,
    out: Path,
    *,
    frames: int = 120,
    rows: int = 2,
    cols: int = 4,
    size: tuple[int, int] = (640, 480),
    fps: float = 2.0,
    seed: int = 0,
    camera: str = "cam-0",
    arm_rate: float = 0.12,
    noise_sigma: float = 2.5,
    shake_px: float = 1.5,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Write synthetic footage of one fixed camera into `out`.

    `products` is a folder of product photos (class = parent folder name); None draws the
    built-in tiny products instead. `arm_rate` is the chance per frame that an arm reaches in.
    """
    out = Path(out)
    check_camera_id(camera)
    if frames < 1 or rows < 1 or cols < 1:
        raise ValueError(f"frames, rows and cols must be positive (got {frames}, {rows}, {cols})")
    w, h = size
    if w < 32 * cols or h < 48 * rows:
        raise ValueError(f"a {w}x{h} frame is too small for {rows}x{cols} slots")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _prepare_out(out, overwrite)

    rng = np.random.default_rng(seed)
    slots = shelf_slots(size, rows, cols)
    sw, sh = slots[0][2], slots[0][3]
    # Rounding can make slots differ by a pixel; sprites are made once per class and slot size.
    photos: dict[str, _Sprite] = {}
    if products is None:
        classes = list(TINY_PRODUCTS)
    else:
        photos = _photo_sprites(Path(products), max(4, rows * cols // 2 + 3), sw, sh, rng)
        classes = list(photos)
    sprites: dict[tuple[str, int, int], _Sprite] = {}

    def sprite_for(name: str, bw: int, bh: int) -> _Sprite:
        key = (name, bw, bh)
        if key not in sprites:
            if products is None:
                sprites[key] = _tiny_sprite(name, bw, bh)
            elif photos[name].image.shape[:2] == (bh, bw):
                sprites[key] = photos[name]
            else:
                s = photos[name]
                sprites[key] = _Sprite(
                    cv2.resize(s.image, (bw, bh), interpolation=cv2.INTER_AREA),
                    cv2.resize(s.alpha, (bw, bh), interpolation=cv2.INTER_AREA),
                )
        return sprites[key]

    background = _background(size, rows, rng)
    _price_labels(background, slots, rng)

    # Shelves are stocked in runs of facings: the same product in 1-3 neighbouring slots.
    state: list[str | None] = []
    for _ in range(rows):
        row: list[str | None] = []
        while len(row) < cols:
            run = int(rng.integers(1, 4))
            name = classes[int(rng.integers(len(classes)))]
            row.extend([name] * min(run, cols - len(row)))
        state.extend(row)
    last_class = list(state)

    scene = background.copy()

    def paint(i: int) -> None:
        x, y, bw, bh = slots[i]
        region = background[y : y + bh, x : x + bw].astype(np.float32)
        name = state[i]
        if name is not None:
            s = sprite_for(name, bw, bh)
            a = s.alpha[:, :, None]
            region = region * (1 - a) + s.image.astype(np.float32) * a
        scene[y : y + bh, x : x + bw] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    for i in range(len(slots)):
        paint(i)

    col_w = (w - 2 * round(0.05 * w)) / cols
    exposure_period = float(rng.uniform(40, 90))
    exposure_phase = float(rng.uniform(0, 2 * math.pi))
    jpeg_q = rng.integers(70, 91, size=frames)
    # Fresh gaussian noise for every frame costs more than the rest of the frame; a small bank of
    # fields read at random offsets looks the same to a hash and keeps 120 frames within seconds.
    pad = 16
    noise_bank = [
        np.round(rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * noise_sigma).astype(np.int16)
        for _ in range(4)
    ]
    arms: list[_Arm] = []
    takes = restocks = 0
    truth_rows: list[tuple[str | None, ...]] = []
    coverage_rows: list[tuple[float, ...]] = []
    slot_area = np.array([bw * bh for _, _, bw, bh in slots], np.float32)

    writer = RecordingWriter(out, source=f"shelfsense footage synth (seed {seed})", started=SYNTH_EPOCH)
    try:
        for f in tqdm(
            range(frames),
            desc="synth",
            unit="frame",
            file=sys.stderr,
            disable=not progress or not sys.stderr.isatty(),
        ):
            if not any(a.start + a.duration > f for a in arms) and rng.random() < arm_rate:
                empty = [i for i, name in enumerate(state) if name is None]
                # Gaps get refilled: some arms are staff restocking an empty slot.
                if empty and rng.random() < 0.5:
                    target = empty[int(rng.integers(len(empty)))]
                else:
                    target = int(rng.integers(len(slots)))
                side = rng.random()
                if side < 0.7:  # from below, the shopper standing in front of the shelf
                    entry = (float(rng.uniform(0.2 * w, 0.8 * w)), 1.1 * h)
                else:  # from the side, sweeping across the neighbouring slots
                    entry = (-0.05 * w if side < 0.85 else 1.05 * w, float(rng.uniform(0.5 * h, 1.0 * h)))
                action = "take" if state[target] is not None else "restock"
                if rng.random() < 0.3:
                    action = "look"  # reaches in, touches nothing
                arms.append(
                    _Arm(
                        f,
                        int(rng.integers(2, 5)),
                        target,
                        entry,
                        SLEEVES[int(rng.integers(len(SLEEVES)))],
                        SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
                        action,
                    )
                )

            active = [a for a in arms if a.start <= f < a.start + a.duration]
            for a in active:
                if f == a.start + a.duration - 1 and a.action != "look":
                    # The change shows on the arm's last frame, as it pulls back.
                    if a.action == "take" and state[a.target] is not None:
                        last_class[a.target] = state[a.target]
                        state[a.target] = None
                        takes += 1
                    elif a.action == "restock" and state[a.target] is None:
                        same = rng.random() < 0.5 and last_class[a.target] is not None
                        state[a.target] = last_class[a.target] if same else classes[int(rng.integers(len(classes)))]
                        restocks += 1
                    paint(a.target)

            frame = scene.copy()
            cover = np.zeros(len(slots), np.float32)
            if active:
                layer = np.zeros_like(frame)
                mask = np.zeros((h, w), np.uint8)
                for a in active:
                    # Reach in, hold, pull back (the hand still over the slot on the last frame).
                    k = f - a.start
                    reach = 0.8 if k == a.duration - 1 else (0.7 if k == 0 and a.duration > 2 else 1.0)
                    x, y, bw, bh = slots[a.target]
                    _draw_arm(layer, mask, a, reach, (x + bw / 2, y + bh * 0.6), col_w)
                for i, (x, y, bw, bh) in enumerate(slots):
                    cover[i] = np.count_nonzero(mask[y : y + bh, x : x + bw] > 127) / slot_area[i]
                # Blend only where the arm is: soft edges stand in for motion blur.
                bx, by, bw, bh = cv2.boundingRect(mask)
                if bw and bh:
                    x0, y0 = max(0, bx - 3), max(0, by - 3)
                    x1, y1 = min(w, bx + bw + 3), min(h, by + bh + 3)
                    soft = cv2.GaussianBlur(mask[y0:y1, x0:x1], (5, 5), 0).astype(np.float32)[:, :, None]
                    soft /= 255.0
                    roi = frame[y0:y1, x0:x1].astype(np.float32)
                    frame[y0:y1, x0:x1] = (roi * (1 - soft) + layer[y0:y1, x0:x1] * soft + 0.5).astype(np.uint8)

            # Camera shake: the mount is usually at rest, sometimes off by a pixel or so.
            if shake_px > 0 and rng.random() < 0.3:
                angle = rng.uniform(0, 2 * math.pi)
                amount = rng.uniform(0.5, shake_px)
                dx, dy = amount * math.cos(angle), amount * math.sin(angle)
                m = np.float32([[1, 0, dx], [0, 1, dy]])
                frame = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            gain = 1.0 + 0.08 * math.sin(2 * math.pi * (f / fps) / exposure_period + exposure_phase)
            bank = noise_bank[int(rng.integers(len(noise_bank)))]
            ox, oy = (int(v) for v in rng.integers(0, pad, size=2))
            frame = cv2.convertScaleAbs(frame, alpha=gain)
            frame = cv2.add(frame, bank[oy : oy + h, ox : ox + w], dtype=cv2.CV_8U)
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_q[f])])
            if not ok:
                raise RuntimeError("OpenCV failed to encode a JPEG frame")
            writer.write(camera, buf.tobytes(), "image/jpeg", t=f / fps)

            truth_rows.append(tuple(None if cover[i] > OCCLUDED_ABOVE else state[i] for i in range(len(slots))))
            coverage_rows.append(tuple(round(float(c), 4) for c in cover))
    finally:
        writer.close()

    write_truth(out / TRUTH_NAME, (TruthRow(camera, f, row) for f, row in enumerate(truth_rows)))
    (out / CAMERA_TOML).write_text(
        camera_toml(camera, slots, (w, h), f"{rows}x{cols} slots, seed {seed}"), encoding="utf-8"
    )
    return SynthResult(
        out,
        camera,
        frames,
        (w, h),
        tuple(slots),
        tuple(classes),
        tuple(truth_rows),
        tuple(coverage_rows),
        takes,
        restocks,
        len(arms),
    )


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


def _prepare_out(out: Path, overwrite: bool) -> None:
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


# ---------------------------------------------------------------- CLI


def _pair(text: str, what: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must look like 2x4, got {text!r}") from None
    if a < 1 or b < 1:
        raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
    return a, b


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = footage_commands(subparsers)
    p = commands.add_parser(
        "synth",
        help="generate synthetic fixed-camera shelf footage with ground truth",
        description="Write a ShelfSense recording, camera.toml (slot boxes) and truth.jsonl into --out.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--products", type=Path, help="folder of product photos; class = parent folder name")
    src.add_argument("--tiny", action="store_true", help="draw built-in products instead of using photos")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty)")
    p.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    p.add_argument(
        "--slots",
        type=lambda s: _pair(s, "--slots"),
        default=(2, 4),
        metavar="RxC",
        help="shelf rows x slots per row (default 2x4)",
    )
    p.add_argument(
        "--size",
        type=lambda s: _pair(s, "--size"),
        default=(640, 480),
        metavar="WxH",
        help="frame size in pixels (default 640x480)",
    )
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of the timestamps (default 2)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--camera", default="cam-0", help="camera id (default cam-0)")
    p.add_argument("--force", action="store_true", help="replace footage synth wrote earlier in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rows, cols = args.slots
    try:
        result = synthesize(
            None if args.tiny else args.products,
            args.out,
            frames=args.frames,
            rows=rows,
            cols=cols,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            camera=args.camera,
            overwrite=args.force,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as e:
        print(f"shelfsense footage synth: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"wrote {result.frames} frames of {result.camera} to {result.out} ({rows}x{cols} slots, "
            f"{len(set(result.truth[0]) - {None})} of {len(result.classes)} product classes on the shelf at first, "
            f"{result.takes} taken, {result.restocks} restocked, "
            f"{result.arms} arms)",
            file=sys.stderr,
        )
    return 0


def footage_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `footage` command's own subcommands, created on first use so several modules can add to it."""
    parser = subparsers.choices.get("footage")
    if parser is None:
        parser = subparsers.add_parser("footage", help="synthetic shelf footage with ground truth (synth)")
    commands = getattr(parser, "_shelfsense_commands", None)
    if commands is None:
        commands = parser.add_subparsers(dest="footage_command", metavar="COMMAND", required=True)
        parser._shelfsense_commands = commands  # type: ignore[attr-defined]
    return commands
