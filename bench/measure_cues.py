"""The slot-state motion cue on real photos: how often what a fixed camera does to a still facing reads as motion.

Reproduce (under a minute)::

    .venv/bin/python bench/measure_cues.py > /tmp/cues.md

The classifier (recognition/slotstate.py) calls a slot moving when more than shelf.changed_share (4 %) of its 16x12
thumbnail's pixels changed by over DIFF_LEVEL. Since the fourth hit-path round that thumbnail is an area average of
the slot's bilinear picture (recognition/pictures.py); since the fifth, that picture is 32x32, made from the frame
decoded at a quarter of its size for a 136x186 slot (the recognizer with the cache on), or from the crop area-averaged
by 4 (cache off, `look_of`). Before the fourth, it was an area average of every pixel (the slot in grey, shrunk by a
whole factor, then area-resized). For every val photo of the grocery store dataset as a 136x186 facing, this prints
the changed share between the facing and itself after each camera change (bench/camera_changes.py, plus a sub-pixel
shake and an exposure drop), all three ways.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from camera_changes import SLOT, camera_changes, window

from shelfsense.recognition.decode import decode_frame
from shelfsense.recognition.pictures import picture_reduction
from shelfsense.recognition.slotstate import EDGE_WIDTH, THUMB, changed, look_of
from shelfsense.tools.dataset import read_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "grocery-store"


def area_thumb(crop: np.ndarray) -> np.ndarray:
    """The cue thumbnail of the third hit-path round: an area average of every pixel, divided by its mean."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    k = max(1, w // EDGE_WIDTH)
    small = cv2.resize(grey[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    thumb = cv2.resize(small, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
    thumb *= 128.0 / max(float(thumb.mean()), 1.0)
    return thumb


def picture_thumb(crop: np.ndarray) -> np.ndarray:
    return look_of(crop, edges=0.0).thumb


def reduced_thumb(crop: np.ndarray) -> np.ndarray:
    """The cue thumbnail as the recognizer makes it since the fifth hit-path round: the facing sent as a JPEG (q90),
    decoded at its picture reduction (pictures.picture_reduction: 1/4 for a 136x186 slot), then pictured."""
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(crop), quality=90, colorspace="BGR")
    h, w = crop.shape[:2]
    return look_of(decode_frame(data, None, picture_reduction([(0, 0, w, h)])), edges=0.0).thumb


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    size = (img.shape[1], img.shape[0])
    return window(cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def rows(data: Path, seed: int, share: float) -> list[str]:
    rng = np.random.default_rng(seed)
    w, h = SLOT
    photos = [
        cv2.resize(cv2.imread(str(item.path), cv2.IMREAD_COLOR), (w + 4, h + 4), interpolation=cv2.INTER_AREA)
        for item in read_split(data, "val")
    ]
    changes = camera_changes(rng)

    def subpixel(img: np.ndarray) -> np.ndarray:
        angle, amount = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
        return shifted(img, amount * np.cos(angle), amount * np.sin(angle))

    changes["sub-pixel shake 0.5-1.5 px"] = subpixel
    changes["exposure x0.6 + 1 px"] = lambda img: window(cv2.convertScaleAbs(img, alpha=0.6), 1, 1)
    out = [
        f"| change | area thumbnail: changed share P50 / P99 / max, photos over {share:.0%} | the crop pictured "
        "(cache off, look_of): the same | JPEG q90 decoded at the picture reduction, pictured (recognizer): the same |",
        "|---|---|---|---|",
    ]
    for name, change in changes.items():
        shares = np.array(
            [
                [changed(f(window(img)), f(moved)) for f in (area_thumb, picture_thumb, reduced_thumb)]
                for img in photos
                for moved in (change(img),)
            ]
        )
        cells = [
            f"{np.median(s) * 100:.1f} / {np.percentile(s, 99) * 100:.1f} / {s.max() * 100:.1f} %, "
            f"{np.mean(s > share) * 100:.1f} %"
            for s in shares.T
        ]
        out.append(f"| {name} | {' | '.join(cells)} |")
    out.append(f"\n{len(photos)} photos")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="grocery-store dataset root")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--changed-share", type=float, default=0.04, help="shelf.changed_share to count against")
    args = ap.parse_args(argv)
    print("\n".join(rows(args.data, args.seed, args.changed_share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
