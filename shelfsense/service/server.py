"""The socket layer: the aiohttp server the service runs on, guarded against clients that misbehave.

aiohttp answers what it cannot parse (a bad request line, a header over its limits) itself, as text/plain, and
logs the raw line, query token included. The request handler here answers those in JSON, counts them with every
other error, and logs one redacted line. It also refuses connections past `server.max_connections` (kept below
the process's descriptor limit) at once with a JSON 503, so a flood of sockets degrades into fast refusals, not
into a hung accept loop; the accept loop's own complaints at the descriptor limit are rate-limited.

Connections waiting for their next request's headers (new, idle, or a client sending headers byte by byte) are
closed by aiohttp after `server.keepalive_timeout_s`; slow bodies are timed by the frame handler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from shelfsense.config import Config
from shelfsense.service.handlers import RedactingAccessLogger, redact_text
from shelfsense.service.state import SERVICE

__all__ = ["GuardedRunner", "connection_cap", "run_until", "serve"]

log = logging.getLogger(__name__)
_REASONS = {400: "bad_request", 413: "payload_too_large", 414: "uri_too_long", 431: "headers_too_large"}
DESCRIPTOR_MARGIN = 64  # files the process needs besides client sockets: the cache, the model, logs, threads


class RateLimitedLog:
    """At most one warning per `interval_s` for one kind of event, with the count of those suppressed."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval_s) < self.interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        log.warning(message + (f" ({suppressed} more since the last report)" if suppressed else ""), *args)


class _GuardedHandler(RequestHandler):
    _manager: GuardedServer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if len(server.connections) > server.max_connections:
            server.on_error("too_many_connections")
            server.warnings.warning("connections", "%d connections open: refusing new ones", server.max_connections)
            body = json.dumps(
                {"error": "too_many_connections", "detail": "The service has too many open connections; retry"}
            ).encode()
            head = (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            transport.write(head.encode() + body)  # type: ignore[attr-defined]
            self.force_close()
            transport.close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own refusals (unparseable requests, limits) and anything past the app's middleware: JSON."""
        server = self._manager
        code = _REASONS.get(status, "internal_error" if status >= 500 else f"http_{status}")
        server.on_error(code)
        detail = redact_text(message or (str(exc) if exc else "") or "The request could not be handled")
        server.warnings.warning(code, "%s from %s: %s", code, request.remote, detail[:300])
        if request.writer.output_size > 0:  # part of a response went out already: nothing coherent can follow
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = web.json_response({"error": code, "detail": detail}, status=status)
        response.force_close()
        return response


class GuardedServer(web.Server):
    def __init__(self, base: web.Server, *, max_connections: int, on_error: Callable[[str], None]) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.max_connections = max_connections
        self.on_error = on_error
        self.warnings = RateLimitedLog()

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are handled by the guarded handler above."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        service = self.app[SERVICE]
        return GuardedServer(base, max_connections=self.max_connections, on_error=service.record_error)


def connection_cap(configured: int) -> int:
    """`server.max_connections`, lowered to fit under the process's descriptor limit when that is smaller."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    fits = max(2, soft - DESCRIPTOR_MARGIN)
    if fits < configured:
        log.warning("server.max_connections %d lowered to %d to stay under the descriptor limit", configured, fits)
    return min(configured, fits)


async def serve(app: web.Application, config: Config) -> GuardedRunner:
    """Start `app` on config.server's address; the caller ends it with `await runner.cleanup()`."""
    server = config.server
    runner = GuardedRunner(
        app,
        max_connections=connection_cap(server.max_connections),
        keepalive_timeout=server.keepalive_timeout_s,
        access_log_class=RedactingAccessLogger,
        handle_signals=False,
        shutdown_timeout=10,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, server.host, server.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """At the descriptor limit asyncio reports every failed accept; report them once per interval instead."""
    limited = RateLimitedLog()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" in message and isinstance(context.get("exception"), OSError):
            limited.warning("accept", "%s: %s", message, context["exception"])
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def run_until(app: web.Application, config: Config, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then answer the requests in flight and run the app's cleanup."""
    _quiet_accept_errors(asyncio.get_running_loop())
    runner = await serve(app, config)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
