"""Debounced shelf state per camera and slot, planogram compliance, and the events the changes imply.

Per frame a slot reads `product` (with a label), `empty`, `unknown` or `occluded`. The shelf state of a slot
changes only when a new reading has held for `confirm_frames` frames in a row, or for `confirm_s` seconds over
at least two frames. `occluded` frames neither count for nor break a run: an arm passing in front leaves the
state as it was, and a product taken behind it shows as soon as the arm is gone.

Changes of the confirmed state give events:

    occupied -> empty              product_removed     (occupied: product or unknown)
    empty -> occupied              restocked           (+ misplaced when it is not the planogram's product)
    product A -> product B         product_changed     (+ misplaced, as above; only if something passed in front)
    most slots occluded for blocked_s      camera_blocked (once per blocking spell)

The first state a slot takes after start-up (or after a reset) is learned silently: no event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shelfsense.recognition.slotstate import SlotState

__all__ = ["CameraShelf", "ShelfTracker", "SlotReading", "SlotShelf", "TrackerRules"]

BLOCKED_SHARE = 0.5  # "most slots": more than half of a camera's slots occluded


@dataclass(frozen=True, slots=True)
class SlotReading:
    """One slot of one frame, as the tracker needs it."""

    state: SlotState
    label: str | None
    score: float

    @property
    def identity(self) -> tuple[SlotState, str | None]:
        """What must stay the same for a run to count: the state, and for a product its label."""
        return (self.state, self.label if self.state is SlotState.PRODUCT else None)


@dataclass(frozen=True, kw_only=True)
class TrackerRules:
    confirm_frames: int = 3
    confirm_s: float = 10.0
    blocked_s: float = 30.0


@dataclass(slots=True)
class SlotShelf:
    """The confirmed state of one slot, plus the run of readings that may replace it."""

    state: SlotState | None = None  # None until the first state is confirmed
    label: str | None = None
    score: float = 0.0
    since: float = 0.0  # epoch seconds the state was first read (the run's first frame)
    frame: int = 0  # frame that confirmed it
    run: tuple | None = None  # what the current run of readings agrees on
    run_frames: int = 0
    run_t: float = 0.0
    disturbed: bool = False  # something passed in front since the state was confirmed

    def public(self) -> dict[str, Any]:
        return {"state": self.state, "label": self.label if self.state is SlotState.PRODUCT else None}

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "label": self.label, "score": self.score, "since": self.since, "frame": self.frame}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SlotShelf:
        state = raw["state"]
        return cls(
            state=None if state is None else SlotState(state),
            label=raw["label"],
            score=float(raw["score"]),
            since=float(raw["since"]),
            frame=int(raw["frame"]),
        )


@dataclass(slots=True)
class CameraShelf:
    slots: list[SlotShelf] = field(default_factory=list)
    planogram: tuple[str, ...] = ()
    blocked_since: float | None = None  # first frame of the current spell with most slots occluded
    blocked: bool = False  # camera_blocked was raised for this spell
    frames: int = 0
    last_t: float = 0.0

    def expected(self, slot: int) -> str | None:
        return self.planogram[slot] or None if slot < len(self.planogram) else None

    def compliance(self) -> dict[str, Any]:
        """Share of the slots with an expected product that show it (None when the camera has no planogram)."""
        planned = [i for i in range(len(self.slots)) if self.expected(i)]
        if not planned:
            return {"planned": 0, "compliant": 0, "empty": 0, "misplaced": 0, "share": None}
        empty = sum(self.slots[i].state is SlotState.EMPTY for i in planned)
        right = sum(
            self.slots[i].state is SlotState.PRODUCT and self.slots[i].label == self.expected(i) for i in planned
        )
        misplaced = sum(self.misplaced(i) for i in planned)
        return {
            "planned": len(planned),
            "compliant": right,
            "empty": empty,
            "misplaced": misplaced,
            "share": round(right / len(planned), 4),
        }

    def misplaced(self, slot: int) -> bool:
        s, expected = self.slots[slot], self.expected(slot)
        return bool(expected) and s.state is SlotState.PRODUCT and s.label != expected


# (type, camera, slot, before, after, t, frame): what the tracker reports; the event log gives it an id.
Change = dict[str, Any]


class ShelfTracker:
    def __init__(self, rules: TrackerRules, planograms: dict[str, tuple[str, ...]] | None = None) -> None:
        self.rules = rules
        self.planograms = planograms or {}
        self.cameras: dict[str, CameraShelf] = {}
        self._changed: list[tuple[str, int]] = []  # slots whose confirmed state changed, until drained

    def drain_changed(self) -> list[tuple[str, int]]:
        changed, self._changed = self._changed, []
        return changed

    def camera(self, camera: str, slots: int) -> CameraShelf:
        shelf = self.cameras.get(camera)
        if shelf is None or len(shelf.slots) != slots:  # new camera, or its slots were reconfigured
            shelf = self.cameras[camera] = CameraShelf([SlotShelf() for _ in range(slots)])
        shelf.planogram = self.planograms.get(camera, ())
        return shelf

    def observe(self, camera: str, readings: list[SlotReading], frame: int, t: float) -> list[Change]:
        """Feed one frame's readings; returns the changes (events without ids) it confirmed."""
        shelf = self.camera(camera, len(readings))
        shelf.frames += 1
        shelf.last_t = t
        changes: list[Change] = []
        for i, reading in enumerate(readings):
            if reading.state is SlotState.OCCLUDED:
                shelf.slots[i].disturbed = True
            else:
                changes.extend(self._slot(shelf, camera, i, reading, frame, t))
        changes.extend(self._blocked(shelf, camera, readings, frame, t))
        return changes

    def _slot(self, shelf: CameraShelf, camera: str, i: int, r: SlotReading, frame: int, t: float) -> Iterable[Change]:
        s = shelf.slots[i]
        if s.state is not None and r.state.occupied == s.state.occupied:
            key: tuple = r.identity
            if key == (s.state, s.label if s.state is SlotState.PRODUCT else None):
                s.run, s.run_frames = None, 0  # the state holds; a run of something else is broken
                s.score = r.score
                return ()
        else:
            # Filled <-> empty counts on occupancy alone, so a label that still wavers between a restocked
            # product's first readings does not delay the restock; the latest reading gives the label.
            key = ("occupied",) if r.state.occupied else ("empty",)
        if s.run != key:
            s.run, s.run_frames, s.run_t = key, 0, t
        s.run_frames += 1
        held = s.run_frames >= self.rules.confirm_frames or (
            self.rules.confirm_s > 0 and s.run_frames >= 2 and t - s.run_t >= self.rules.confirm_s
        )
        if not held:
            return ()
        before = s.public() if s.state is not None else None
        learned = s.state is None
        disturbed, s.disturbed = s.disturbed, False
        # An empty slot keeps the label of what it held: the out-of-stock list says which product is missing.
        label = s.label if r.state is SlotState.EMPTY else r.label
        s.state, s.label, s.score, s.since, s.frame = r.state, label, r.score, s.run_t, frame
        s.run, s.run_frames = None, 0
        self._changed.append((camera, i))
        if learned:
            return ()
        return self._events(shelf, camera, i, before, frame, t, disturbed)

    def _events(
        self,
        shelf: CameraShelf,
        camera: str,
        i: int,
        before: dict[str, Any] | None,
        frame: int,
        t: float,
        disturbed: bool,
    ) -> list[Change]:
        s = shelf.slots[i]
        after = s.public()
        was = SlotState(before["state"]) if before else None
        kinds = []
        if s.state is SlotState.EMPTY and was is not None and was.occupied:
            kinds.append("product_removed")
        elif s.state.occupied and was is SlotState.EMPTY:
            kinds.append("restocked")
        elif s.state is SlotState.PRODUCT and was is SlotState.PRODUCT and before["label"] != s.label and disturbed:
            # Only after something passed in front: a product is swapped by a hand, and a hand (or the sudden
            # change it leaves) reads `occluded`. A label that changes on an untouched facing is the model
            # wavering; the state takes the new label without an event.
            kinds.append("product_changed")
        if kinds and kinds[0] != "product_removed" and shelf.misplaced(i):
            kinds.append("misplaced")
        if kinds and "misplaced" in kinds:
            after = {**after, "expected": shelf.expected(i)}
        return [_change(k, camera, i, before, after, t, frame) for k in kinds]

    def _blocked(
        self, shelf: CameraShelf, camera: str, readings: list[SlotReading], frame: int, t: float
    ) -> list[Change]:
        occluded = sum(r.state is SlotState.OCCLUDED for r in readings)
        if occluded <= BLOCKED_SHARE * len(readings):
            shelf.blocked_since, shelf.blocked = None, False
            return []
        if shelf.blocked_since is None:
            shelf.blocked_since = t
        if shelf.blocked or t - shelf.blocked_since < self.rules.blocked_s:
            return []
        shelf.blocked = True
        after = {"occluded_slots": occluded, "slots": len(readings), "since": shelf.blocked_since}
        return [_change("camera_blocked", camera, None, None, after, t, frame)]

    # ---- persistence ------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {cam: {"slots": [s.to_json() for s in shelf.slots]} for cam, shelf in self.cameras.items()}

    def restore(self, raw: dict[str, Any]) -> None:
        """Confirmed states from `to_json` (a ValueError/KeyError/TypeError on malformed input, nothing restored)."""
        cameras = {cam: CameraShelf([SlotShelf.from_json(s) for s in v["slots"]]) for cam, v in raw.items()}
        for cam, shelf in cameras.items():
            shelf.planogram = self.planograms.get(cam, ())
        self.cameras = cameras


def _change(
    kind: str, camera: str, slot: int | None, before: dict | None, after: dict | None, t: float, frame: int
) -> Change:
    return {"type": kind, "camera": camera, "slot": slot, "before": before, "after": after, "t": t, "frame": frame}
