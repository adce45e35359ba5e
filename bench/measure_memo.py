"""Key memo study: what counts as "the slot's picture has not changed" (KeyMemo), on real photos and on footage.

Reproduce (under a minute with --skip-decisions; ~2 minutes with the decisions on three recordings)::

    .venv/bin/python bench/measure_memo.py --footage /tmp/f > /tmp/memo.md

For each memo thumbnail (the 16x16 of the old thumbnail() path; one whole-factor area average of the slot's
centred region to 16 and 8 cells a side; memo_thumbnail, bilinear to 64x64 then an area average, at 16 and 8)
it prints the memo's distance (mean absolute difference, grey levels) of:

* real grocery photos (all of val/, each scaled to a 140x190 facing and cut to the 136x186 slot the synthetic
  footage uses, 2 px in from the border) against themselves shifted by 1 px, by 2 px, JPEG re-encoded (q 75),
  with gaussian noise (sigma 3), and all of a 1 px shift, q 80 and sigma 2 together. pHash is built to give
  these the same key, so a memo that recomputes them does work for nothing;
* every pair of photos of different fine classes: a real change of product, which the memo must never hide;
* with --footage, a recording with truth.jsonl: KeyMemo's decisions at the given threshold, with one reference
  thumbnail a slot (KeyMemo's) and with REFS: each frame's distance to the closest reference, split by whether the
  slot's truth (label, state) is that reference's, and how many keys were reused across a change of truth.

Then the shift-tolerant decisions (shelfsense/recognition/memo_shift.py) against KeyMemo's plain test, with the
current memo_thumbnail and with the 64x48 one main is moving to (memo_thumbnail_64x48): how many camera changes
(the above plus a sub-pixel shift, an exposure gain and their combinations) each would reuse the key for, how many
partial occlusions (a flat block over 3-10 % of the facing) and pairs of different products it would wrongly
reuse, its decision distance on those pairs, and with --footage (one or more recordings) the same simulation as
above; last, what a decision costs in CPU and memory::

    for s in 1 2 3; do .venv/bin/shelfsense footage synth --products ../shared/datasets/grocery-store/val \
        --out /tmp/memo-f$s --frames 240 --slots 2x4 --seed $s; done
    .venv/bin/python bench/measure_memo.py --footage /tmp/memo-f1 /tmp/memo-f2 /tmp/memo-f3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from camera_changes import SLOT, Change, camera_changes, jpeg, window

from shelfsense.bench.setup import resolve_setup
from shelfsense.recognition import memo_shift
from shelfsense.recognition.decode import decode_frame, slot_crops
from shelfsense.recognition.hashing import thumbnail
from shelfsense.recognition.pictures import picture_reduction, slot_pictures
from shelfsense.tools.dataset import read_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "grocery-store"
# KeyMemo keeps one reference thumbnail a slot; the footage rows also simulate keeping the last REFS keyed pictures
# (a shaking mount's positions, a product back in its facing), measured and not adopted (docs/benchmarks.md).
REFS = 8
Thumb = Callable[[np.ndarray], np.ndarray]


def memo_thumbnail(crop_bgr: np.ndarray, size: int = 8) -> np.ndarray:
    """KeyMemo's thumbnail of the second and third hit-path rounds: bilinear to 8*size a side, then an area average.
    At 8 it is what pictures.py makes now (a 64x64 bilinear picture, then 2x2 halvings), to rounding."""
    h, w = crop_bgr.shape[:2]
    grid = 8 * size
    if h > grid and w > grid:
        crop_bgr = cv2.resize(crop_bgr, (grid, grid), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(crop_bgr, (size, size), interpolation=cv2.INTER_AREA)


def memo_thumbnail_64x48(crop: np.ndarray) -> np.ndarray:
    """The memo thumbnail main is moving to: bilinear to 64x48 (an area average when the crop is smaller), then an
    exact whole-factor 8x6 area average to 8x8."""
    h, w = crop.shape[:2]
    interpolation = cv2.INTER_LINEAR if w > 64 and h > 48 else cv2.INTER_AREA
    return cv2.resize(cv2.resize(crop, (64, 48), interpolation=interpolation), (8, 8), interpolation=cv2.INTER_AREA)


def thumbs() -> dict[str, Thumb]:
    def old(crop: np.ndarray) -> np.ndarray:
        return cv2.resize(thumbnail(crop), (16, 16), interpolation=cv2.INTER_AREA)

    def area(crop: np.ndarray, n: int) -> np.ndarray:
        h, w = crop.shape[:2]
        kx, ky = w // n, h // n
        y0, x0 = (h - ky * n) // 2, (w - kx * n) // 2
        return cv2.resize(crop[y0 : y0 + ky * n, x0 : x0 + kx * n], (n, n), interpolation=cv2.INTER_AREA)

    out: dict[str, Thumb] = {"thumbnail()+16x16": old}
    for n in (16, 8):
        out[f"whole-factor area {n}"] = lambda crop, n=n: area(crop, n)
    for n in (16, 8):
        out[f"memo_thumbnail {n}"] = lambda crop, n=n: memo_thumbnail(crop, n)
    out["memo_thumbnail_64x48 8"] = memo_thumbnail_64x48
    out["pictures.py 8x8 (KeyMemo now)"] = lambda crop: slot_pictures([crop]).memo_thumbs[0]
    return out


def distance(thumb: Thumb, a: np.ndarray, b: np.ndarray) -> float:
    x, y = thumb(a), thumb(b)
    return cv2.norm(x, y, cv2.NORM_L1) / x.size


def different_products(thumb: Thumb, photos: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Memo distance of every pair of photos of different fine classes."""
    small = np.stack([thumb(im).astype(np.int32).ravel() for _, im in photos])
    fine = np.array([f for f, _ in photos])
    out = []
    for i in range(len(photos)):
        d = np.abs(small[i + 1 :] - small[i]).mean(axis=1)
        out.append(d[fine[i + 1 :] != fine[i]])
    return np.concatenate(out)


