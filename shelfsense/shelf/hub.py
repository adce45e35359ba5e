"""The shelf as the service uses it: the tracker fed with frame results, events logged and published, state saved.

`observe()` runs on the event loop with each answered frame and does no I/O itself: the log append and the state
save go to one writer thread (in order), MQTT messages to the publisher's outbox. The state is saved at most once
a second while it changes, and once more at close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shelfsense.config import Config
from shelfsense.recognition.result import FrameResult
from shelfsense.recognition.slotstate import SlotState
from shelfsense.shelf.events import EVENT_TYPES, Event, EventLog
from shelfsense.shelf.mqtt import MqttPublisher
from shelfsense.shelf.store import StateStore
from shelfsense.shelf.tracker import CameraShelf, ShelfTracker, SlotReading, TrackerRules
from shelfsense.shelfconfig import shelf_state_path

log = logging.getLogger(__name__)

__all__ = ["ShelfHub"]

SAVE_EVERY_S = 1.0


class ShelfHub:
    def __init__(self, config: Config, publisher: MqttPublisher | None = None) -> None:
        s = config.shelf
        self.tracker = ShelfTracker(
            TrackerRules(confirm_frames=s.confirm_frames, confirm_s=s.confirm_s, blocked_s=s.blocked_s),
            {cid: cam.planogram for cid, cam in config.cameras.items() if cam.planogram},
        )
        folder = shelf_state_path(config)
        self.store = StateStore(folder / "state.json" if folder else None)
        self.log = EventLog(folder / "events.jsonl" if folder else None, s.events_max)
        self.publisher = publisher
        self.events_by_type = dict.fromkeys(EVENT_TYPES, 0)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfsense-shelf")
        self._dirty = False
        self._saved_at = 0.0
        self._geometry: dict[str, tuple[list[int], list[list[int]]]] = {}  # camera -> frame size, slot boxes

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        saved = await loop.run_in_executor(self._writer, self.store.load)
        try:
            self.tracker.restore(saved)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("shelf state %s malformed (%s); starting with an empty shelf state", self.store.path, exc)
        await loop.run_in_executor(self._writer, self.log.load)
        if self.publisher is not None:  # retained state as it is now, for subscribers that join later
            for camera, shelf in self.tracker.cameras.items():
                for i in range(len(shelf.slots)):
                    self._publish_slot(camera, shelf, i)

    def observe(self, result: FrameResult, frame: int, t: float | None = None) -> list[Event]:
        t = time.time() if t is None else t
        readings = [SlotReading(s.state, s.label, s.score) for s in result.slots]
        self._geometry[result.camera] = ([result.width, result.height], [list(s.box) for s in result.slots])
        changes = self.tracker.observe(result.camera, readings, frame, t)
        changed_slots = self.tracker.drain_changed()
        events = [self.log.make(**c) for c in changes]
        for e in events:
            self.events_by_type[e.type] = self.events_by_type.get(e.type, 0) + 1
        loop = asyncio.get_running_loop()
        if events:
            loop.run_in_executor(self._writer, self.log.persist, events)
        if changed_slots:
            self._dirty = True
        if self._dirty and t - self._saved_at >= SAVE_EVERY_S:
            self._save(t)
        if self.publisher is not None:
            shelf = self.tracker.cameras[result.camera]
            for _, slot in changed_slots:
                self._publish_slot(result.camera, shelf, slot)
            for e in events:
                payload = e.as_dict()
                self.publisher.publish("events", payload)
                self.publisher.publish(f"{e.camera}/events", payload)
        return events

    def _save(self, t: float) -> None:
        self._dirty, self._saved_at = False, t
        asyncio.get_running_loop().run_in_executor(self._writer, self.store.save, self.tracker.to_json())

    def _publish_slot(self, camera: str, shelf: CameraShelf, slot: int) -> None:
        assert self.publisher is not None
        payload = slot_payload(shelf, slot, time.time())
        del payload["seconds"]  # a retained message is read later: `since` stays true, a duration would not
        self.publisher.publish(f"{camera}/{slot}/state", payload, retain=True)

    async def close(self) -> None:
        self.log.close()
        loop = asyncio.get_running_loop()
        if self._dirty:
            await loop.run_in_executor(self._writer, self.store.save, self.tracker.to_json())
        await loop.run_in_executor(self._writer, lambda: None)  # the writes queued before this one are done
        self._writer.shutdown(wait=True)

    # ---- what GET /v1/shelves reads ---------------------------------------------------------------------------

    def camera_payload(self, camera: str, now: float) -> dict[str, Any] | None:
        shelf = self.tracker.cameras.get(camera)
        if shelf is None:
            return None
        slots = [slot_payload(shelf, i, now) for i in range(len(shelf.slots))]
        size, boxes = self._geometry.get(camera, (None, []))
        for slot, box in zip(slots, boxes, strict=False):
            slot["box"] = box
        return {
            "camera": camera,
            "size": size,  # of the frames the boxes are in; None until a frame has been seen since start-up
            "frames": shelf.frames,
            "last_frame_at": shelf.last_t or None,
            "blocked": shelf.blocked,
            "slots": slots,
            "counts": {
                **{state: sum(s["state"] == state for s in slots) for state in _STATES},
                "unset": sum(s["state"] is None for s in slots),  # no state confirmed yet
            },
            "out_of_stock": [
                {"slot": s["slot"], "label": s["last_label"], "expected": s["expected"], "seconds": s["seconds"]}
                for s in slots
                if s["state"] == SlotState.EMPTY
            ],
            "compliance": shelf.compliance(),
        }

    def payload(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        cameras = [self.camera_payload(cam, now) for cam in sorted(self.tracker.cameras)]
        planned = sum(c["compliance"]["planned"] for c in cameras)
        right = sum(c["compliance"]["compliant"] for c in cameras)
        return {
            "time": now,
            "cameras": cameras,
            "out_of_stock": sum(len(c["out_of_stock"]) for c in cameras),
            "compliance": {
                "planned": planned,
                "compliant": right,
                "share": round(right / planned, 4) if planned else None,
            },
            "events": {"last_id": self.log.last_id, "by_type": dict(self.events_by_type)},
            "mqtt": self.publisher.status() if self.publisher is not None else None,
        }

    def state_counts(self) -> dict[tuple[str, str], int]:
        """(camera, state) -> slots, for the Prometheus gauge; `unset` for slots without a state yet."""
        out: dict[tuple[str, str], int] = {}
        for cam, shelf in self.tracker.cameras.items():
            for s in shelf.slots:
                key = (cam, str(s.state) if s.state is not None else "unset")
                out[key] = out.get(key, 0) + 1
        return out

    def empty_seconds(self, now: float) -> float:
        """Sum over the slots empty now of how long they have been empty (the out-of-stock seconds gauge)."""
        return sum(
            max(0.0, now - s.since)
            for shelf in self.tracker.cameras.values()
            for s in shelf.slots
            if s.state is SlotState.EMPTY
        )


_STATES = (SlotState.PRODUCT, SlotState.EMPTY, SlotState.UNKNOWN)


def slot_payload(shelf: CameraShelf, i: int, now: float) -> dict[str, Any]:
    s = shelf.slots[i]
    return {
        "slot": i,
        "state": s.state,
        "label": s.label if s.state is SlotState.PRODUCT else None,
        "last_label": s.label,  # for an empty slot: the product it held before (None if never seen)
        "score": round(s.score, 4) if s.state is not None and s.state.occupied else None,  # the model's, on a product
        "since": s.since or None,
        "seconds": round(now - s.since, 1) if s.state is not None else None,
        "expected": shelf.expected(i),
        "misplaced": shelf.misplaced(i),
    }
