"""From the modes' runs to the report's figures: throughput, inferences, hits, agreement, accuracy, stability.

The no-cache run is the audit: with a deterministic interpreter its labels are what a fresh inference on each
slot's crop returns, so every other mode's labels are compared against them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from shelfsense.bench.baselines import MOTION_THRESHOLD, motion, motion_view
from shelfsense.bench.runner import TITLES, ModeRun
from shelfsense.bench.setup import Setup, Truth
from shelfsense.errors import BadImageError
from shelfsense.recognition.decode import decode_frame, slot_crops
from shelfsense.shelf.score import score_shelf
from shelfsense.types import Tier, percentiles

__all__ = ["accuracy", "analyse", "frame_cost", "hit_path", "stability"]

SAMPLE_DISAGREEMENTS = 25
Audit = dict[tuple[int, int], str | None]  # (Frame.index, slot) -> the fresh inference's label


def analyse(setup: Setup, runs: dict[str, ModeRun]) -> dict[str, Any]:
    """The report: per-mode throughput, inferences, hits, agreement with fresh inference, accuracy; stability."""
    audit_run = runs["no-cache"]
    audit = {
        (f, s): label
        for f, labels in zip(audit_run.frames, audit_run.labels, strict=True)
        for s, label in enumerate(labels)
    }
    base_fps = len(audit_run.frames) / audit_run.seconds if audit_run.seconds else None
    modes = {mode: _mode_entry(run, audit, base_fps, setup) for mode, run in runs.items()}
    config = setup.config
    return {
        "footage": str(setup.footage),
        "camera": setup.camera,
        "slots_from": setup.slots_from,
        "slots": [list(b) for b in setup.boxes],
        "frame_size": list(setup.frame_size),
        "truth": str(setup.truth_path) if setup.truth_path else None,
        "model": {
            "path": str(config.model.path),
            "threads": config.model.threads,
            "interpreter_threads": config.model.interpreter_threads,
        },
        "cache": {
            "hash": config.cache.hash,
            "max_distance": config.cache.max_distance,
            "colour_tolerance": config.cache.colour_tolerance,
            "memory_entries": config.cache.memory_entries,
        },
        "modes": modes,
        "stability": stability(audit_run, setup.truth, setup),
        "frame_cost": frame_cost(runs),
    }


def _slots(run: ModeRun) -> Iterable[tuple[int, int, str | None, str]]:
    """(Frame.index, slot, label, source) of every slot result of a run."""
    for frame, labels, sources in zip(run.frames, run.labels, run.sources, strict=True):
        for s, (label, source) in enumerate(zip(labels, sources, strict=True)):
            yield frame, s, label, source


def _mode_entry(run: ModeRun, audit: Audit, base_fps: float | None, setup: Setup) -> dict[str, Any]:
    slots = sum(len(x) for x in run.sources)
    sources = Counter(src for row in run.sources for src in row)
    agree = sum(label == audit.get((f, s)) for f, s, label, _ in _slots(run))
    fps = len(run.frames) / run.seconds if run.seconds else None
    hits = slots - sources.get(Tier.MISS, 0)
    entry: dict[str, Any] = {
        "title": TITLES[run.mode],
        "frames": len(run.frames),
        "skipped_frames": run.skipped,
        "slots": slots,
        "seconds": round(run.seconds, 4),
        "fps": fps,
        "fps_vs_no_cache": fps / base_fps if fps and base_fps else None,
        "inferences": run.inferences,
        "confirmations": run.confirmations,
        "hits": hits,
        "hit_rate": hits / slots if slots else None,
        "sources": dict(sources),
        "agreement": agree / slots if slots else None,
        "inferred_by_slot": _inferred_by_slot(run),
        "disagreements": _disagreements(run, audit, setup.truth),
    }
    if setup.truth is not None:
        entry.update(_truth_figures(run, audit, setup.truth))
    if setup.shelf_truth is not None and run.states:
        entry["shelf"] = _shelf_figures(run, setup)
    return entry


def _shelf_figures(run: ModeRun, setup: Setup) -> dict[str, Any] | None:
    """Slot states, debounced empty and events against the truth's states and events (docs/shelf.md)."""
    assert setup.shelf_truth is not None
    states, events = setup.shelf_truth
    if any(f not in states for f in run.frames):
        return None  # scored on footage whose every frame has state truth
    position = {f: i for i, f in enumerate(run.frames)}
    truth_events = [(k, s, position[f]) for k, s, f in events if f in position]
    detected = [(k, s, position[f]) for k, s, f in run.shelf_events]
    confirm = setup.config.shelf.confirm_frames
    truth = [states[f] for f in run.frames]
    return score_shelf(truth, run.states, run.debounced, detected, truth_events, confirm)