def photo_rows(data: Path, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    w, h = SLOT
    photos = [
        (
            item.fine_id,
            cv2.resize(cv2.imread(str(item.path), cv2.IMREAD_COLOR), (w + 4, h + 4), interpolation=cv2.INTER_AREA),
        )
        for item in read_split(data, "val")
    ]

    same = camera_changes(rng)
    rows = [
        f"| thumbnail | {' | '.join(f'{k} P50 / P90 / max' for k in same)} | different product min / P1 / P10 |",
        "|---" * (len(same) + 2) + "|",
    ]
    for name, thumb in thumbs().items():
        cells = []
        for perturb in same.values():
            d = np.array([distance(thumb, window(im), perturb(im)) for _, im in photos])
            cells.append(f"{np.median(d):.2f} / {np.percentile(d, 90):.2f} / {d.max():.2f}")
        diff = different_products(thumb, [(fine, window(im)) for fine, im in photos])
        cells.append(f"{diff.min():.2f} / {np.percentile(diff, 1):.2f} / {np.percentile(diff, 10):.2f}")
        rows.append(f"| {name} | {' | '.join(cells)} |")
    pairs = sum(a != b for a, _ in photos for b, _ in photos) // 2
    rows.append(f"\n{len(photos)} photos, all {pairs} pairs of different fine classes")
    return rows


def simulate(
    thumb: Thumb, frames: list[list[np.ndarray]], truth: list[dict], threshold: float, refs: int
) -> tuple[int, np.ndarray, np.ndarray, int]:
    """KeyMemo's decisions with `refs` references a slot: (recomputations, distances of frames whose truth equals
    that of the closest reference's crop, of the rest, keys reused across a change of truth)."""
    same, changed, recomputed, wrong = [], [], 0, 0
    for s in range(len(frames[0])):
        kept: list[tuple[np.ndarray, tuple[str, str]]] = []  # (thumbnail, truth) of keyed crops, recent first
        for i, crops in enumerate(frames):
            now, t = thumb(crops[s]), (truth[i]["slots"][s], truth[i]["states"][s])
            d = [cv2.norm(now, ref, cv2.NORM_L1) / now.size for ref, _ in kept]
            if d:
                k = int(np.argmin(d))
                (same if kept[k][1] == t else changed).append(d[k])
            hit = next((j for j, x in enumerate(d) if x <= threshold), None)
            if hit is None:
                recomputed += 1
                kept = [(now, t), *kept][:refs]
            else:
                wrong += kept[hit][1] != t
                kept.insert(0, kept.pop(hit))
    return recomputed, np.array(same), np.array(changed), wrong


def footage_rows(footage: Path, threshold: float) -> list[str]:
    setup = resolve_setup(footage)
    camera = setup.config.cameras[setup.camera]
    truth = [json.loads(line) for line in (footage / "truth.jsonl").read_text().splitlines() if line.strip()]
    frames = [slot_crops(decode_frame(f.data), camera, copy=False)[1] for f in setup.open()]
    rows = [
        f"| thumbnail | references a slot | recomputed keys a frame (threshold {threshold}) | unchanged truth "
        "P50 / P90 / P99 | unchanged over threshold | changed truth min / P10 | keys reused across a change |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, thumb in thumbs().items():
        for refs in (1, REFS):
            recomputed, u, c, wrong = simulate(thumb, frames, truth, threshold, refs)
            rows.append(
                f"| {name} | {refs} | {recomputed / len(frames):.2f} | {np.median(u):.2f} / "
                f"{np.percentile(u, 90):.2f} / {np.percentile(u, 99):.2f} | {np.mean(u > threshold) * 100:.1f} % | "
                f"{c.min():.2f} / {np.percentile(c, 10):.2f} | {wrong} |"
            )
    return rows


# --- Shift-tolerant decisions (memo_shift.py) ---------------------------------------------------------------


def _grid_of(size: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """The bilinear grid a memo thumbnail is the area average of (the crop itself when smaller than the grid)."""

    def grid(crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        return cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR) if w > size[0] and h > size[1] else crop

    return grid


def _reduced(crop: np.ndarray) -> np.ndarray:
    """The facing as the recognizer pictures it since the fifth hit-path round: sent as a JPEG (q90) and decoded at
    its picture reduction (pictures.picture_reduction: 1/4 for a 136x186 slot)."""
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(crop), quality=90, colorspace="BGR")
    h, w = crop.shape[:2]
    return decode_frame(data, None, picture_reduction([(0, 0, w, h)]))


def reduced_thumbnail(crop: np.ndarray) -> np.ndarray:
    return slot_pictures([_reduced(crop)]).memo_thumbs[0]


# The thumbnails the decisions are measured with, each with its grid: KeyMemo's picture from the full crop (as with
# the cache off), from the reduced decode the recognizer uses (fifth round), and the 64x48 one of the fourth round.
DECISION_THUMBS: dict[str, Thumb] = {
    "memo_thumbnail": memo_thumbnail,
    "reduced decode (recognizer now)": reduced_thumbnail,
    "64x48": memo_thumbnail_64x48,
}
GRIDS: dict[Thumb, Callable[[np.ndarray], np.ndarray]] = {
    memo_thumbnail: _grid_of((64, 64)),
    reduced_thumbnail: lambda crop: slot_pictures([_reduced(crop)]).pictures[0],
    memo_thumbnail_64x48: _grid_of((64, 48)),
}
NEIGHBOURS = [(sx, sy) for sy in (-1, 0, 1) for sx in (-1, 0, 1) if sx or sy]


def moved(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """img with its picture moved right by dx and down by dy px (bilinear, border reflected), as the footage's shake."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class Decision:
    """One way to decide "reuse the key": `prepare` runs once when a key is computed (crop, its thumbnail),
    `distance` is the decision's distance of a new thumbnail (how far it is from being reused: <= threshold with
    the bounds met means reuse; inf when a bound fails), `reuse` the decision itself."""

    name: str
    prepare: Callable[[np.ndarray, np.ndarray, Thumb], object]
    distance: Callable[[np.ndarray, object, np.ndarray], float]
    reuse: Callable[[np.ndarray, object, np.ndarray, float], bool]


def _fit_distance(ref: np.ndarray, response: object, new: np.ndarray) -> float:
    """The plain distance, or the mean residual of the fit when its move (and gain) are within the bounds,
    whichever is smaller. The max-cell bound is not applied: the decision's reuse counts show what it adds."""
    assert isinstance(response, memo_shift.ShiftResponse)
    fit = memo_shift.fit_shift(ref, response, new)
    inside = max(abs(fit.dx), abs(fit.dy)) <= memo_shift.MAX_SHIFT and abs(fit.gain) <= memo_shift.MAX_GAIN
    return min(memo_shift.plain_distance(ref, new), fit.mean_residual if inside else math.inf)


def _shifted_references(crop: np.ndarray, ref: np.ndarray, thumb: Thumb) -> list[np.ndarray]:
    return [ref, *(thumb(moved(crop, sx, sy)) for sx, sy in NEIGHBOURS)]


def _best_reference(ref: np.ndarray, refs: object, new: np.ndarray) -> float:
    assert isinstance(refs, list)
    return min(memo_shift.plain_distance(r, new) for r in refs)


def decisions() -> list[Decision]:
    inf = math.inf
    return [
        Decision(
            "plain (KeyMemo today)",
            lambda crop, ref, thumb: None,
            lambda ref, _, new: memo_shift.plain_distance(ref, new),
            lambda ref, _, new, t: memo_shift.reusable(ref, None, new, t, max_cell=inf),
        ),
        Decision(
            f"plain + max cell {memo_shift.MAX_CELL:g}",
            lambda crop, ref, thumb: None,
            lambda ref, _, new: memo_shift.plain_distance(ref, new),
            lambda ref, _, new, t: memo_shift.reusable(ref, None, new, t),
        ),
        Decision(
            "best of 9 references moved 0/+-1 px (min distance <= threshold)",
            _shifted_references,
            _best_reference,
            lambda ref, refs, new, t: _best_reference(ref, refs, new) <= t,
        ),
        Decision(
            f"shift fit |dx|,|dy| <= {memo_shift.MAX_SHIFT:g}",
            lambda crop, ref, thumb: memo_shift.shift_response(crop, thumb, ref, with_gain=False),
            _fit_distance,
            lambda ref, r, new, t: memo_shift.reusable(ref, r, new, t, max_cell=inf),  # type: ignore[arg-type]
        ),
        Decision(
            f"shift + gain fit, |gain| <= {memo_shift.MAX_GAIN:g}",
            lambda crop, ref, thumb: memo_shift.shift_response(crop, thumb, ref),
            _fit_distance,
            lambda ref, r, new, t: memo_shift.reusable(ref, r, new, t, max_cell=inf),  # type: ignore[arg-type]
        ),
        Decision(
            f"shift + gain fit + max cell {memo_shift.MAX_CELL:g}, response by views (memo_shift.reusable)",
            lambda crop, ref, thumb: memo_shift.shift_response(crop, thumb, ref),
            _fit_distance,
            lambda ref, r, new, t: memo_shift.reusable(ref, r, new, t),  # type: ignore[arg-type]
        ),
        Decision(
            f"shift + gain fit + max cell {memo_shift.MAX_CELL:g}, response from the grid (grid_shift_response)",
            lambda crop, ref, thumb: memo_shift.grid_shift_response(GRIDS[thumb](crop), crop.shape, ref),
            _fit_distance,
            lambda ref, r, new, t: memo_shift.reusable(ref, r, new, t),  # type: ignore[arg-type]
        ),
    ]


def more_changes(rng: np.random.Generator) -> dict[str, Change]:
    """camera_changes plus a sub-pixel shake (as the footage's: 0.5-1.5 px at a random angle), an exposure gain
    and combinations."""

    def noisy(img: np.ndarray, sigma: float) -> np.ndarray:
        return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)

    def shake(img: np.ndarray) -> np.ndarray:
        angle, amount = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.5)
        return moved(img, amount * math.cos(angle), amount * math.sin(angle))

    def gain(img: np.ndarray) -> np.ndarray:
        return cv2.convertScaleAbs(img, alpha=rng.uniform(0.93, 1.07))

    out = camera_changes(rng)
    out["sub-pixel shift"] = lambda im: window(shake(im))
    out["gain +-7 %"] = lambda im: gain(window(im))
    out["2 px+JPEG+noise"] = lambda im: noisy(jpeg(window(im, 2, 1), 80), 2)
    out["sub-pixel+gain+JPEG+noise"] = lambda im: noisy(jpeg(gain(window(shake(im))), 80), 2)
    return out


