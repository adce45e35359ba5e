"""Key memo study: what counts as "the slot's picture has not changed" (KeyMemo), on real photos and on footage.

Reproduce (under a minute)::

    .venv/bin/python bench/measure_memo.py --footage /tmp/f > /tmp/memo.md

For each memo thumbnail (the 16x16 of the old thumbnail() path; one whole-factor area average of the slot's
centred region to 16 and 8 cells a side; memo_thumbnail, bilinear to 64x64 then an area average, at 16 and 8;
the 8x8 thumbnail of pictures.py that KeyMemo compares now)
it prints the memo's distance (mean absolute difference, grey levels) of:

* real grocery photos (all of val/, each scaled to a 140x190 facing and cut to the 136x186 slot the synthetic
  footage uses, 2 px in from the border) against themselves shifted by 1 px, by 2 px, JPEG re-encoded (q 75),
  with gaussian noise (sigma 3), and all of a 1 px shift, q 80 and sigma 2 together. pHash is built to give
  these the same key, so a memo that recomputes them does work for nothing;
* every pair of photos of different fine classes: a real change of product, which the memo must never hide;
* with --footage, a recording with truth.jsonl: KeyMemo's decisions at the given threshold, with one reference
  thumbnail a slot (KeyMemo's) and with REFS: each frame's distance to the closest reference, split by whether the
  slot's truth (label, state) is that reference's, and how many keys were reused across a change of truth.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from camera_changes import SLOT, camera_changes, window

from shelfsense.bench.setup import resolve_setup
from shelfsense.recognition.decode import decode_frame, slot_crops
from shelfsense.recognition.hashing import thumbnail
from shelfsense.recognition.pictures import slot_pictures
from shelfsense.tools.dataset import read_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "grocery-store"
# The footage rows simulate keeping the last N keyed pictures a slot (a shaking mount's positions, a product back in
# its facing): KeyMemo keeps 4 (docs/benchmarks.md, "Hit path", fourth round).
REFS = (1, 4, 8)
Thumb = Callable[[np.ndarray], np.ndarray]


def memo_thumbnail(crop_bgr: np.ndarray, size: int = 8) -> np.ndarray:
    """The memo thumbnail of the second and third hit-path rounds: bilinear to 8*size a side, then an area average."""
    h, w = crop_bgr.shape[:2]
    grid = 8 * size
    if h > grid and w > grid:
        crop_bgr = cv2.resize(crop_bgr, (grid, grid), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(crop_bgr, (size, size), interpolation=cv2.INTER_AREA)


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
    out["pictures.py 8x8 (KeyMemo)"] = lambda crop: slot_pictures([crop]).memo_thumbs[0]
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
        for refs in REFS:
            recomputed, u, c, wrong = simulate(thumb, frames, truth, threshold, refs)
            rows.append(
                f"| {name} | {refs} | {recomputed / len(frames):.2f} | {np.median(u):.2f} / "
                f"{np.percentile(u, 90):.2f} / {np.percentile(u, 99):.2f} | {np.mean(u > threshold) * 100:.1f} % | "
                f"{c.min():.2f} / {np.percentile(c, 10):.2f} | {wrong} |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="grocery-store dataset root")
    ap.add_argument("--footage", type=Path, help="a recording with truth.jsonl (shelfsense footage synth)")
    ap.add_argument("--threshold", type=float, default=3.0, help="cache.key_reuse_threshold to simulate")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    print("## Real grocery photos (memo distance, grey levels)\n")
    print("\n".join(photo_rows(args.data, args.seed)))
    if args.footage is not None:
        print(f"\n## Footage {args.footage}\n")
        print("\n".join(footage_rows(args.footage, args.threshold)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