def _truth_figures(run: ModeRun, audit: Audit, truth: Truth) -> dict[str, Any]:
    """Accuracy, agreement on slots showing a product, and inferences spent on slots showing none."""
    # The population stability is measured on: slots showing a product (truth not null).
    product = [label == audit.get((f, s)) for f, s, label, _ in _slots(run) if f in truth and truth[f][s] is not None]
    return {
        "accuracy": accuracy(run, truth),
        "agreement_products": sum(product) / len(product) if product else None,
        "inferred_truth_null": sum(
            1 for f, s, _, src in _slots(run) if src == Tier.MISS and f in truth and truth[f][s] is None
        ),
    }


def stability(audit: ModeRun, truth: Truth | None, setup: Setup) -> dict[str, Any]:
    """How often fresh inference keeps its label for the same product in the same slot in consecutive frames.

    With truth: consecutive frames whose truth for the slot is equal and not null. Without: consecutive frames
    whose slot motion views differ by no more than the motion threshold (nothing visibly moved in the slot).
    """
    pairs = same = 0
    if truth is not None:
        basis = "truth unchanged and not null"
        for k in range(1, len(audit.frames)):
            f0, f1 = audit.frames[k - 1], audit.frames[k]
            t0, t1 = truth.get(f0), truth.get(f1)
            if f1 != f0 + 1 or t0 is None or t1 is None:
                continue
            for s, (a, b) in enumerate(zip(t0, t1, strict=True)):
                if a is not None and a == b:
                    pairs += 1
                    same += audit.labels[k - 1][s] == audit.labels[k][s]
    else:
        basis = f"slot thumbnail moved <= {MOTION_THRESHOLD:g} grey levels (no truth)"
        still = _still_pairs(setup)
        for k in range(1, len(audit.frames)):
            for s in range(len(setup.boxes)):
                if (audit.frames[k], s) in still:
                    pairs += 1
                    same += audit.labels[k - 1][s] == audit.labels[k][s]
    return {"pairs": pairs, "same": same, "rate": same / pairs if pairs else None, "basis": basis}


def _still_pairs(setup: Setup) -> set[tuple[int, int]]:
    """(frame, slot) whose motion view barely differs from the previous frame's: presumed the same product."""
    camera = setup.config.cameras[setup.camera]
    still: set[tuple[int, int]] = set()
    previous: tuple[int, list[np.ndarray]] | None = None
    with setup.open() as footage:
        for frame in footage:
            try:
                image = decode_frame(frame.data)
            except BadImageError:
                image = None
            if image is None or image.shape[:2] != setup.frame_size[::-1]:
                previous = None  # an undecodable or resized frame breaks the run of pairs
                continue
            views = [motion_view(crop) for crop in slot_crops(image, camera)[1]]
            if previous is not None and previous[0] == frame.index - 1:
                for s, (a, b) in enumerate(zip(previous[1], views, strict=True)):
                    if motion(a, b) <= MOTION_THRESHOLD:
                        still.add((frame.index, s))
            previous = (frame.index, views)
    return still


def _truth_kind(truth: str | None, label: str | None, fresh: str | None) -> str:
    if truth is None:
        return "truth null (slot empty or arm over > 30 %)"
    if truth == label:
        return "served label right, fresh inference wrong"
    if truth == fresh:
        return "fresh inference right, served label wrong"
    return "both wrong"


