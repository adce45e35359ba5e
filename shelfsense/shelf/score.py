"""Shelf state and events scored against footage truth: the figures `shelfsense bench` and `shelfsense replay` report.

Truth per frame and slot is `product`, `empty` or `occluded` (footage truth rows' `states`), plus truth events
(`take`, `restock`, `swap`) at the frame the change happens. Scored:

* per-frame state accuracy (`product` and `unknown` both count as a product: a facing holds something);
* per-frame `empty` precision and recall on visible slot-frames;
* debounced `empty` (when the debounced states are given) precision and recall on *settled* slot-frames, whose
  truth has held (occluded frames aside) for more than confirm_frames + 1 frames, so the change is due; and on
  every visible slot-frame (the lag included);
* events: a detected event matches the first unmatched truth event of its slot and type at most `window` frames
  before it; delay = detected frame - truth frame. Truth events in a slot's first `confirm_frames` visible frames
  are left out (the tracker learns a first state silently). False events are counted per 1000 slot-frames.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["EVENT_OF_TRUTH", "score_shelf"]

EVENT_OF_TRUTH = {"take": "product_removed", "restock": "restocked", "swap": "product_changed"}
SCORED = ("product_removed", "restocked", "product_changed")
WINDOW = 10  # frames a detection may lag its truth event and still match it


def score_shelf(
    truth: Sequence[Sequence[str]],
    per_frame: Sequence[Sequence[str]],
    debounced: Sequence[Sequence[str | None]] | None,
    detected: Sequence[tuple[str, int, int]],
    truth_events: Sequence[tuple[str, int, int]],
    confirm_frames: int,
    window: int = WINDOW,
) -> dict[str, Any]:
    """`truth`, `per_frame`, `debounced`: per frame, per slot; `detected`/`truth_events`: (type, slot, frame) with
    frames as indexes into those lists (truth event types in either vocabulary)."""
    slot_frames = sum(len(row) for row in truth)
    occupied = ("product", "unknown")
    agree = sum(
        t == ("product" if p in occupied else p)
        for t_row, p_row in zip(truth, per_frame, strict=True)
        for t, p in zip(t_row, p_row, strict=True)
    )
    frame_counts = _empty_counts(truth, per_frame, confirm_frames)["all"]
    counts = _empty_counts(truth, debounced, confirm_frames) if debounced is not None else None
    expected = [
        (EVENT_OF_TRUTH.get(k, k), s, f) for k, s, f in truth_events if _visible_before(truth, s, f) >= confirm_frames
    ]
    events, delays, false = _match_events(detected, expected, window)
    removed_restocked = delays["product_removed"] + delays["restocked"]
    return {
        "slot_frames": slot_frames,
        "confirm_frames": confirm_frames,
        "state_accuracy": _ratio(agree, slot_frames),
        "empty_frame": _pr(*frame_counts),
        "empty_settled": _pr(*counts["settled"]) if counts else None,
        "empty_all": _pr(*counts["all"]) if counts else None,
        "events": events,
        "median_delay_frames": statistics.median(removed_restocked) if removed_restocked else None,
        "false_events_per_1000_slot_frames": round(1000 * sum(false.values()) / slot_frames, 3)
        if slot_frames
        else None,
    }


def _match_events(
    detected: Sequence[tuple[str, int, int]], expected: list[tuple[str, int, int]], window: int
) -> tuple[dict[str, dict], dict[str, list[int]], dict[str, int]]:
    """Each detected event matched to the first unmatched true event of its kind and slot at most `window` frames
    before it: per kind precision, recall and median delay; the delays; the false detections."""
    used: set[int] = set()
    delays: dict[str, list[int]] = {k: [] for k in SCORED}
    false: dict[str, int] = dict.fromkeys(SCORED, 0)
    for kind, slot, frame in detected:
        if kind not in SCORED:
            continue
        match = next(
            (
                i
                for i, (k, s, f) in enumerate(expected)
                if i not in used and k == kind and s == slot and 0 <= frame - f <= window
            ),
            None,
        )
        if match is None:
            false[kind] += 1
        else:
            used.add(match)
            delays[kind].append(frame - expected[match][2])
    events = {}
    for kind in SCORED:
        n_truth = sum(k == kind for k, _, _ in expected)
        hits = len(delays[kind])
        events[kind] = {
            "truth": n_truth,
            "detected": hits + false[kind],
            "precision": _ratio(hits, hits + false[kind]),
            "recall": _ratio(hits, n_truth),
            "median_delay_frames": statistics.median(delays[kind]) if delays[kind] else None,
        }
    return events, delays, false


def _empty_counts(
    truth: Sequence[Sequence[str]], debounced: Sequence[Sequence[str | None]], confirm: int
) -> dict[str, list[int]]:
    counts = {"all": [0, 0, 0], "settled": [0, 0, 0]}  # true positives, false positives, false negatives
    for slot in range(len(truth[0]) if truth else 0):
        last, held = None, 0
        for f, row in enumerate(truth):
            t = row[slot]
            if t == "occluded":
                continue
            held = held + 1 if t == last else 0
            last = t
            d = debounced[f][slot]
            for name in ("all", "settled") if held > confirm + 1 else ("all",):
                c = counts[name]
                c[0] += t == "empty" and d == "empty"
                c[1] += t != "empty" and d == "empty"
                c[2] += t == "empty" and d != "empty"
    return counts


def _visible_before(truth: Sequence[Sequence[str]], slot: int, frame: int) -> int:
    return sum(row[slot] != "occluded" for row in truth[:frame])


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _pr(tp: int, fp: int, fn: int) -> dict[str, Any]:
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "tp": tp, "fp": fp, "fn": fn}
