"""Shelf state over HTTP: /v1/shelves, /v1/events (cursor), /v1/events/stream (SSE), /v1/stats/history.

`setup_shelves(app)` is the one call the app factory makes: it adds the routes, the cleanup context that opens
the shelf hub (state, event log, MQTT) and samples the history, and a shutdown hook that ends live event streams
so a stopping server does not wait on them. The frame handler's hook is `frames.observe_frame()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from shelfsense.errors import BadQueryError, NoFrameYetError, ShelfStateOffError, UnknownCameraError
from shelfsense.service.handlers import _check_token
from shelfsense.service.history import History
from shelfsense.service.state import SERVICE, Service
from shelfsense.shelf.hub import ShelfHub
from shelfsense.shelf.mqtt import MqttPublisher

log = logging.getLogger(__name__)

__all__ = ["setup_shelves"]

SSE_HEARTBEAT_S = 15.0  # a comment line keeps proxies from closing an idle stream
EVENTS_LIMIT = 1000  # most events one GET /v1/events returns


def setup_shelves(app: web.Application) -> None:
    app.router.add_get("/v1/shelves", get_shelves)
    app.router.add_get("/v1/shelves/{camera}", get_shelf)
    app.router.add_get("/v1/shelves/{camera}/frame.jpg", get_snapshot)
    app.router.add_get("/v1/events", get_events)
    app.router.add_get("/v1/events/stream", stream_events)
    app.router.add_get("/v1/stats/history", get_history)
    app.cleanup_ctx.append(_shelf_ctx)
    app.on_shutdown.append(_end_streams)


async def _shelf_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    config = service.config
    if not config.shelf.enabled:
        yield
        return
    publisher = MqttPublisher(config.mqtt) if config.mqtt.host else None
    hub = ShelfHub(config, publisher)
    await hub.open()
    service.shelves = hub
    service.history = History(config.shelf.history_s, config.shelf.history_step_s)
    service.metrics.bind_shelf(lambda: _shelf_figures(service))
    tasks = [asyncio.create_task(_sample_history(service), name="shelfsense-history")]
    if publisher is not None:
        tasks.append(asyncio.create_task(publisher.run(), name="shelfsense-mqtt"))
        log.info("MQTT: publishing to %s:%d under %s/", config.mqtt.host, config.mqtt.port, publisher.prefix)
    yield
    service.shelves = None
    if publisher is not None:
        await publisher.close(tasks.pop())
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await hub.close()


def _shelf_figures(service: Service) -> dict:
    hub, recognizer = service.shelves, service.recognizer
    return {
        "slots": hub.state_counts() if hub else {},
        "events": dict(hub.events_by_type) if hub else {},
        "out_of_stock_seconds": hub.empty_seconds(time.time()) if hub else 0.0,
        "reverifications": recognizer.reverify.runs if recognizer else 0,
        "reverify_changed": recognizer.reverify.changed if recognizer else 0,
    }


async def _sample_history(service: Service) -> None:
    step = service.config.shelf.history_step_s
    while True:
        await asyncio.sleep(step)
        stats = service.stats.snapshot()
        shelves = service.shelves.payload() if service.shelves else None
        service.history.add(
            time.time(),
            fps=stats["throughput_fps"],
            hit_rate=stats["cache"]["hit_rate_window"],
            hit_rate_all=stats["cache"]["hit_rate"],
            hit_p50_ms=stats["latency_ms"]["hit"]["p50"],
            hit_p99_ms=stats["latency_ms"]["hit"]["p99"],
            miss_p50_ms=stats["latency_ms"]["miss"]["p50"],
            miss_p99_ms=stats["latency_ms"]["miss"]["p99"],
            queue_depth=service.recognizer.queue_depth if service.recognizer else 0,
            temperature_c=service.device.temperature_c if service.device else None,
            out_of_stock=shelves["out_of_stock"] if shelves else None,
            compliance=shelves["compliance"]["share"] if shelves else None,
            events=shelves["events"]["last_id"] if shelves else None,
        )


async def _end_streams(app: web.Application) -> None:
    hub = app[SERVICE].shelves
    if hub is not None:
        hub.log.close()


# ---- handlers ------------------------------------------------------------------------------------------------


def _hub(request: web.Request) -> ShelfHub:
    service = request.app[SERVICE]
    _check_token(request, service.config.server.read_token, "shelf state")
    if service.shelves is None:
        raise ShelfStateOffError("Shelf state is off (shelf.enabled = false) or still starting")
    return service.shelves


async def get_shelves(request: web.Request) -> web.Response:
    payload = _hub(request).payload()
    recognizer = request.app[SERVICE].recognizer
    payload["reverify"] = {
        "runs": recognizer.reverify.runs if recognizer else 0,
        "changed": recognizer.reverify.changed if recognizer else 0,
    }
    return web.json_response(payload)


async def get_shelf(request: web.Request) -> web.Response:
    hub = _hub(request)
    camera = request.match_info["camera"]
    payload = hub.camera_payload(camera, time.time())
    if payload is None:
        service = request.app[SERVICE]
        if camera not in service.config.cameras:
            raise UnknownCameraError(f"No shelf state for camera '{camera[:80]}': it is not configured")
        payload = {"camera": camera, "frames": 0, "slots": [], "out_of_stock": [], "blocked": False}
    return web.json_response(payload)


async def get_snapshot(request: web.Request) -> web.Response:
    _hub(request)
    camera = request.match_info["camera"]
    snap = request.app[SERVICE].snapshots.get(camera)
    if snap is None:
        raise NoFrameYetError(f"No frame of camera '{camera[:80]}' has been seen yet")
    data, frame, (w, h) = snap
    # Pages ask for it as frame.jpg?n=<frames seen>: a new address whenever there may be a newer picture.
    headers = {"Cache-Control": "private, max-age=3600", "X-Frame": str(frame), "X-Frame-Size": f"{w}x{h}"}
    return web.Response(body=data, content_type="image/jpeg", headers=headers)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQueryError(f"'{name}' must be a whole number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadQueryError(f"'{name}' must be {low}..{high}, got {value}")
    return value


async def get_events(request: web.Request) -> web.Response:
    hub = _hub(request)
    since = _int_param(request, "since", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, EVENTS_LIMIT)
    events = hub.log.since(since, limit)
    oldest = hub.log.oldest_id
    return web.json_response(
        {
            "events": [e.as_dict() for e in events],
            "next": events[-1].id if events else max(since, 0),
            "last_id": hub.log.last_id,
            "oldest_id": oldest,
            # Events between the cursor and the oldest one kept were dropped from the bounded log.
            "gap": oldest is not None and since < oldest - 1,
        }
    )


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the backlog after `Last-Event-ID` (or `?since=`, default: now), then live events."""
    hub = _hub(request)
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip().isdigit():
        cursor = int(header)
    else:
        cursor = _int_param(request, "since", hub.log.last_id, 0, 2**62)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n: shelfsense events\n\n")
    with contextlib.suppress(ConnectionResetError):  # the reader went away
        while not hub.log.closed:
            if await hub.log.wait(cursor, SSE_HEARTBEAT_S):
                for event in hub.log.since(cursor, EVENTS_LIMIT):
                    data = json.dumps(event.as_dict(), separators=(",", ":"))
                    await response.write(f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode())
                    cursor = event.id
            elif not hub.log.closed:
                await response.write(b": keep-alive\n\n")
    return response


async def get_history(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _hub(request)
    return web.json_response(service.history.payload() if service.history else {"samples": []})
