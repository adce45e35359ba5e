"""Shelf state and events against synthetic footage truth, over several seeds: the figures of docs/shelf.md.

    python bench/measure_shelf.py [--products ../shared/datasets/grocery-store/val] [--seeds 1 2 3 4 5 6 7 8]
                                  [--frames 240] [--confirm-frames 3] [--swap-rate 0] [--reverify-hits 1024]
                                  [--json bench/measure_shelf.json]

Each seed's footage is made by `shelfsense footage synth` (takes, restocks, arms; swaps with --swap-rate) and run
frame by frame through the real Recognizer (bundled model, perceptual cache) and the real shelf tracker, as the
service runs them; `shelfsense.shelf.score` scores them against the footage's truth (states and events per frame).
`shelfsense bench FOOTAGE` reports the same figures for one footage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from shelfsense.config import parse_config
from shelfsense.footage import open_footage
from shelfsense.recognition.recognizer import Recognizer
from shelfsense.shelf.score import score_shelf
from shelfsense.shelf.tracker import ShelfTracker, SlotReading, TrackerRules
from shelfsense.synth.simulation import OCCLUDED_ABOVE
from shelfsense.synth.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]


async def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict:
    footage = synthesize(
        args.products, work / f"seed-{seed}", frames=args.frames, seed=seed, swap_rate=args.swap_rate, progress=False
    )
    camera, confirm = footage.camera, args.confirm_frames
    config = parse_config(
        {
            "cache": {"disk_path": "", "reverify_hits": args.reverify_hits},
            "telemetry": {"sysfs_root": str(work / "no-sysfs")},
            "shelf": {"confirm_frames": confirm, "confirm_s": 0},
            "cameras": {camera: {"slots": [list(b) for b in footage.slots]}},
        },
        base_dir=ROOT,
    )
    recognizer = await Recognizer.create(config)
    tracker = ShelfTracker(TrackerRules(confirm_frames=confirm, confirm_s=0))
    per_frame, debounced, detected = [], [], []
    right = labelled = 0  # served labels against the truth class, on visible product slots
    try:
        with open_footage(footage.out) as reader:
            for frame in reader:
                result = await recognizer.recognize(camera, frame.data)
                await recognizer.settle()
                readings = [SlotReading(s.state, s.label, s.score) for s in result.slots]
                detected += [
                    (c["type"], c["slot"], c["frame"]) for c in tracker.observe(camera, readings, frame.index, frame.t)
                ]
                per_frame.append([str(s.state) for s in result.slots])
                debounced.append([s.state and str(s.state) for s in tracker.cameras[camera].slots])
                truth, cover = footage.truth[frame.index], footage.coverage[frame.index]
                for s, label, c in zip(result.slots, truth, cover, strict=True):
                    if label is not None and c <= OCCLUDED_ABOVE:
                        labelled, right = labelled + 1, right + (s.label == label)
        extra = {
            "reverifications": recognizer.reverify.runs,
            "reverify_changed": recognizer.reverify.changed,
            "label_accuracy": round(right / labelled, 4),
        }
    finally:
        await recognizer.close()
    truth_events = [(kind, slot, f) for kind, slot, f, _, _ in footage.events]
    return score_shelf(footage.states, per_frame, debounced, detected, truth_events, confirm) | extra | {"seed": seed}


def summary(rows: list[dict], args: argparse.Namespace) -> dict:
    def pooled(key: str) -> dict:
        tp, fp, fn = (sum(r[key][k] for r in rows) for k in ("tp", "fp", "fn"))
        return {"precision": round(tp / (tp + fp), 4) if tp + fp else None, "recall": round(tp / (tp + fn), 4)}

    events = {}
    for kind in ("product_removed", "restocked", "product_changed"):
        truth = sum(r["events"][kind]["truth"] for r in rows)
        hits = sum(round((r["events"][kind]["recall"] or 0) * r["events"][kind]["truth"]) for r in rows)
        detected = sum(r["events"][kind]["detected"] for r in rows)
        events[kind] = {
            "truth": truth,
            "detected": detected,
            "precision": round(hits / detected, 4) if detected else None,
            "recall": round(hits / truth, 4) if truth else None,
        }
    delays = [r["median_delay_frames"] for r in rows if r["median_delay_frames"] is not None]
    frames = sum(r["slot_frames"] for r in rows)
    return {
        "seeds": args.seeds,
        "frames": args.frames,
        "confirm_frames": args.confirm_frames,
        "swap_rate": args.swap_rate,
        "state_accuracy": round(sum(r["state_accuracy"] * r["slot_frames"] for r in rows) / frames, 4),
        "empty_settled": pooled("empty_settled"),
        "empty_all": pooled("empty_all"),
        "events": events,
        "median_of_seed_median_delays": statistics.median(delays) if delays else None,
        "false_events_per_1000_slot_frames": round(
            sum(r["false_events_per_1000_slot_frames"] * r["slot_frames"] for r in rows) / frames, 3
        ),
        "reverify_hits": args.reverify_hits,
        "reverifications": sum(r["reverifications"] for r in rows),
        "reverify_changed": sum(r["reverify_changed"] for r in rows),
        "label_accuracy_mean": round(statistics.mean(r["label_accuracy"] for r in rows), 4),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=Path, default=ROOT.parent / "shared/datasets/grocery-store/val")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--confirm-frames", type=int, default=3)
    ap.add_argument("--swap-rate", type=float, default=0.0, help="footage synth --swap-rate")
    ap.add_argument("--reverify-hits", type=int, default=1024, help="cache.reverify_hits (default: the service's)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [await run_seed(args, seed, Path(tmp)) for seed in args.seeds]
    print(
        f"{'seed':>4} {'state':>6} {'empty P/R (settled)':>20} {'removed P/R':>12} {'restocked P/R':>14} "
        f"{'changed P/R':>12} {'delay':>5} {'false/1000':>10}"
    )
    for r in rows:
        e = r["events"]

        def pr(kind: str, e: dict = e) -> str:
            return f"{e[kind]['precision'] or 0:.2f}/{e[kind]['recall'] or 0:.2f}"

        print(
            f"{r['seed']:>4} {r['state_accuracy']:>6.3f} {r['empty_settled']['precision']:>9.3f} / "
            f"{r['empty_settled']['recall']:.3f} {pr('product_removed'):>12} {pr('restocked'):>14} "
            f"{pr('product_changed'):>12} {r['median_delay_frames']!s:>5} {r['false_events_per_1000_slot_frames']:>10}"
        )
    result = summary(rows, args)
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": result, "seeds": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
