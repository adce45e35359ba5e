"""The aiohttp application: factory, shared state and resource lifecycles.

`create_app(config)` builds the app; its state lives in one `Service` under a typed AppKey. The model and
the cache are opened in a cleanup context; a model that cannot be loaded leaves the service up (health,
stats, dashboard) with /readyz and every frame answering 503 and saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from shelfsense.config import Config
from shelfsense.errors import ShelfSenseError
from shelfsense.footage import RecordingWriter
from shelfsense.recognition.recognizer import Recognizer
from shelfsense.service.admission import Admission
from shelfsense.service.device import DeviceMonitor
from shelfsense.service.handlers import error_middleware, setup_routes
from shelfsense.service.metrics import Metrics
from shelfsense.service.shelves import setup_shelves
from shelfsense.service.state import SERVICE, Service
from shelfsense.service.stats import Stats
from shelfsense.service.thermal import ThermalController

log = logging.getLogger(__name__)


def create_app(config: Config) -> web.Application:
    # aiohttp refuses bodies over client_max_size itself; the handler turns that into our JSON 413.
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[error_middleware])
    service = app[SERVICE] = Service(
        config=config,
        stats=Stats(window_s=config.server.stats_window_s),
        metrics=Metrics(),
        monitor=DeviceMonitor(config.telemetry.sysfs_root, config.telemetry.vcgencmd),
        admission=Admission(config),
        thermal=ThermalController(config.thermal, config.model.threads),
    )
    service.metrics.bind_thermal(service.thermal.status)
    app.cleanup_ctx.append(_recognizer_ctx)
    app.cleanup_ctx.append(_telemetry_ctx)
    if config.record.enabled:
        app.cleanup_ctx.append(_recorder_ctx)
    setup_routes(app)
    setup_shelves(app)  # shelf state, events, MQTT, history (service/shelves.py)
    return app


async def _recognizer_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    try:
        service.recognizer = await Recognizer.create(service.config)
        service.model_error = None
        model = service.recognizer.model
        log.info("model %s (%s) on %s", model.name, model.sha256[:12], service.recognizer.backend)
    except ShelfSenseError as exc:
        service.model_error = str(exc)
        log.error("model not loaded, frames will be refused until it is fixed: %s", exc)
    recognizer = service.recognizer
    if recognizer is not None:
        service.metrics.bind_gauges(
            queue_depth=lambda: recognizer.queue_depth,
            entries_memory=lambda: recognizer.cache_status().entries_memory,
            entries_disk=lambda: recognizer.cache_status().entries_disk,
        )
    yield
    cache = recognizer.cache_status() if recognizer is not None else None
    if recognizer is not None:
        service.recognizer = None
        service.model_error = "shutting down"
        await recognizer.close()
    # Cleanup contexts unwind in reverse and this one came first: the HTTP server and every other context are done.
    disk_open = cache is not None and cache.disk_available
    log.info("stopped; %s", f"disk cache {cache.disk_path} closed" if disk_open else "no disk cache was open")


async def _telemetry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Read the device every few seconds in a thread; frames and stats use the last reading, never wait."""
    service = app[SERVICE]
    loop = asyncio.get_running_loop()

    async def poll() -> None:
        while True:
            try:
                reading = await loop.run_in_executor(None, service.monitor.read)
            except Exception:  # noqa: BLE001 - telemetry must never take the service down
                log.exception("device telemetry read failed")
            else:
                service.device = reading
                throttled_now = any(reading.throttled["now"].values()) if reading.throttled else None
                service.metrics.set_device(reading.temperature_c, throttled_now)
                # Thermal-aware operation (service/thermal.py): the step follows each reading, then the recognizer.
                service.thermal.update(reading)
                service.thermal.apply(service.recognizer)
            await asyncio.sleep(service.config.telemetry.interval_s)

    task = asyncio.create_task(poll(), name="shelfsense-telemetry")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    rec = service.config.record
    service.record_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfsense-record")
    service.recorder = RecordingWriter(rec.folder, max_bytes=rec.max_bytes, cameras=rec.cameras or None)
    log.info("recording incoming frames to %s", rec.folder)
    yield
    recorder, service.recorder = service.recorder, None
    await asyncio.get_running_loop().run_in_executor(service.record_thread, recorder.close)
    service.record_thread.shutdown(wait=True)
