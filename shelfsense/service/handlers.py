"""HTTP handlers and routes: camera frames in, stats, metrics, dashboard and health out.

Every error leaves as JSON `{"error": code, "detail": sentence}` through `error_middleware`, which also
counts it; the service keeps serving after each.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from yarl import URL

from shelfsense.config import ServerConfig, check_camera_id
from shelfsense.errors import (
    AuthError,
    BadImageError,
    ModelError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ShelfSenseError,
    UnsupportedMediaError,
)
from shelfsense.recognition.decode import check_size, read_header
from shelfsense.recognition.recognizer import CacheStatus
from shelfsense.service.admission import Admission
from shelfsense.service.frames import observe_frame
from shelfsense.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from shelfsense.service.openapi import openapi
from shelfsense.service.state import SERVICE, Service
from shelfsense.service.thermal import NEXT_FRAME_HEADER

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png")
TOKEN_PARAM = "token"  # cameras and the dashboard may send their token in the query
BEARER_HINT = "send 'Authorization: Bearer <token>'"


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, error_id: str | None = None
) -> web.Response:
    body = {"error": code, "detail": detail} | ({"error_id": error_id} if error_id else {})
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON answer and is counted by kind; nothing reaches aiohttp's text/plain 500."""
    service = request.app[SERVICE]
    try:
        return await handler(request)
    except ShelfSenseError as exc:
        service.record_error(exc.code)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else None
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, redact_token(request.rel_url), exc)
        return error_response(exc.status, exc.code, str(exc), headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except ConnectionResetError as exc:  # the client went away mid-body (aiohttp's reset error is one too)
        service.record_error("client_disconnected")
        log.info("%s %s: client disconnected: %s", request.method, redact_token(request.rel_url), exc)
        return error_response(400, "client_disconnected", "The connection was closed before the body arrived")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error_id = uuid.uuid4().hex[:12]
        kind = type(exc).__name__
        service.record_error(f"internal_{kind}")
        log.exception("error %s on %s %s", error_id, request.method, redact_token(request.rel_url))
        return error_response(500, "internal_error", f"Unexpected {kind}; logged as error {error_id}", None, error_id)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = exc.reason.lower().replace(" ", "_")
    request.app[SERVICE].record_error(code)
    if exc.status == 404:
        detail = f"No such endpoint: {request.method} {request.path}"
    elif exc.status == 405:
        detail = f"{request.method} is not allowed on {request.path} (allowed: {exc.headers.get('Allow', '')})"
    else:
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return error_response(exc.status, code, detail, headers={k: v for k, v in exc.headers.items() if k == "Allow"})


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-ShelfSense-Token") or request.query.get(TOKEN_PARAM)


def _check_token(request: web.Request, expected: str, what: str, how: str = BEARER_HINT) -> None:
    if not expected:
        return
    given = _token(request)
    if given is None:
        raise AuthError(f"{what} needs a token: {how}")
    # bytes, not str: compare_digest refuses non-ASCII strings, and a header may carry any byte
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise AuthError(f"The token given for {what} is not valid", forbidden=True)


async def _read_image(request: web.Request, server: ServerConfig, admission: Admission) -> bytes:
    max_bytes = server.max_body_bytes
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLargeError(
            f"Frame of {request.content_length} bytes is over server.max_body_bytes ({max_bytes} bytes)"
        )
    ctype = request.content_type
    if ctype not in IMAGE_TYPES and ctype != "multipart/form-data":
        raise UnsupportedMediaError(
            f"Content-Type '{ctype}' is not supported: "
            "send image/jpeg, image/png or multipart/form-data with a 'frame' field"
        )
    body = bytearray()
    try:
        async with asyncio.timeout(server.body_timeout_s):
            if ctype in IMAGE_TYPES:
                await _receive(request.content, body, max_bytes, admission)
                return bytes(body)
            return await _multipart_frame(request, body, max_bytes, admission)
    except TimeoutError:
        detail = f"The frame body did not arrive within server.body_timeout_s ({server.body_timeout_s} s)"
        raise RequestTimeoutError(detail) from None
    finally:
        admission.give_body_bytes(len(body))


async def _receive(stream: Any, body: bytearray, max_bytes: int, admission: Admission) -> None:
    """Append `stream` to `body` as it arrives, each chunk accounted against the shared body buffer first."""
    while chunk := await stream.readany():
        admission.take_body_bytes(len(chunk))
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLargeError(f"Frame is over server.max_body_bytes ({max_bytes} bytes)")


async def _multipart_frame(request: web.Request, body: bytearray, max_bytes: int, admission: Admission) -> bytes:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:  # no or a broken boundary
        raise BadImageError(f"The multipart/form-data body cannot be parsed: {exc}") from None
    async for part in reader:
        if getattr(part, "name", None) == "frame":
            await _receive(_PartStream(part), body, max_bytes, admission)
            return bytes(body)
        await part.release()
    raise BadImageError("multipart/form-data body has no field named 'frame'")


class _PartStream:
    """A multipart body part read like a request stream (readany)."""

    def __init__(self, part: Any) -> None:
        self.part = part

    async def readany(self) -> bytes:
        return bytes(await self.part.read_chunk())


async def post_frame(request: web.Request) -> web.Response:
    """HTTP -> admission -> decode -> slots -> ... (recognizer) -> result -> stats; each refusal fast and in JSON."""
    service: Service = request.app[SERVICE]
    server = service.config.server
    camera_id = request.match_info["camera"]
    try:
        check_camera_id(camera_id)
    except ValueError as exc:
        raise BadImageError(str(exc)) from None
    recognizer = service.recognizer
    if recognizer is None:
        raise ModelError(f"Not ready: {service.model_error}")
    camera = recognizer.camera(camera_id)  # 404 before reading a body we would not use
    _check_token(request, camera.token, f"camera '{camera_id}'")
    t0 = time.perf_counter()
    image = await _read_image(request, server, service.admission)
    header = read_header(image)  # the format and size from the header alone: bombs stop here
    check_size(header, camera, server.max_frame_pixels)
    with service.admission.frame(camera.slot_count):
        result = await recognizer.recognize(camera_id, image, header)
    if service.recorder is not None:  # only frames that decoded are recorded
        await _record(service, camera_id, image, header.content_type)
    service.record(result)
    frame = service.next_frame_number(camera_id)
    observe_frame(service, result, frame, image)  # shelf state and events (service/frames.py)
    # Thermal step 3 asks cameras to slow down (service/thermal.py); 0 means "send as you like".
    wait_ms = service.thermal.next_frame_after_ms
    return web.json_response(
        {
            "camera": camera_id,
            "frame": frame,
            "latency_ms": round((time.perf_counter() - t0) * 1000.0, 3),
            "model": recognizer.model.name,
            "size": [result.width, result.height],
            "timing_ms": result.timings(),
            "slots": [s.as_dict() for s in result.slots],
            "next_frame_after_ms": wait_ms,
        },
        headers={NEXT_FRAME_HEADER: str(wait_ms)} if wait_ms else None,
    )


async def _record(service: Service, camera_id: str, image: bytes, content_type: str) -> None:
    """The recording tap: a full or failing disk loses the recording, never the frame."""
    try:
        await asyncio.get_running_loop().run_in_executor(
            service.record_thread, service.recorder.write, camera_id, image, content_type
        )
    except OSError as exc:
        service.record_error("record_failed")
        log.warning("recording frame of camera %s failed: %s", camera_id, exc)


def stats_payload(service: Service) -> dict:
    payload = service.stats.snapshot()
    recognizer = service.recognizer
    cache = recognizer.cache_status() if recognizer else CacheStatus(enabled=False)
    payload["cache"].update(
        enabled=cache.enabled,
        entries_memory=cache.entries_memory,
        entries_disk=cache.entries_disk,
        disk_available=cache.disk_available,
        disk_error=cache.disk_error,
        disk_retry_in_s=cache.disk_retry_in_s,
        max_distance=service.config.cache.max_distance,
        confirmations=recognizer.confirmations if recognizer else 0,
    )
    payload["queue_depth"] = recognizer.queue_depth if recognizer else 0
    payload["frames_in_flight"] = service.admission.frames
    payload["body_bytes_receiving"] = service.admission.body_bytes
    if recognizer:
        payload["model"] = {
            "name": recognizer.model.name,
            "sha256": recognizer.model.sha256,
            "runtime": recognizer.backend,
            "labels": len(recognizer.model.labels),
            "invokes": recognizer.invokes,
        }
    else:
        payload["model"] = {"name": None, "sha256": None, "runtime": None, "error": service.model_error}
    payload["device"] = service.device.as_dict() if service.device else None
    payload["thermal"] = service.thermal.status().as_dict()
    return payload


async def get_stats(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _check_token(request, service.config.server.read_token, "stats")
    return web.json_response(stats_payload(service))


async def get_metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _check_token(request, service.config.server.read_token, "metrics")
    return web.Response(body=service.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def dashboard(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    # People open the dashboard in a browser, which cannot add a header: say how to put the token in the address.
    how = f"open it as /?{TOKEN_PARAM}=<token> (or {BEARER_HINT})"
    _check_token(request, service.config.server.read_token, "the dashboard", how)
    page = resources.files("shelfsense.service").joinpath("static/dashboard.html").read_bytes()
    return web.Response(body=page, content_type="text/html", charset="utf-8")


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    recognizer = service.recognizer
    if recognizer is None:
        return error_response(503, "not_ready", f"Model not loaded: {service.model_error}")
    cache = recognizer.cache_status()
    return web.json_response(
        {
            "status": "ready",
            "model": recognizer.model.name,
            "cache": cache.mode,
            "disk_error": cache.disk_error if cache.enabled and not cache.disk_available else None,
            "disk_retry_in_s": cache.disk_retry_in_s,
        }
    )


def redact_token(url: str | URL) -> str:
    """`url` with the value of every `?token=` replaced by `redacted`."""
    try:
        url = URL(url)
    except ValueError:
        return "(unparseable)"
    if TOKEN_PARAM not in url.query:
        return str(url)
    return str(url.with_query([(k, "redacted" if k == TOKEN_PARAM else v) for k, v in url.query.items()]))


_TOKEN_IN_TEXT = re.compile(rf"({TOKEN_PARAM}=)[^&\s'\"]*", re.IGNORECASE)
_BEARER_IN_TEXT = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Free text (an exception's message quoting a raw request line, say) without token values."""
    return _BEARER_IN_TEXT.sub(r"\1redacted", _TOKEN_IN_TEXT.sub(r"\1redacted", text))


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's default access line without token values, in the request target and in its Referer.

    Access logs are kept and shared far more widely than the config, and a token in the dashboard's address
    reaches the log twice: in its own request and as the Referer of every request the page makes. The line's
    time is left to the logging format; `log_format` is not used.
    """

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        referer = request.headers.get("Referer")
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d "%s" "%s"',
            request.remote or "-",
            request.method,
            redact_token(request.rel_url),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            redact_token(referer) if referer else "-",
            request.headers.get("User-Agent", "-"),
        )


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/frames/{camera}", post_frame)
    app.router.add_get("/v1/stats", get_stats)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", dashboard)
    app.router.add_get("/openapi.json", openapi_json)
