"""The same shelf footage through the recognizer with no cache and with ShelfSense's cache, in one run.

Footage: `--shelves` shelves of 8 different grocery products (2x4 slots, 640x480), each shown `--repeats`
times in a row, in two kinds (see `footage`): "fixed", as a fixed shelf camera sends it, and "harsh", every
frame re-exposed, shifted and re-compressed so that every slot key is recomputed. Reports per-frame cost of hit
frames (every slot from cache) and miss frames (every slot inferred) with the breakdown, the hit rate, and the
ratio, all measured side by side.

    .venv/bin/python bench/bench_cache.py [--model M --labels L] [--shelves 12 --repeats 10] [--footage both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from shelfsense.config import parse_config
from shelfsense.footage.jpeg import encode_jpeg
from shelfsense.recognition.recognizer import Recognizer
from shelfsense.tools.dataset import read_split
from shelfsense.types import Tier, percentiles

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shelves(n: int, seed: int = 0) -> list[np.ndarray]:
    images = read_split(SHARED / "datasets" / "grocery-store", "val")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=n * 8, replace=False)
    frames = []
    for s in range(n):
        frame = np.zeros((480, 640, 3), np.uint8)
        for i in range(8):
            img = cv2.imread(str(images[picks[s * 8 + i]].path))
            r, c = divmod(i, 4)
            frame[r * 240 : (r + 1) * 240, c * 160 : (c + 1) * 160] = cv2.resize(
                img, (160, 240), interpolation=cv2.INTER_AREA
            )
        frames.append(frame)
    return frames


def _encode(image: np.ndarray, quality: int) -> bytes:
    return encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality)


def footage(n_shelves: int, repeats: int, kind: str = "fixed", seed: int = 0) -> list[bytes]:
    """JPEG frames of each shelf `repeats` times in a row.

    fixed: what a fixed shelf camera sends: sensor noise on every frame, exposure drifting slowly (a random walk
      of 1 % a frame within +-8 %), a 1 px shake on one frame in ten, JPEG quality 85.
    harsh: every frame independently re-exposed (+-6 %), shifted (+-1 px) and re-compressed (quality 70-90):
      no two frames of a shelf share a slot picture, so every key is recomputed (the hit path's worst case).
    """
    rng = np.random.default_rng(seed)
    out = []
    for frame in shelves(n_shelves, seed):
        exposure = 1.0
        for _ in range(repeats):
            noise = rng.normal(0, 2.5, frame.shape)
            if kind == "harsh":
                dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
                moved = np.roll(frame, (dy, dx), axis=(0, 1)).astype(np.float32)
                out.append(_encode(moved * rng.uniform(0.94, 1.06) + noise, int(rng.integers(70, 91))))
            else:
                exposure = float(np.clip(exposure + rng.normal(0, 0.01), 0.92, 1.08))
                shake = (1, 0) if rng.random() < 0.1 else (0, 0)
                moved = np.roll(frame, shake, axis=(0, 1)).astype(np.float32)
                out.append(_encode(moved * exposure + noise, 85))
    return out


async def run(mode: str, frames: list[bytes], model: dict, cache_dir: Path, threads: int) -> dict:
    config = parse_config(
        {
            "model": {**model, "threads": threads},
            "cache": {"enabled": mode != "no cache", "disk_path": str(cache_dir)},
            "cameras": {"shelf": {"grid": {"rows": 2, "cols": 4}}},
        }
    )
    r = await Recognizer.create(config)
    try:
        await r.recognize("shelf", frames[0])  # warm the interpreters; not counted
        if r.cache is not None:  # and forget what the warm-up stored
            await r.close()
            shutil.rmtree(cache_dir, ignore_errors=True)
            r = await Recognizer.create(config)
        results = []
        for data in tqdm(frames, desc=mode, unit="frame", file=sys.stderr, leave=False):
            results.append(await r.recognize("shelf", data))
        invokes = r.pool.invokes
    finally:
        await r.close()
    hit = [x for x in results if x.all_hits]
    miss = [x for x in results if all(s.cache == Tier.MISS for s in x.slots)]
    slots = [s for x in results for s in x.slots]

    def breakdown(rows):
        parts = ("decode", "hash", "lookup", "inference", "total")
        return {k: percentiles((x.timings()[k] for x in rows), (50,))["p50"] for k in parts}

    return {
        "mode": mode,
        "frames": len(results),
        "fps": len(results) / (sum(x.latency_ms for x in results) / 1000.0),
        "inferences": invokes,
        "hit_rate": sum(s.cache.is_hit for s in slots) / len(slots),
        "hit": {"n": len(hit), **percentiles((x.latency_ms for x in hit), (50, 99)), "parts": breakdown(hit)},
        "miss": {"n": len(miss), **percentiles((x.latency_ms for x in miss), (50, 99)), "parts": breakdown(miss)},
    }


def report(kind: str, frames: list[bytes], rows: list[dict], args: argparse.Namespace) -> None:
    base, ours = rows
    print(
        f"\n{kind} footage: {len(frames)} frames of 8 slots (640x480), {args.shelves} shelves x {args.repeats} "
        f"views, model {Path(args.model).name}, {args.threads} inference threads\n"
    )
    print("| mode | frames/s | slot inferences | hit rate | hit frame P50 / P99 ms | miss frame P50 / P99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        hit = f"{r['hit']['p50']:.2f} / {r['hit']['p99']:.2f} (n={r['hit']['n']})" if r["hit"]["n"] else "-"
        print(
            f"| {r['mode']} | {r['fps']:.1f} | {r['inferences']} | {r['hit_rate']:.1%} | {hit} | "
            f"{r['miss']['p50']:.2f} / {r['miss']['p99']:.2f} (n={r['miss']['n']}) |"
        )
    print("\nP50 breakdown, ms per frame (cache run; inference is the sum over the frame's slots):\n")
    print("| path | decode | hash (8 slots) | lookup | inference | total |")
    print("|---|---|---|---|---|---|")
    for path in ("hit", "miss"):
        p = ours[path]["parts"]
        cells = " | ".join(f"{p[k]:.2f}" for k in ("decode", "hash", "lookup", "inference", "total"))
        print(f"| {path} | {cells} |")
    print(
        f"\nmiss/hit frame cost (P50, same run): {ours['miss']['p50'] / ours['hit']['p50']:.1f}x; "
        f"throughput cache/no-cache: {ours['fps'] / base['fps']:.1f}x"
    )


def parser(doc: str) -> argparse.ArgumentParser:
    """The bench scripts' parser: their docstring as help, and the model (the shared MobileNetV2 by default)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"))
    ap.add_argument("--labels", default=str(SHARED / "models" / "imagenet_labels.txt"))
    return ap


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--shelves", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--footage", choices=["fixed", "harsh", "both"], default="both")
    args = ap.parse_args()
    model = {"path": args.model, "labels": args.labels}
    for kind in ("fixed", "harsh") if args.footage == "both" else (args.footage,):
        frames = footage(args.shelves, args.repeats, kind)
        with tempfile.TemporaryDirectory() as tmp:
            rows = [
                asyncio.run(run(m, frames, model, Path(tmp) / "cache", args.threads)) for m in ("no cache", "cache")
            ]
        report(kind, frames, rows, args)


if __name__ == "__main__":
    main()
