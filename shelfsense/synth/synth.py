"""Synthetic fixed-camera shelf footage with ground truth, for tests, benchmarks and replay.

One camera looks at a shelf of R x C slots. Between frames only what happens on a real shelf
changes: sensor noise, a slow exposure drift, JPEG artefacts, a pixel or two of camera shake,
shoppers' arms reaching in, products taken and restocked. A product left in its slot therefore
looks nearly the same frame after frame, which is what the perceptual cache relies on.

Output (see docs/footage.md): a ShelfSense recording, `camera.toml` with the slot boxes and
`truth.jsonl` with the class in each slot per frame (null when empty or hidden by an arm).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shelfsense.config import check_camera_id
from shelfsense.footage.truth import TruthRow, write_truth
from shelfsense.footage.writer import RecordingWriter
from shelfsense.synth.layout import (
    CAMERA_TOML,
    TRUTH_NAME,
    background,
    camera_toml,
    prepare_out,
    price_labels,
    shelf_slots,
)
from shelfsense.synth.products import TINY_PRODUCTS, Sprites, photo_sprites
from shelfsense.synth.rendering import Camera, Scene
from shelfsense.synth.simulation import Shelf
from shelfsense.types import Box

__all__ = ["TINY_PRODUCTS", "SynthResult", "camera_toml", "shelf_slots", "synthesize"]

# A fixed wall clock for frame 0 keeps the output byte-identical from run to run.
SYNTH_EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


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
    # Shelf-state truth (issue 12): what each slot shows per frame, and the changes (kind, slot, frame, before, after)
    states: tuple[tuple[str, ...], ...] = ()
    events: tuple[tuple[str, int, int, str | None, str | None], ...] = ()
    swaps: int = 0


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
    swap_rate: float = 0.0,
    noise_sigma: float = 2.5,
    shake_px: float = 1.5,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Write synthetic footage of one fixed camera into `out`.

    `products` is a folder of product photos (class = parent folder name); None draws the
    built-in tiny products instead. `arm_rate` is the chance per frame that an arm reaches in; `swap_rate` the share
    of takes that put another product back in the same reach (0 keeps footage byte for byte as before swaps).
    """
    if not 0 <= swap_rate <= 1:
        raise ValueError(f"swap_rate must be 0..1, got {swap_rate}")
    out = Path(out)
    _check(camera, frames, rows, cols, size, fps)
    prepare_out(out, overwrite)
    # One generator, drawn from in a fixed order: photos, shelf, stock, camera, then frame by frame.
    rng = np.random.default_rng(seed)
    slots = shelf_slots(size, rows, cols)
    sprites = Sprites()
    if products is not None:
        sw, sh = slots[0][2], slots[0][3]
        sprites = Sprites(photo_sprites(Path(products), max(4, rows * cols // 2 + 3), sw, sh, rng))
    empty = background(size, rows, rng)
    price_labels(empty, slots, rng)
    shelf = Shelf(sprites.classes, rows, cols, rng, swap_rate)
    scene = Scene(empty, slots, sprites)
    for i, name in enumerate(shelf.state):
        scene.paint(i, name)
    lens = Camera(size, frames, noise_sigma, shake_px, rng)
    source = f"shelfsense footage synth (seed {seed})"
    with RecordingWriter(out, source=source, started=SYNTH_EPOCH) as writer:
        truth, coverage, states = _film(writer, scene, shelf, lens, camera, cols, frames, fps, arm_rate, progress)
    _write_truth(out / TRUTH_NAME, camera, truth, states, shelf.events)
    (out / CAMERA_TOML).write_text(
        camera_toml(camera, slots, size, f"{rows}x{cols} slots, seed {seed}"), encoding="utf-8"
    )
    return _result(out, camera, frames, size, slots, shelf, truth, coverage, states)


def _result(
    out: Path,
    camera: str,
    frames: int,
    size: tuple[int, int],
    slots: list,
    shelf: Shelf,
    truth: list,
    coverage: list,
    states: list,
) -> SynthResult:
    return SynthResult(
        out,
        camera,
        frames,
        size,
        tuple(slots),
        tuple(shelf.classes),
        tuple(truth),
        tuple(coverage),
        shelf.takes,
        shelf.restocks,
        len(shelf.arms),
        tuple(states),
        tuple(shelf.events),
        shelf.swaps,
    )


def _write_truth(path: Path, camera: str, truth: list, states: list, events: list) -> None:
    """Per-frame products and states, with each frame's events (take, restock, swap) beside them."""
    happened: dict[int, list[dict]] = {}
    for kind, slot, f, before, after in events:
        happened.setdefault(f, []).append({"type": kind, "slot": slot, "before": before, "after": after})
    write_truth(path, (TruthRow(camera, f, row, states[f], tuple(happened.get(f, ()))) for f, row in enumerate(truth)))


def _check(camera: str, frames: int, rows: int, cols: int, size: tuple[int, int], fps: float) -> None:
    check_camera_id(camera)
    if frames < 1 or rows < 1 or cols < 1:
        raise ValueError(f"frames, rows and cols must be positive (got {frames}, {rows}, {cols})")
    w, h = size
    if w < 32 * cols or h < 48 * rows:
        raise ValueError(f"a {w}x{h} frame is too small for {rows}x{cols} slots")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _film(
    writer: RecordingWriter,
    scene: Scene,
    shelf: Shelf,
    lens: Camera,
    camera: str,
    cols: int,
    frames: int,
    fps: float,
    arm_rate: float,
    progress: bool,
) -> tuple[list[tuple[str | None, ...]], list[tuple[float, ...]], list[tuple[str, ...]]]:
    """Write `frames` frames of the shelf; the truth, the arms' coverage and the state of each slot per frame."""
    w = lens.size[0]
    col_w = (w - 2 * round(0.05 * w)) / cols  # an arm's width scales with the slot columns
    truth: list[tuple[str | None, ...]] = []
    coverage: list[tuple[float, ...]] = []
    states: list[tuple[str, ...]] = []
    disable = not progress or not sys.stderr.isatty()
    for f in tqdm(range(frames), desc="synth", unit="frame", file=sys.stderr, disable=disable):
        shelf.maybe_reach(f, arm_rate, lens.size)
        active = shelf.active(f)
        for i in shelf.act(f, active):
            scene.paint(i, shelf.state[i])
        image, cover = scene.with_arms(active, f, col_w)
        writer.write(camera, lens.shoot(image, f, fps), "image/jpeg", t=f / fps)
        truth.append(shelf.truth(cover))
        coverage.append(tuple(round(float(c), 4) for c in cover))
        states.append(shelf.states(cover))
    return truth, coverage, states