def occlusions(rng: np.random.Generator) -> dict[str, Change]:
    """A flat block over a share of the facing (random aspect 1:2-2:1, random place), of a random colour or grey
    (the colour most often near a grocery photo's average, the hardest for a mean difference to see)."""

    def block(img: np.ndarray, share: float, grey: bool) -> np.ndarray:
        out = window(img).copy()
        h, w = out.shape[:2]
        bw = min(w, round(math.sqrt(share * h * w * rng.uniform(0.5, 2))))
        bh = min(h, round(share * h * w / bw))
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        out[y : y + bh, x : x + bw] = (128, 128, 128) if grey else rng.integers(0, 256, 3)
        return out

    return {
        f"{share:.0%} {'grey' if grey else 'random colour'}": lambda im, s=share, g=grey: block(im, s, g)
        for share in (0.03, 0.05, 0.10)
        for grey in (False, True)
    }


def decision_photo_rows(data: Path, seed: int, threshold: float, occlusion_repeats: int = 4) -> list[str]:
    w, h = SLOT
    photos = [
        (
            item.fine_id,
            cv2.resize(cv2.imread(str(item.path), cv2.IMREAD_COLOR), (w + 4, h + 4), interpolation=cv2.INTER_AREA),
        )
        for item in read_split(data, "val")
    ]
    rows: list[str] = []
    for tname, thumb in DECISION_THUMBS.items():
        # The same perturbed pictures for every decision of a thumbnail: one rng per thumbnail, drawn once.
        rng = np.random.default_rng(seed)
        same = {n: [thumb(f(im)) for _, im in photos] for n, f in more_changes(rng).items()}
        blocked = {
            n: [[thumb(f(im)) for _ in range(occlusion_repeats)] for _, im in photos]
            for n, f in occlusions(rng).items()
        }
        keyed = [(window(im), thumb(window(im))) for _, im in photos]
        fine = [f for f, _ in photos]
        rows += [
            f"\n### Thumbnail {tname}, threshold {threshold:g}: keys reused (of {len(photos)} photos; occlusions: of "
            f"{len(photos) * occlusion_repeats})\n",
            f"| decision | {' | '.join(same)} | {' | '.join('occluded ' + n for n in blocked)} | different product: "
            "decision distance min / P1, pairs reused |",
            "|---" * (len(same) + len(blocked) + 2) + "|",
        ]
        for decision in decisions():
            prepared = [decision.prepare(crop, ref, thumb) for crop, ref in keyed]
            cells = []
            for news in same.values():
                hits = sum(
                    decision.reuse(ref, p, new, threshold)
                    for (_, ref), p, new in zip(keyed, prepared, news, strict=True)
                )
                cells.append(str(hits))
            for news in blocked.values():
                hits = sum(
                    decision.reuse(ref, p, new, threshold)
                    for (_, ref), p, group in zip(keyed, prepared, news, strict=True)
                    for new in group
                )
                cells.append(str(hits))
            # Every ordered pair of photos of different fine classes: the key of i, the new picture j.
            dist, reused = [], 0
            for i, ((_, ref), p) in enumerate(zip(keyed, prepared, strict=True)):
                for j, (_, new) in enumerate(keyed):
                    if fine[i] != fine[j]:
                        dist.append(decision.distance(ref, p, new))
                        reused += decision.reuse(ref, p, new, threshold)
            d = np.array(dist)
            cells.append(f"{d.min():.2f} / {np.percentile(d, 1):.2f}, {reused} of {d.size}")
            rows.append(f"| {decision.name} | {' | '.join(cells)} |")
    return rows


