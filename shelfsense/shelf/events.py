"""The event log: every shelf event with an id, kept bounded on disk, read by cursor or awaited live.

Ids grow by one from 1 and are never reused, also across restarts, so `GET /v1/events?since=<id>` and an SSE
reader's `Last-Event-ID` resume exactly where they stopped. The file is JSON lines, appended as events happen;
when it holds twice `max_events` lines it is rewritten with the newest `max_events` (atomically: write, rename).
Appends are small and go through the caller's executor; reads are served from memory.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["EVENT_TYPES", "Event", "EventLog"]

EVENT_TYPES = ("product_removed", "restocked", "product_changed", "misplaced", "camera_blocked")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    camera: str
    slot: int | None  # None for camera-wide events
    before: dict[str, Any] | None  # {"state": ..., "label": ...}
    after: dict[str, Any] | None
    t: float  # seconds since the epoch
    frame: int  # the camera's frame number that confirmed it

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = datetime.fromtimestamp(self.t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(**{k: raw[k] for k in ("id", "type", "camera", "slot", "before", "after", "t", "frame")})


class EventLog:
    def __init__(self, path: Path | None, max_events: int) -> None:
        self.path = path
        self.max_events = max_events
        self._events: list[Event] = []  # ascending ids; trimmed to max_events
        self._lines = 0  # lines in the file, to know when to compact it
        self._new = asyncio.Event()
        self.closed = False

    @property
    def last_id(self) -> int:
        return self._events[-1].id if self._events else 0

    def _keep(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > self.max_events + self.max_events // 4:  # trim in batches, not on every event
            del self._events[: len(self._events) - self.max_events]

    def load(self) -> None:
        """Read the file (blocking). Unreadable lines are skipped with a warning; ids continue after the last."""
        if self.path is None or not self.path.exists():
            return
        bad = 0
        try:
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    self._lines += 1
                    try:
                        event = Event.from_dict(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        bad += 1
                        continue
                    if event.id > self.last_id:
                        self._keep(event)
        except OSError as exc:
            log.warning("event log %s unreadable (%s); starting a new one", self.path, exc)
            return
        if bad:
            log.warning("event log %s: skipped %d unreadable line(s)", self.path, bad)

    def make(self, **fields: Any) -> Event:
        """A new event with the next id, kept in memory and woken readers; `persist` writes it (blocking)."""
        event = Event(id=self.last_id + 1, **fields)
        self._keep(event)
        self._new.set()
        self._new = asyncio.Event()
        return event

    def persist(self, events: list[Event]) -> None:
        """Append events to the file (blocking; run it on the writer thread). A failing disk loses the file copy."""
        if self.path is None or not events:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                for e in events:
                    fh.write(json.dumps(e.as_dict(), separators=(",", ":")) + "\n")
            self._lines += len(events)
            if self._lines >= 2 * self.max_events:
                self._compact()
        except OSError as exc:
            log.warning("event log %s: write failed (%s); events stay readable until restart", self.path, exc)

    def _compact(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        kept = self._events[-self.max_events :]
        with tmp.open("w", encoding="utf-8") as fh:
            for e in kept:
                fh.write(json.dumps(e.as_dict(), separators=(",", ":")) + "\n")
        os.replace(tmp, self.path)
        self._lines = len(kept)

    def since(self, cursor: int, limit: int) -> list[Event]:
        """Events with an id above `cursor`, oldest first, at most `limit`."""
        start = bisect.bisect_right(self._events, cursor, key=lambda e: e.id)
        return self._events[start : start + limit]

    @property
    def oldest_id(self) -> int | None:
        return self._events[0].id if self._events else None

    async def wait(self, cursor: int, timeout: float) -> bool:
        """Wait until an event after `cursor` exists (True) or `timeout` passes or the log closes (False)."""
        if self.last_id > cursor:
            return True
        if self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new.wait(), timeout)
        return self.last_id > cursor

    def close(self) -> None:
        """Wake every live reader for good (shutdown)."""
        self.closed = True
        self._new.set()
