"""Shelf state and events against synthetic footage truth: per-frame slot states, debounced empty, events.

    python bench/measure_shelf.py [--products ../shared/datasets/grocery-store/val] [--seeds 1 2 3 4 5]
                                  [--frames 240] [--confirm-frames 3] [--out bench/results/shelf]

Each seed's footage is made with `shelfsense footage synth` (takes, restocks, arms) and run frame by frame through
the real Recognizer (bundled model, perceptual cache) and the real shelf tracker, as the service runs them.

Truth, from the synth's per-slot class and arm coverage: a slot is `occluded` when an arm hides more than 30 % of
it (the synth's own rule), else `empty` or occupied. A truth event is a change of the visible state between two
visible frames of a slot: occupied -> empty is a take (`product_removed`), empty -> occupied a restock
(`restocked`), at the first visible frame after the change. A detected event matches a truth event of its slot and
type within `--window` frames after it; its delay is the frame difference. Unmatched events are false events
(reported per 1000 slot-frames). Debounced `empty` is scored on the slot-frames whose visible truth has held for
more than confirm_frames + 1 frames (a change is not yet due before then), and also on all visible slot-frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from shelfsense.config import parse_config  # noqa: E402
from shelfsense.footage import open_footage  # noqa: E402
from shelfsense.recognition.recognizer import Recognizer  # noqa: E402
from shelfsense.recognition.slotstate import SlotState  # noqa: E402
from shelfsense.shelf.tracker import ShelfTracker, SlotReading, TrackerRules  # noqa: E402
from shelfsense.synth.synth import OCCLUDED_ABOVE, synthesize  # noqa: E402


def truth_states(result) -> list[list[str]]:
    """Per frame, per slot: 'occluded', 'empty' or 'occupied'."""
    return [
        [
            "occluded" if cover > OCCLUDED_ABOVE else ("empty" if label is None else "occupied")
            for label, cover in zip(labels, covers, strict=True)
        ]
        for labels, covers in zip(result.truth, result.coverage, strict=True)
    ]


def truth_events(states: list[list[str]]) -> list[tuple[str, int, int]]:
    """(type, slot, frame) of visible changes."""
    events = []
    for slot in range(len(states[0])):
        last = None
        for f, row in enumerate(states):
            s = row[slot]
            if s == "occluded":
                continue
            if last is not None and s != last:
                events.append(("product_removed" if s == "empty" else "restocked", slot, f))
            last = s
    return events


async def run_seed(products: Path, seed: int, frames: int, confirm: int, work: Path, reverify_hits: int) -> dict:
    footage = synthesize(products, work / f"seed-{seed}", frames=frames, seed=seed, overwrite=True, progress=False)
    camera = footage.camera
    config = parse_config(
        {
            "cache": {"disk_path": "", "reverify_hits": reverify_hits},
            "telemetry": {"sysfs_root": str(work / "no-sysfs")},
            "shelf": {"confirm_frames": confirm, "confirm_s": 0},
            "cameras": {camera: {"slots": [list(b) for b in footage.slots]}},
        },
        base_dir=ROOT,
    )
    recognizer = await Recognizer.create(config)
    tracker = ShelfTracker(TrackerRules(confirm_frames=confirm, confirm_s=0))
    per_frame, debounced, events = [], [], []
    right = labelled = 0  # served labels against the truth class, on visible occupied slots
    try:
        with open_footage(footage.out) as reader:
            for frame in reader:
                result = await recognizer.recognize(camera, frame.data)
                await recognizer.settle()
                readings = [SlotReading(s.state, s.label, s.score) for s in result.slots]
                for change in tracker.observe(camera, readings, frame.index, frame.t):
                    events.append((change["type"], change["slot"], change["frame"]))
                per_frame.append([str(s.state) for s in result.slots])
                for s, label, cover in zip(
                    result.slots, footage.truth[frame.index], footage.coverage[frame.index], strict=True
                ):
                    if label is not None and cover <= OCCLUDED_ABOVE:
                        labelled += 1
                        right += s.label == label
                debounced.append([str(s.state) if s.state else None for s in tracker.cameras[camera].slots])
        reverify = {
            "reverifications": recognizer.reverifications,
            "reverify_changed": recognizer.reverify_changed,
            "label_accuracy": round(right / labelled, 4),
        }
    finally:
        await recognizer.close()
    return score(truth_states(footage), per_frame, debounced, events, confirm) | {"seed": seed, **reverify}


def score(truth, per_frame, debounced, events, confirm: int, window: int = 10) -> dict:
    slots = len(truth[0])
    # Per-frame state: occupied = product or unknown.
    agree = total = 0
    for t_row, p_row in zip(truth, per_frame, strict=True):
        for t, p in zip(t_row, p_row, strict=True):
            p = "occupied" if p in (SlotState.PRODUCT, SlotState.UNKNOWN) else p
            agree += t == p
            total += 1
    # Debounced empty, on visible slot-frames; "settled" excludes the frames a change may still be pending.
    counts = {"all": [0, 0, 0], "settled": [0, 0, 0]}  # tp, fp, fn
    for slot in range(slots):
        last, held = None, 0
        for f in range(len(truth)):
            t = truth[f][slot]
            if t == "occluded":
                held += 1
                continue
            held = held + 1 if t == last else 0
            last = t
            d = debounced[f][slot]
            for name in ("all", "settled") if held > confirm + 1 else ("all",):
                c = counts[name]
                c[0] += t == "empty" and d == "empty"
                c[1] += t != "empty" and d == "empty"
                c[2] += t == "empty" and d != "empty"
    # A change before the tracker could learn the slot's first state (confirm_frames visible frames) is no event.
    truth_ev = [e for e in truth_events(truth) if sum(r[e[1]] != "occluded" for r in truth[: e[2]]) >= confirm]
    matched, delays, used = 0, [], set()
    for kind, slot, f in events:
        best = next(
            (
                i
                for i, (k, s, tf) in enumerate(truth_ev)
                if i not in used and k == kind and s == slot and 0 <= f - tf <= window
            ),
            None,
        )
        if best is not None:
            used.add(best)
            matched += 1
            delays.append(f - truth_ev[best][2])
    relevant = [e for e in events if e[0] in ("product_removed", "restocked")]
    out = {
        "slot_frames": total,
        "state_accuracy": round(agree / total, 4),
        "truth_events": len(truth_ev),
        "events": len(relevant),
        "matched": matched,
        "false_events": len(relevant) - matched,
        # The synth never swaps a product in place (a restock follows an empty spell), so each is false.
        "product_changed": sum(e[0] == "product_changed" for e in events),
        "delays": delays,
    }
    for name, (tp, fp, fn) in counts.items():
        out[f"empty_{name}"] = (tp, fp, fn)
    return out


def pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=Path, default=ROOT.parent / "shared/datasets/grocery-store/val")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--confirm-frames", type=int, default=3)
    ap.add_argument("--reverify-hits", type=int, default=1024, help="cache.reverify_hits (default: the service's)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            await run_seed(args.products, s, args.frames, args.confirm_frames, Path(tmp), args.reverify_hits)
            for s in args.seeds
        ]
    print(
        f"{'seed':>4} {'state acc':>9} {'empty P/R settled':>18} {'empty P/R all':>14} {'events P/R':>11} "
        f"{'median delay':>12} {'false/1000':>10}"
    )
    for r in rows:
        ps, rs = pr(*r["empty_settled"])
        pa, ra = pr(*r["empty_all"])
        pe = r["matched"] / r["events"] if r["events"] else 1.0
        re_ = r["matched"] / r["truth_events"] if r["truth_events"] else 1.0
        md = statistics.median(r["delays"]) if r["delays"] else None
        print(
            f"{r['seed']:>4} {r['state_accuracy']:>9.3f} {ps:>8.3f} / {rs:.3f} {pa:>6.3f} / {ra:.3f} "
            f"{pe:>5.2f} / {re_:.2f} {md!s:>12} {1000 * r['false_events'] / r['slot_frames']:>10.2f}"
        )
    tot = {k: [sum(r[k][i] for r in rows) for i in range(3)] for k in ("empty_settled", "empty_all")}
    matched = sum(r["matched"] for r in rows)
    n_ev, n_truth = sum(r["events"] for r in rows), sum(r["truth_events"] for r in rows)
    delays = [d for r in rows for d in r["delays"]]
    false = sum(r["false_events"] for r in rows)
    frames = sum(r["slot_frames"] for r in rows)
    summary = {
        "confirm_frames": args.confirm_frames,
        "seeds": args.seeds,
        "frames": args.frames,
        "state_accuracy": round(sum(r["state_accuracy"] * r["slot_frames"] for r in rows) / frames, 4),
        "empty_settled_precision_recall": [round(v, 4) for v in pr(*tot["empty_settled"])],
        "empty_all_precision_recall": [round(v, 4) for v in pr(*tot["empty_all"])],
        "events_precision_recall": [round(matched / n_ev, 4) if n_ev else 1.0, round(matched / n_truth, 4)],
        "median_delay_frames": statistics.median(delays) if delays else None,
        "max_delay_frames": max(delays) if delays else None,
        "false_events_per_1000_slot_frames": round(1000 * false / frames, 3),
        "product_changed_per_1000_slot_frames": round(1000 * sum(r["product_changed"] for r in rows) / frames, 3),
        "truth_events": n_truth,
        "reverify_hits": args.reverify_hits,
        "reverifications": sum(r["reverifications"] for r in rows),
        "reverify_changed": sum(r["reverify_changed"] for r in rows),
        "label_accuracy": round(statistics.mean(r["label_accuracy"] for r in rows), 4),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "seeds": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
