"""Shelf events: the cursor API and the SSE stream (a reconnecting reader misses nothing), over a real socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from conftest import colour_config, jpeg
from shelfframes import GRID, shelf

from shelfsense.service.app import create_app

FULL = ["red", "green", "blue", "red", "green", "blue", "red", "green"]


async def _post(session: aiohttp.ClientSession, server, slots, seed: int) -> None:
    async with session.post(
        server.make_url("/v1/frames/shelf-1"),
        data=jpeg(shelf(slots, seed=seed)),
        headers={"Content-Type": "image/jpeg"},
    ) as r:
        assert r.status == 200


async def take_and_restock(session, server, slot: int, seed: int) -> None:
    """One product_removed and one restocked event for `slot` (each after 4 frames: confirm_frames is 3)."""
    for i in range(4):
        await _post(session, server, [None if j == slot else s for j, s in enumerate(FULL)], seed + i)
    for i in range(4):
        await _post(session, server, FULL, seed + 10 + i)


async def read_sse(response: aiohttp.ClientResponse, n: int) -> list[dict]:
    """The next n events of an SSE stream as {"id", "event", "data"}; comments and blank lines are skipped."""
    events, current = [], {}
    while len(events) < n:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode().rstrip("\n")
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


async def test_cursor_pages_through_every_event_once(aiohttp_server, tmp_path: Path) -> None:
    server = await aiohttp_server(create_app(colour_config(tmp_path, {"shelf-1": GRID})))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await _post(session, server, FULL, 0)
        for k, slot in enumerate((1, 4, 6)):
            await take_and_restock(session, server, slot, 100 * (k + 1))

        seen, cursor = [], 0
        while True:
            async with session.get(server.make_url(f"/v1/events?since={cursor}&limit=2")) as r:
                page = await r.json()
            if not page["events"]:
                break
            assert len(page["events"]) <= 2 and page["gap"] is False
            seen += page["events"]
            cursor = page["next"]
        assert [e["id"] for e in seen] == list(range(1, 7))
        assert [(e["type"], e["slot"]) for e in seen] == [
            ("product_removed", 1),
            ("restocked", 1),
            ("product_removed", 4),
            ("restocked", 4),
            ("product_removed", 6),
            ("restocked", 6),
        ]
        assert page["last_id"] == 6 and cursor == 6
        for bad in ("since=-1", "since=x", "limit=0", "limit=100000"):
            async with session.get(server.make_url(f"/v1/events?{bad}")) as r:
                assert r.status == 400 and (await r.json())["error"] == "bad_query", bad


async def test_sse_reader_that_reconnects_misses_no_event(aiohttp_server, tmp_path: Path) -> None:
    server = await aiohttp_server(create_app(colour_config(tmp_path, {"shelf-1": GRID})))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await _post(session, server, FULL, 0)
        stream = await session.get(server.make_url("/v1/events/stream"))
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await take_and_restock(session, server, 2, 100)
        live = await read_sse(stream, 2)
        assert [(e["event"], e["data"]["slot"]) for e in live] == [("product_removed", 2), ("restocked", 2)]
        assert [e["id"] for e in live] == ["1", "2"]
        stream.close()  # the dashboard loses its connection ...

        await take_and_restock(session, server, 5, 200)  # ... while these happen

        resumed = await session.get(server.make_url("/v1/events/stream"), headers={"Last-Event-ID": live[-1]["id"]})
        missed = await read_sse(resumed, 2)
        assert [(e["id"], e["event"], e["data"]["slot"]) for e in missed] == [
            ("3", "product_removed", 5),
            ("4", "restocked", 5),
        ]
        await take_and_restock(session, server, 7, 300)  # and it goes on live
        assert [e["id"] for e in await read_sse(resumed, 2)] == ["5", "6"]
        resumed.close()


async def test_open_streams_end_when_the_server_stops(aiohttp_server, tmp_path: Path) -> None:
    server = await aiohttp_server(create_app(colour_config(tmp_path, {"shelf-1": GRID})))
    async with aiohttp.ClientSession() as session:
        stream = await session.get(server.make_url("/v1/events/stream?since=0"))
        await asyncio.wait_for(server.close(), 10)  # no waiting on the open stream
        assert await asyncio.wait_for(stream.content.read(), 5) is not None
