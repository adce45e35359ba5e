"""Slot looks with the edge share carried over with the key (recognizer + KeyMemo) against looks from scratch.

Reproduce (a minute or two)::

    .venv/bin/python bench/measure_looks.py --footage /tmp/f > /tmp/looks.md

The Recognizer computes a slot's edge share only from the picture its key is computed from, and reuses it while
the key memo reuses that key (docs/benchmarks.md, "Hit path", third and fourth rounds). This prints:

* on footage with truth.jsonl: every frame's looks both ways, in order, with the Recognizer's KeyMemo deciding
  the reuse: thumbnails equal bit for bit, edge shares of recomputed slots equal, how far a reused share is from
  the one computed on the frame itself, and the slot states a SlotStateClassifier decides from either (the same
  top score everywhere, so that only the looks differ);
* on real photos (every val photo of the grocery store dataset and the images of shared/images, each as a
  136x186 slot; also blurred copies, whose edge shares reach down to the empty threshold): for every change the
  memo reuses a key across (1-2 px shifts, JPEG q75, noise), the edge share of the original picture (what
  the recognizer reuses) against the changed picture's own, and whether the empty decision differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from camera_changes import SLOT, camera_changes, window

from shelfsense.bench.setup import resolve_setup
from shelfsense.config import load_config
from shelfsense.recognition.decode import decode_frame, slot_crops
from shelfsense.recognition.hashing import Hasher
from shelfsense.recognition.keymemo import KeyMemo
from shelfsense.recognition.pictures import slot_pictures
from shelfsense.recognition.slotstate import SlotStateClassifier, StateRules, look_of, looks_of
from shelfsense.tools.dataset import read_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "grocery-store"
DEFAULT_IMAGES = ROOT.parent / "shared" / "images"


def footage_rows(footage: Path) -> list[str]:
    setup = resolve_setup(footage)
    config = load_config()
    camera = setup.config.cameras[setup.camera]
    memo = KeyMemo(Hasher(config.cache.hash), config.cache.key_reuse_threshold)
    rules = StateRules(empty_edges=config.shelf.empty_edges, changed_share=config.shelf.changed_share)
    before, after = SlotStateClassifier(rules), SlotStateClassifier(rules)
    frames = slots = reused = thumbs_differ = recomputed_differ = flips = states_differ = 0
    gaps: list[float] = []
    for f in setup.open():
        frame = decode_frame(f.data)
        boxes, crops = slot_crops(frame, camera, copy=False)
        pictures = slot_pictures(crops)
        keyed = [
            memo.key_and_reference((setup.camera, i), c, t, p)[1]
            for i, (c, t, p) in enumerate(zip(crops, pictures.memo_thumbs, pictures.pictures, strict=True))
        ]
        # As the Recognizer: a keyed picture's share, once computed, goes with it while the memo reuses its key.
        carried_now = [k is not None and k.edge_share is not None for k in keyed]
        new = looks_of(crops, pictures.cue_greys, [k.edge_share if k is not None else None for k in keyed])
        for k, look in zip(keyed, new, strict=True):
            if k is not None and k.edge_share is None:
                k.edge_share = look.edges
        old = [look_of(c) for c in crops]
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            thumbs_differ += not np.array_equal(a.thumb, b.thumb)
            if carried_now[i]:
                reused += 1
                gaps.append(abs(a.edges - b.edges))
                flips += (a.edges < rules.empty_edges) != (b.edges < rules.empty_edges)
            else:
                recomputed_differ += a.edges != b.edges
        scores = [1.0] * len(crops)
        states_differ += before.classify("c", old, scores) != after.classify("c", new, scores)
        frames += 1
        slots += len(crops)
    g = np.array(gaps) if gaps else np.zeros(1)
    return [
        "| frames | slot-frames | edge shares reused | thumbnails not bit-identical | recomputed edge shares "
        "not identical | reused share vs own P50 / P99 / max | empty decisions differing | frames whose states "
        "differ |",
        "|---|---|---|---|---|---|---|---|",
        f"| {frames} | {slots} | {reused} ({reused / slots * 100:.1f} %) | {thumbs_differ} | {recomputed_differ} | "
        f"{np.median(g):.4f} / {np.percentile(g, 99):.4f} / {g.max():.4f} | {flips} | {states_differ} |",
    ]


def _photos(data: Path, images: Path) -> list[tuple[str, np.ndarray]]:
    w, h = SLOT
    paths = [item.path for item in read_split(data, "val")]
    paths += sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    return [
        (p.name, cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (w + 4, h + 4), interpolation=cv2.INTER_AREA))
        for p in paths
    ]


def photo_rows(data: Path, images: Path, threshold: float, empty_edges: float, seed: int) -> list[str]:
    changes = camera_changes(np.random.default_rng(seed))
    photos = _photos(data, images)
    sets = {"photos": photos}
    for sigma in (2, 4, 8):
        sets[f"photos blurred (sigma {sigma})"] = [(n, cv2.GaussianBlur(im, (0, 0), sigma)) for n, im in photos]
    rows = [
        "| pictures | change | pairs | memo reuses the key | own edge share min / P50 | reused vs own share "
        "P50 / P99 / max | empty decisions differing |",
        "|---|---|---|---|---|---|---|",
    ]
    for set_name, pictures in sets.items():
        for change_name, change in changes.items():
            gaps, own, flips = [], [], 0
            for _, im in pictures:
                a, b = window(im), change(im)
                memo = KeyMemo(Hasher(), threshold)
                if memo.key_and_reference(("c", 0), a)[1] is not memo.key_and_reference(("c", 0), b)[1]:
                    continue  # the key, and with it the edge share, is recomputed
                ea, eb = look_of(a).edges, look_of(b).edges
                gaps.append(abs(ea - eb))
                own.append(eb)
                flips += (ea < empty_edges) != (eb < empty_edges)
            g, o = np.array(gaps or [0.0]), np.array(own or [0.0])
            rows.append(
                f"| {set_name} | {change_name} | {len(pictures)} | {len(gaps)} | {o.min():.3f} / {np.median(o):.3f} "
                f"| {np.median(g):.4f} / {np.percentile(g, 99):.4f} / {g.max():.4f} | {flips} |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="grocery-store dataset root")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of other photos")
    ap.add_argument("--footage", type=Path, help="a recording with truth.jsonl (shelfsense footage synth)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    config = load_config()
    if args.footage is not None:
        print(f"## Footage {args.footage}\n")
        print("\n".join(footage_rows(args.footage)))
    print("\n## Real photos as slots (edge share reused across changes the key memo ignores)\n")
    rows = photo_rows(args.data, args.images, config.cache.key_reuse_threshold, config.shelf.empty_edges, args.seed)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