def simulate_decision(
    thumb: Thumb, decision: Decision, frames: list[list[np.ndarray]], truth: list[dict], threshold: float
) -> tuple[int, np.ndarray, int, int]:
    """KeyMemo with one reference a slot and `decision`: (recomputations, decision distances of frames whose truth
    differs from the reference's, keys reused across a change of truth, slot-frames on which reusable's first test
    (the plain test and the worst value) fails: those a fit runs on)."""
    changed, recomputed, wrong, fits = [], 0, 0, 0
    for s in range(len(frames[0])):
        kept: tuple[np.ndarray, object, tuple[str, str]] | None = None
        for i, crops in enumerate(frames):
            now, t = thumb(crops[s]), (truth[i]["slots"][s], truth[i]["states"][s])
            if kept is not None:
                ref, prepared, was = kept
                if was != t:
                    changed.append(decision.distance(ref, prepared, now))
                fits += not memo_shift.reusable(ref, None, now, threshold)  # reusable's first test alone
                if decision.reuse(ref, prepared, now, threshold):
                    wrong += was != t
                    continue
            recomputed += 1
            kept = (now, decision.prepare(crops[s], now, thumb), t)
    return recomputed, np.array(changed), wrong, fits


def decision_footage_rows(footages: list[Path], threshold: float) -> list[str]:
    rows = [
        f"| footage | thumbnail | decision | recomputed keys a frame (threshold {threshold:g}) | keys reused across a "
        "change of truth | changed truth: decision distance min / P10 (n) | first test fails a frame (a fit runs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for footage in footages:
        setup = resolve_setup(footage)
        camera = setup.config.cameras[setup.camera]
        truth = [json.loads(line) for line in (footage / "truth.jsonl").read_text().splitlines() if line.strip()]
        frames = [slot_crops(decode_frame(f.data), camera, copy=False)[1] for f in setup.open()]
        for tname, thumb in DECISION_THUMBS.items():
            for decision in decisions():
                recomputed, c, wrong, fits = simulate_decision(thumb, decision, frames, truth, threshold)
                rows.append(
                    f"| {footage.name} | {tname} | {decision.name} | {recomputed / len(frames):.2f} | {wrong} | "
                    f"{c.min():.2f} / {np.percentile(c, 10):.2f} ({c.size}) | {fits / len(frames):.2f} |"
                )
    return rows


def _per_call_us(fn: Callable[[], object], calls: int = 2000, repeats: int = 7) -> tuple[float, float]:
    """(wall, process CPU) us a call: the median over `repeats` batches of `calls` (the machine is shared)."""
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(calls):
            fn()
        wall.append((time.perf_counter_ns() - w0) / calls / 1e3)
        cpu.append((time.process_time_ns() - c0) / calls / 1e3)
    return float(np.median(wall)), float(np.median(cpu))


def cost_rows(data: Path, threshold: float) -> list[str]:
    """CPU of each step on a real 136x186 facing moved by 1 px (the fit path taken), and memory a slot."""
    w, h = SLOT
    item = read_split(data, "val")[0]
    img = cv2.resize(cv2.imread(str(item.path), cv2.IMREAD_COLOR), (w + 4, h + 4), interpolation=cv2.INTER_AREA)
    crop, shifted = window(img), window(img, 2, 1)
    rows = [
        "| step | thumbnail | wall us a call (median of 7 x 2000) | process CPU us a call |",
        "|---|---|---|---|",
    ]
    for tname, thumb in DECISION_THUMBS.items():
        ref, new = thumb(crop), thumb(shifted)
        response = memo_shift.shift_response(crop, thumb, ref)
        grid = GRIDS[thumb](crop)
        assert memo_shift.plain_distance(ref, new) > threshold, "the timed picture must take the fit path"
        steps: dict[str, Callable[[], object]] = {
            "thumbnail (every slot, every frame; for scale)": lambda thumb=thumb: thumb(crop),
            "plain test alone (cv2.norm L1)": lambda ref=ref, new=new: memo_shift.plain_distance(ref, new),
            "reusable(), plain test passes": lambda ref=ref, r=response: memo_shift.reusable(ref, r, ref, threshold),
            "reusable(), plain test fails: + fit": lambda ref=ref, r=response, new=new: memo_shift.reusable(
                ref, r, new, threshold
            ),
            "shift_response() by views (once a computed key)": lambda thumb=thumb, ref=ref: memo_shift.shift_response(
                crop, thumb, ref
            ),
            "grid_shift_response() (once a computed key; the grid is the thumbnail's)": lambda g=grid, ref=ref: (
                memo_shift.grid_shift_response(g, crop.shape, ref)
            ),
        }
        for name, fn in steps.items():
            wall, cpu = _per_call_us(fn, calls=500 if "response" in name else 2000)
            rows.append(f"| {name} | {tname} | {wall:.1f} | {cpu:.1f} |")
    response = memo_shift.shift_response(crop, memo_thumbnail_64x48)
    arrays = response.basis.nbytes + response.inverse.nbytes
    objects = sys.getsizeof(response) + sys.getsizeof(response.basis) + sys.getsizeof(response.inverse) - arrays
    rows.append(
        f"\nMemory a slot beside the 192-byte reference: the ShiftResponse's float32 arrays {arrays} bytes (basis "
        f"{response.basis.shape} + inverse {response.inverse.shape}) + {objects} bytes of object headers."
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="grocery-store dataset root")
    ap.add_argument("--footage", type=Path, nargs="+", help="recordings with truth.jsonl (shelfsense footage synth)")
    ap.add_argument("--skip-decisions", action="store_true", help="only the thumbnail tables (the original study)")
    ap.add_argument("--threshold", type=float, default=3.0, help="cache.key_reuse_threshold to simulate")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    print("## Real grocery photos (memo distance, grey levels)\n")
    print("\n".join(photo_rows(args.data, args.seed)))
    for footage in args.footage or []:
        print(f"\n## Footage {footage}\n")
        print("\n".join(footage_rows(footage, args.threshold)))
    if args.skip_decisions:
        return 0
    print("\n## Shift-tolerant decisions (memo_shift.py), real grocery photos")
    print("\n".join(decision_photo_rows(args.data, args.seed, args.threshold)))
    if args.footage:
        print("\n## Shift-tolerant decisions, footage\n")
        print("\n".join(decision_footage_rows(args.footage, args.threshold)))
    print("\n## Cost of a decision\n")
    print("\n".join(cost_rows(args.data, args.threshold)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
