"""Shelf state of a replay, scored against the footage truth: per-frame slot states from the answers, events read
back from the server's cursor API (GET /v1/events) and matched to the frames that confirmed them.

The server's debounced state is not in a frame's answer, so the replay scores per-frame `empty` and the events; the
offline bench (`shelfsense bench`) scores the debounced state as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from shelfsense.config import Config
from shelfsense.footage import TruthRow
from shelfsense.shelf.score import score_shelf
from shelfsense.tools.replay_report import FrameRecord

__all__ = ["ShelfTruth", "event_cursor", "score_replay"]

ShelfTruth = dict[tuple[str, int], TruthRow]  # (recorded camera, Frame.index) -> row with states and events


async def _get_events(url: str, token: str, since: int) -> tuple[list[dict[str, Any]], int] | None:
    """Events after `since` and the last id, or None when the server does not give them (shelf state off, a
    read token the replay does not have)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(f"{url.rstrip('/')}/v1/events", params={"since": since, "limit": 1000}) as r:
                if r.status != 200:
                    return None
                page = await r.json()
            events += page["events"]
            if not page["events"]:
                return events, page["last_id"]
            since = page["next"]


async def event_cursor(url: str, token: str) -> int | None:
    """The server's last event id before the replay, so only the replay's own events are scored."""
    got = await _get_events(url, token, 2**62)
    return None if got is None else got[1]


async def score_replay(
    url: str,
    token: str,
    cursor: int | None,
    streams: Sequence[tuple[str, str]],
    records: Sequence[FrameRecord],
    truth: ShelfTruth,
) -> dict[str, Any]:
    """Per replayed camera (`streams`: (camera id sent, recorded camera)): the shelf figures of shelf.score."""
    got = None if cursor is None else await _get_events(url, token, cursor)
    events = got[0] if got is not None else []
    confirm = Config().shelf.confirm_frames  # the server's own setting is not exposed; the default
    out: dict[str, Any] = {}
    for camera, source in streams:
        mine = sorted((r for r in records if r.camera == camera and r.status == 200 and r.states), key=lambda r: r.seq)
        rows = [truth.get((source, r.index)) for r in mine]
        if not mine or any(row is None or row.states is None for row in rows):
            continue
        position = {r.server_frame: i for i, r in enumerate(mine)}
        detected = [
            (e["type"], e["slot"], position[e["frame"]])
            for e in events
            if e["camera"] == camera and e["slot"] is not None and e["frame"] in position
        ]
        truth_events = [(str(ev["type"]), int(ev["slot"]), i) for i, row in enumerate(rows) for ev in row.events]
        states = [row.states for row in rows]  # type: ignore[union-attr]
        score = score_shelf(states, [r.states for r in mine], None, detected, truth_events, confirm)
        score["events_read"] = got is not None
        out[camera] = score
    return out