def _disagreements(run: ModeRun, audit: Audit, truth: Truth | None) -> dict[str, Any]:
    by_source: Counter[str] = Counter()
    by_slot: Counter[int] = Counter()
    by_truth: Counter[str] = Counter()
    sample = []
    for frame, s, label, source in _slots(run):
        fresh = audit.get((frame, s))
        if label == fresh:
            continue
        by_source[source] += 1
        by_slot[s] += 1
        item = {"frame": frame, "slot": s, "served": label, "fresh": fresh, "source": source}
        if truth is not None:
            row = truth.get(frame)
            item["truth"] = row[s] if row is not None else None
            by_truth[_truth_kind(item["truth"], label, fresh)] += 1
        if len(sample) < SAMPLE_DISAGREEMENTS:
            sample.append(item)
    return {
        "total": sum(by_source.values()),
        "by_source": dict(by_source),
        "by_slot": {str(k): v for k, v in sorted(by_slot.items())},
        "by_truth": dict(by_truth),
        "sample": sample,
    }


def _inferred_by_slot(run: ModeRun) -> dict[str, int]:
    counts = Counter(s for _, s, _, src in _slots(run) if src == Tier.MISS)
    return {str(k): v for k, v in sorted(counts.items())}


def accuracy(run: ModeRun, truth: Truth) -> dict[str, Any]:
    scored = correct = 0
    for frame, labels in zip(run.frames, run.labels, strict=True):
        row = truth.get(frame)
        if row is None:
            continue
        for label, t in zip(labels, row, strict=True):
            if t is not None:
                scored += 1
                correct += label == t
    return {"scored": scored, "correct": correct, "rate": correct / scored if scored else None}


def _mean_p50(values: Iterable[float]) -> dict[str, float | None]:
    figures = percentiles(values, (50,), extremes=True)
    return {"mean": figures["mean"], "p50": figures["p50"]}


def frame_cost(runs: dict[str, ModeRun]) -> dict[str, Any] | None:
    """What a frame costs without the cache and on the perceptual cache's all-hit frames, and the ceiling that sets.

    A frame whose every slot is a hit still pays the JPEG decode and the slot keys, so no hit rate can take
    the cache past (no-cache frame time) / (all-hit frame time): with a model that infers a slot in well under
    a millisecond that ceiling is low, and it says so before anyone tunes the cache to chase it.
    """
    base, ours = runs.get("no-cache"), runs.get("perceptual")
    if base is None or ours is None or not base.frame_ms:
        return None
    hit = [k for k, row in enumerate(ours.sources) if all(Tier(src).is_hit for src in row)]
    rest = [k for k in range(len(ours.sources)) if k not in set(hit)]
    out: dict[str, Any] = {
        "no_cache_ms": _mean_p50(base.frame_ms),
        "all_hit_frames": len(hit),
        "other_frames": len(rest),
        "all_hit_ms": None,
        "other_ms": None,
        "ceiling": None,
        "hit_path": None,  # all-hit frames against their JPEGs decoded alone, see hit_path()
    }
    if hit:
        stages = np.array([ours.stage_ms[k] for k in hit])
        out["all_hit_ms"] = _mean_p50(ours.frame_ms[k] for k in hit)
        for i, stage in enumerate(("decode", "keys", "lookups")):
            out["all_hit_ms"][stage] = percentiles(stages[:, i], (50,))["p50"]
        out["ceiling"] = out["no_cache_ms"]["mean"] / out["all_hit_ms"]["mean"]
        if ours.hit_path:
            out["hit_path"] = hit_path(np.array([ours.hit_path[k] for k in hit]))
    if rest:
        out["other_ms"] = _mean_p50(ours.frame_ms[k] for k in rest)
    return out


def hit_path(rows: np.ndarray) -> dict[str, float]:
    """P50 of recognize() on all-hit frames against P50 of decoding the same JPEGs alone, wall and process CPU.

    `rows` holds, per all-hit frame: decode-alone wall ms, its CPU ms, recognize() wall ms, its CPU ms, timed
    back to back. recognize() alone is the frame's own path (background confirmations are not on it). On a
    machine other processes keep busy, a 2-3 ms stretch of work is preempted far more often than a 1 ms one, so
    the wall ratio overstates the code's cost; process CPU time is what the code itself spent.
    """
    p50 = np.median(rows, axis=0)
    return {
        "decode_ms": float(p50[0]),
        "frame_ms": float(p50[2]),
        "ratio": float(p50[2] / p50[0]) if p50[0] else float("nan"),
        "decode_cpu_ms": float(p50[1]),
        "frame_cpu_ms": float(p50[3]),
        "cpu_ratio": float(p50[3] / p50[1]) if p50[1] else float("nan"),
        "frames": int(rows.shape[0]),
    }
